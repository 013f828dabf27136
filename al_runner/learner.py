"""The target model with its taps and, for learning-loss samplers, the loss-prediction module."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from al_runner.models.loss_module import LossPredictionModule
from al_runner.models.taps import FeatureTaps, global_average_pool


@dataclass
class Runtime:
    """How tensors run: device, mixed precision, memory format (from config, never global)."""

    device: torch.device
    amp: bool = False  # bf16 autocast; only on CUDA, CPU numerics stay fp32
    channels_last: bool = False
    compile: bool = False  # torch.compile the target model's forward (runtime.compile; off by default)

    def autocast(self):
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, inputs):
        if self.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs


class Learner:
    """One forward pass yields outputs, tapped features (for the module) and the embedding."""

    def __init__(self, model: nn.Module, tap_names: list[str], embedding_layer: str,
                 loss_module: LossPredictionModule | None, runtime: Runtime):
        self.model, self.loss_module, self.runtime = model, loss_module, runtime
        self.tap_names, self.embedding_layer = list(tap_names), embedding_layer
        self.taps = FeatureTaps(model, self.tap_names + [embedding_layer])
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
        self.taps.clear()
        return self._forward_model(self.runtime.prepare(inputs))

    def predicted_loss(self, detach_features: bool = False) -> torch.Tensor:
        features = self.taps.features(self.tap_names)
        if detach_features:  # after detach_epoch: the module keeps learning, the target gets no gradient
            features = [f.detach() for f in features]
        return self.loss_module(features).float()

    def embedding(self) -> torch.Tensor:
        return global_average_pool(self.taps.features([self.embedding_layer])[0]).float()

    @torch.no_grad()
    def materialize(self, example_inputs) -> None:
        """Run one eval forward so lazy layers of the loss module get their shapes."""
        if self.loss_module is None:
            return
        was_training = self.model.training
        self.eval()
        self.forward(example_inputs)
        self.loss_module(self.taps.features(self.tap_names))
        self.loss_module.to(self.runtime.device)
        self.model.train(was_training)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(),
                "loss_module": None if self.loss_module is None else self.loss_module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.loss_module is not None:
            self.loss_module.load_state_dict(state["loss_module"])

"""The target model with its taps and, for learning-loss samplers, its loss-prediction module.

One forward pass yields the outputs (handed to the task in fp32), the tapped features for the module
and the core-set embedding. The learner knows nothing task-specific: the task turns outputs into losses,
uncertainty and metrics. What a sampler needs is declared in `al_runner.samplers.needs`; `Learner.score`
computes it from one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from al_runner.cuda_graphs import CudaGraphStep
from al_runner.errors import ConfigError
from al_runner.learning_loss import LearningLoss
from al_runner.models.taps import FeatureTaps, global_average_pool
from al_runner.runtime import Runtime, to_float32
from al_runner.samplers.needs import NEEDS, ForwardPass


class Learner:
    """Target model + taps (+ loss-prediction module when `learning_loss` is given)."""

    def __init__(
        self,
        model: nn.Module,
        taps: list[str],
        embedding_layer: str,
        runtime: Runtime,
        learning_loss: LearningLoss | None = None,
        embedding_reduce: Callable[[torch.Tensor], torch.Tensor] = global_average_pool,
    ):
        self.model, self.runtime, self.learning_loss = model, runtime, learning_loss
        self.tap_names, self.embedding_layer, self.embedding_reduce = list(taps), embedding_layer, embedding_reduce
        self.taps = FeatureTaps(model, self.tap_names + [embedding_layer])
        self._layer_inputs: dict[str, torch.Tensor | None] = {}  # inputs of watched layers (`watch_input`)
        self.loss_module = (
            learning_loss.new_module(len(self.tap_names), runtime.loss_module) if learning_loss is not None else None
        )
        self.to_runtime()
        self._graph_step = CudaGraphStep(self) if runtime.cuda_graph else None
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
            loss = loss + self.learning_loss.loss(
                self.loss_module, self.taps.features(self.tap_names), per_sample, epoch
            )
        return loss

    def train_step(self, task, inputs, targets, optimizer: torch.optim.Optimizer, epoch: int) -> torch.Tensor:
        """One optimiser step on one batch; returns the detached loss (replayed from a CUDA graph when
        runtime.cuda_graph is on and the batch has the captured shapes, else run eagerly)."""
        if self._graph_step is not None:
            return self._graph_step(task, inputs, targets, optimizer, epoch)
        return self.eager_step(task, inputs, targets, optimizer, epoch)

    def eager_step(self, task, inputs, targets, optimizer: torch.optim.Optimizer, epoch: int) -> torch.Tensor:
        loss = self.training_loss(task, inputs, targets, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def predicted_loss(self) -> torch.Tensor:
        """l̂ for the last forward pass, fp32."""
        return LearningLoss.predict(self.loss_module, self.taps.features(self.tap_names))

    def embedding(self) -> torch.Tensor:
        """Core-set embedding of the last forward pass, fp32 (the configured reduction of one tapped layer)."""
        feature = self.taps.features([self.embedding_layer])[0]
        with torch.autocast(feature.device.type, enabled=False):
            return self.embedding_reduce(feature.float())

    def score(
        self,
        task,
        inputs,
        needs: frozenset[str],
        options: dict | None = None,
        generator: torch.Generator | None = None,
        targets=None,
    ) -> dict:
        """The values of `needs` (names of `samplers.needs.NEEDS`) from one forward pass over a batch.

        `options` are the sampler's `need_options` (e.g. the last layer's name, the number of MC passes);
        `generator` drives the stochastic passes. `targets`, the batch's labels, come only from the labeled
        path (`loop.score_with_labels`, oracles): without them a need that reads labels is refused.
        """
        options = options or {}
        reading_labels = sorted(name for name in needs if NEEDS[name].reads_labels)
        if reading_labels and targets is None:
            raise ValueError(f"{', '.join(reading_labels)} read labels: only loop.score_with_labels computes them")
        if "last_layer" in options:
            self.watch_input(options["last_layer"])
        outputs = self.forward(inputs)
        forward_pass = ForwardPass(self, task, outputs, options, generator, targets)
        return {name: NEEDS[name].compute(forward_pass) for name in needs}

    def watch_input(self, layer: str) -> None:
        """Keep the input of a named layer from every forward pass (a pre-hook registered once)."""
        if layer in self._layer_inputs:
            return
        modules = dict(self.model.named_modules())
        if layer not in modules:
            raise ConfigError(f"layer '{layer}' not found in {type(self.model).__name__}")

        def store(_module, args):
            self._layer_inputs[layer] = args[0]

        modules[layer].register_forward_pre_hook(store)
        self._layer_inputs[layer] = None

    def layer_input(self, layer: str) -> torch.Tensor:
        """The input of `layer` in the last forward pass (after `watch_input`), fp32."""
        return self._layer_inputs[layer].float()

    def unmet_needs(self, task, needs, options: dict | None = None) -> list[str]:
        """Why this learner and task cannot give each of `needs` (empty: all can be given)."""
        reasons = []
        for name in sorted(needs):
            if name not in NEEDS:
                reasons.append(f"'{name}' is not a known need (known: {', '.join(NEEDS)})")
            elif (why := NEEDS[name].missing(self, task, options or {})) is not None:
                reasons.append(f"{name}: {why}")
        return reasons

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
        return {
            "model": self.model.state_dict(),
            "loss_module": None if self.loss_module is None else self.loss_module.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.loss_module is not None:
            self.loss_module.load_state_dict(state["loss_module"])

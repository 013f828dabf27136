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

from al_runner.errors import ConfigError
from al_runner.learning_loss import MODULE_KINDS, LearningLoss
from al_runner.models.taps import FeatureTaps, global_average_pool
from al_runner.samplers.base import GradientEmbedding


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


# --- CUDA graphs: one training step captured, then replayed (runtime.cuda_graph) -------------------------------
def static_signature(batch):
    """Shapes, dtypes and devices of a batch made of tensors (nested in dicts and tuples) and plain values; None
    when it holds a list (per-sample containers such as detection's box lists, whose shapes change per batch)."""
    if isinstance(batch, torch.Tensor):
        return ("tensor", tuple(batch.shape), batch.dtype, batch.device, batch.stride())
    if isinstance(batch, (dict, tuple)):
        items = batch.items() if isinstance(batch, dict) else enumerate(batch)
        parts = tuple((key, static_signature(value)) for key, value in items)
        return None if any(part is None for _, part in parts) else (type(batch).__name__, parts)
    if batch is None or isinstance(batch, (bool, int, float, str)):
        return ("value", batch)
    return None


def static_copy(batch):
    """The same structure with its tensors copied into new memory: the buffers a captured step reads."""
    if isinstance(batch, torch.Tensor):
        return batch.clone()
    if isinstance(batch, dict):
        return {key: static_copy(value) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(static_copy(value) for value in batch)
    return batch


def copy_into(static, batch) -> None:
    """Write a batch into the buffers of `static_copy` (same signature)."""
    if isinstance(static, torch.Tensor):
        static.copy_(batch, non_blocking=True)
    elif isinstance(static, (dict, tuple)):
        for key in static if isinstance(static, dict) else range(len(static)):
            copy_into(static[key], batch[key])


def optimizer_constants(optimizer: torch.optim.Optimizer) -> tuple:
    """The plain values of each param group (lr, momentum, ...): a captured step holds them as constants."""
    return tuple(
        tuple(
            sorted(
                (key, value)
                for key, value in group.items()
                if key != "params" and isinstance(value, (bool, int, float, str, type(None)))
            )
        )
        for group in optimizer.param_groups
    )


def check_capturable(optimizer: torch.optim.Optimizer) -> None:
    if isinstance(optimizer, torch.optim.SGD) or all(g.get("capturable", False) for g in optimizer.param_groups):
        return
    raise ConfigError(
        f"runtime.cuda_graph=true: {type(optimizer).__name__} counts its steps on the host, which a "
        f"replayed step would not advance; build it with capturable=true "
        f"(+schedule.optimizer.capturable=true) or set runtime.cuda_graph=false"
    )


class CudaGraphs:
    """torch.cuda.CUDAGraph capture and replay: the backend of `CudaGraphStep` (tests use an eager stand-in)."""

    def capture(self, step: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = step()  # recorded, not run

        def replay() -> torch.Tensor:
            graph.replay()
            return static_loss

        return replay

    @contextlib.contextmanager
    def warmup(self):
        """Warm-up steps on a side stream, as torch.cuda.graphs' whole-network example does."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream().wait_stream(side)


class CudaGraphStep:
    """A training step (forward, losses, backward, optimiser step) captured once in a CUDA graph and replayed.

    What it saves is the launch of every kernel from Python, which bounds a ResNet-18 step at batch 128 on a
    GPU. Only batches with the captured shapes replay (`static_signature`); any other batch (the last, partial
    one; detection's per-image box lists) runs eagerly. The graph is captured again when something it holds
    as a constant changes: the optimiser (a new one each cycle), a hyperparameter (the LR step) or whether the
    module's features are detached (`detach_at`). With each new optimiser, `warmup_steps` eager steps run
    first so that lazily made state exists (SGD's momentum buffers, cuDNN's algorithm choice). The optimiser
    must be capturable: SGD, or Adam/AdamW/RMSprop... built with capturable=True.
    """

    def __init__(self, learner: "Learner", warmup_steps: int = 3, backend=None):
        self.learner, self.warmup_steps = learner, warmup_steps
        self.backend = backend if backend is not None else CudaGraphs()
        self.optimizer: torch.optim.Optimizer | None = None
        self.constants = None  # (optimiser hyperparameters, features detached) the graph was captured with
        self.signature = None  # the batch shapes it replays
        self.warm = 0  # eager warm-up steps done with this optimiser
        self.replay: Callable[[], torch.Tensor] | None = None
        self.static = None  # (inputs, targets) buffers the graph reads
        self.counts = {"eager": 0, "captures": 0, "replays": 0}

    def __call__(self, task, inputs, targets, optimizer: torch.optim.Optimizer, epoch: int) -> torch.Tensor:
        signature = static_signature((inputs, targets))
        self._follow(optimizer, epoch)
        if self.signature is None:
            self.signature = signature
        if signature is None or signature != self.signature:
            return self._eager(task, inputs, targets, optimizer, epoch)
        if self.replay is None:
            if self.warm < self.warmup_steps:
                self.warm += 1
                with self.backend.warmup():
                    return self._eager(task, inputs, targets, optimizer, epoch)
            self._capture(task, inputs, targets, optimizer, epoch)
        copy_into(self.static, (inputs, targets))
        self.counts["replays"] += 1
        return self.replay()

    def _eager(self, task, inputs, targets, optimizer, epoch) -> torch.Tensor:
        self.counts["eager"] += 1
        return self.learner.eager_step(task, inputs, targets, optimizer, epoch)

    def _follow(self, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Drop the graph when what it holds as constants changed; a new optimiser also warms up again."""
        if optimizer is not self.optimizer:
            check_capturable(optimizer)
            self.optimizer, self.warm, self.signature, self.replay, self.static = optimizer, 0, None, None, None
        learning_loss = self.learner.learning_loss
        constants = (optimizer_constants(optimizer), learning_loss is not None and learning_loss.detaches_at(epoch))
        if constants != self.constants:
            self.constants, self.replay, self.static = constants, None, None

    def _capture(self, task, inputs, targets, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        self.static = static_copy((inputs, targets))
        static_inputs, static_targets = self.static
        learner = self.learner

        def step() -> torch.Tensor:
            # grads set to None: the captured backward writes them afresh at each replay (no accumulation)
            optimizer.zero_grad(set_to_none=True)
            loss = learner.training_loss(task, static_inputs, static_targets, epoch)
            loss.backward()
            optimizer.step()
            return loss.detach()

        self.replay = self.backend.capture(step)
        self.counts["captures"] += 1


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
        self, task, inputs, needs: frozenset[str], options: dict | None = None, generator: torch.Generator | None = None
    ) -> dict:
        """What a sampler needs (names of `NEEDS`) from one forward pass over unlabeled inputs.

        `options` are the sampler's `need_options` (e.g. the last layer's name, the number of MC passes);
        `generator` drives the stochastic passes. Needs that read labels (oracles) are not computed here.
        """
        options = options or {}
        if "last_layer" in options:
            self.watch_input(options["last_layer"])
        outputs = self.forward(inputs)
        return {
            name: NEEDS[name].compute(self, task, outputs, options, generator)
            for name in needs
            if not NEEDS[name].reads_labels
        }

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


# --- what a sampler may need: one table ----------------------------------------------------------------
# A task gives class probabilities if it defines `class_probabilities(outputs) -> [B, C]` (classification
# does; detection and pose do not). Samplers name what they need (`Sampler.needs`); a need the learner or
# the task cannot give is refused at build time (`unmet_needs`, called by `al_runner.build`), before training.


@dataclass(frozen=True)
class Need:
    """How the learner computes one need from a forward pass, and why it might be unable to."""

    compute: Callable | None  # (learner, task, outputs, options, generator) -> tensor [B, ...] or GradientEmbedding
    missing: Callable = lambda learner, task, options: None  # (learner, task, options) -> reason, or None
    reads_labels: bool = False  # oracles: computed through the task's labeled path (`loop.score_with_labels`)


def _no_class_probabilities(learner, task, options) -> str | None:
    if callable(getattr(task, "class_probabilities", None)):
        return None
    return f"task {task.name} gives no class probabilities (classification tasks do)"


def _no_last_layer(learner, task, options) -> str | None:
    layer = options.get("last_layer")
    if layer in dict(learner.model.named_modules()) and isinstance(learner.model.get_submodule(layer), nn.Linear):
        return _no_class_probabilities(learner, task, options)
    return (
        f"{type(learner.model).__name__} has no linear layer '{layer}' "
        f"(sampler.strategy.last_layer must name the classifier, e.g. fc)"
    )


def _no_loss_module(learner, task, options) -> str | None:
    if learner.loss_module is not None:
        return None
    return "the loss-prediction module is not trained: set sampler.loss_objective (e.g. margin_ranking)"


def _mc_probabilities(learner, task, outputs, options, generator) -> torch.Tensor:
    """[B, C, T]: T passes of the last layer on its input with dropout (MC dropout on the classifier input).

    The backbone ran once; only the last layer is re-run, on T dropout masks drawn from `generator` on the
    CPU (the same masks on any device)."""
    if generator is None:
        raise ValueError("stochastic passes need a generator")
    layer = learner.model.get_submodule(options["last_layer"])
    features = learner.layer_input(options["last_layer"])
    passes, p = int(options["mc_passes"]), float(options["mc_dropout"])
    keep = torch.bernoulli(torch.full((passes, *features.shape), 1.0 - p), generator=generator)
    with torch.autocast(features.device.type, enabled=False):
        logits = layer(features.unsqueeze(0) * keep.to(features.device) / (1.0 - p))  # [T, B, C]
    probabilities = task.class_probabilities(logits.flatten(0, 1)).float()
    return probabilities.view(passes, features.shape[0], -1).permute(1, 2, 0)


def _gradient_embedding(learner, task, outputs, options, generator) -> GradientEmbedding:
    """BADGE: the cross-entropy gradient at the predicted label w.r.t. the last layer's weight, factored as
    (p - onehot(ŷ)) ⊗ h (h = that layer's input; the outputs are that layer's logits)."""
    probabilities = task.class_probabilities(outputs).float()
    predicted = nn.functional.one_hot(probabilities.argmax(1), probabilities.shape[1]).float()
    return GradientEmbedding(probabilities - predicted, learner.layer_input(options["last_layer"]))


NEEDS: dict[str, Need] = {
    "uncertainty": Need(lambda learner, task, outputs, options, g: task.uncertainty(outputs).float()),
    "probabilities": Need(
        lambda learner, task, outputs, options, g: task.class_probabilities(outputs).float(), _no_class_probabilities
    ),
    "mc_probabilities": Need(_mc_probabilities, _no_last_layer),
    "gradient_embedding": Need(_gradient_embedding, _no_last_layer),
    "predicted_loss": Need(lambda learner, task, outputs, options, g: learner.predicted_loss(), _no_loss_module),
    "embedding": Need(lambda learner, task, outputs, options, g: learner.embedding()),
    "true_loss": Need(None, reads_labels=True),  # the real loss: labels, read through the task's labeled path
}

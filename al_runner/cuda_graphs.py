"""CUDA graphs: one training step captured, then replayed (runtime.cuda_graph).

The step itself (forward, losses, backward, optimiser step) is the learner's; this module only captures it,
decides when a captured graph may replay, and copies each batch into the buffers the graph reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from al_runner.errors import ConfigError

if TYPE_CHECKING:  # the learner builds a CudaGraphStep; at run time only its methods are called
    from al_runner.learner import Learner


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

"""The contract between a task and the task-agnostic cycle loop (DESIGN §4).

A task owns its data and everything that depends on the kind of output: the per-sample loss, the
metric and the uncertainty. The loop only moves batches between the task and the model. Detection
and pose tasks implement the same methods (their inputs/targets may be lists or dicts).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch


class Metric(ABC):
    """Accumulates over evaluation batches; `compute` returns one float."""

    @abstractmethod
    def update(self, outputs: Any, targets: Any) -> None: ...

    @abstractmethod
    def compute(self) -> float: ...


class Task(ABC):
    name: str
    metric_name: str

    @property
    @abstractmethod
    def pool_size(self) -> int: ...

    @property
    @abstractmethod
    def test_size(self) -> int: ...

    @abstractmethod
    def to(self, device: torch.device) -> "Task":
        """Move the task's data to the device where batches are built."""

    @abstractmethod
    def labeled_batches(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator, augment: bool = True
    ) -> Iterator[tuple[Any, Any, torch.Tensor]]:
        """Shuffled (inputs, targets, pool indices) of *labeled* pool points: the oracle's only door."""

    @abstractmethod
    def input_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[Any, torch.Tensor]]:
        """(inputs, pool indices) in order, eval transform, no labels: all a sampler may see."""

    @abstractmethod
    def test_batches(self, batch_size: int) -> Iterator[tuple[Any, Any, torch.Tensor]]:
        """(inputs, targets, test indices) in order, eval transform."""

    @abstractmethod
    def per_sample_loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """[B] target loss per sample (reduction='none'); its mean is the training loss."""

    @abstractmethod
    def uncertainty(self, outputs: Any) -> torch.Tensor:
        """[B] entropy-style uncertainty of the model's outputs (higher = less certain)."""

    @abstractmethod
    def new_metric(self) -> Metric: ...

    @abstractmethod
    def model_kwargs(self) -> dict:
        """What the model config cannot know, e.g. {"in_channels": 1, "num_classes": 10}."""

    def example_inputs(self, n: int = 2) -> Any:
        """A few eval-transformed pool inputs, to materialize lazy layers."""
        inputs, _ = next(iter(self.input_batches(torch.arange(min(n, self.pool_size)), n)))
        return inputs

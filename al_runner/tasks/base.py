"""The contract between a task and the task-agnostic cycle loop (`al_runner/loop.py`).

A task owns its data and everything that depends on the kind of input and output: how batches are
built (in-memory tensors for CIFAR-sized images, per-batch decoding for VOC and MPII), the per-sample
loss, the batch training loss, the metric and the uncertainty. The loop only moves batches between
the task and the `Learner`; it never looks inside inputs, targets or outputs, which may be tensors,
lists or dicts.

Numerics: the learner runs the model's forward pass (under bf16 autocast when `runtime.amp` is on)
and then hands the task *fp32* outputs, outside autocast. So `per_sample_loss`, `training_losses` and
`uncertainty` always compute in fp32, whatever precision the backbone used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch


class Metric(ABC):
    """Accumulates over evaluation batches; `compute` returns the task's one headline number."""

    @abstractmethod
    def update(self, outputs: Any, targets: Any) -> None: ...

    @abstractmethod
    def compute(self) -> float: ...

    def details(self) -> dict[str, float]:
        """Named sub-results written beside the headline (per-class AP, per-joint PCKh); {} if none."""
        return {}


class Task(ABC):
    name: str
    metric_name: str  # e.g. "accuracy", "mAP@0.5", "PCKh@0.5": the CSV's `metric` column
    # What `uncertainty` measures, e.g. "softmax_entropy": the CSV's `uncertainty` column and the
    # label of Fig. 8's right panel.
    uncertainty_name: str

    @property
    @abstractmethod
    def pool_size(self) -> int: ...

    @property
    @abstractmethod
    def test_size(self) -> int: ...

    @abstractmethod
    def to(self, device: torch.device) -> "Task":
        """Where batches must be delivered. A task may keep its pool on the host (decoded per batch)."""

    @abstractmethod
    def labeled_batches(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator, augment: bool = True
    ) -> Iterator[tuple[Any, Any, torch.Tensor]]:
        """Shuffled (inputs, targets, pool indices) of *labeled* pool points: the oracle's only door.

        All randomness (order and augmentation) comes from `generator`, so reruns are identical.
        """

    @abstractmethod
    def input_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[Any, torch.Tensor]]:
        """(inputs, pool indices) in order, eval transform, no labels: all a sampler may see."""

    @abstractmethod
    def test_batches(self, batch_size: int) -> Iterator[tuple[Any, Any, torch.Tensor]]:
        """(inputs, targets, test indices) in order, eval transform."""

    @abstractmethod
    def per_sample_loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """[B] fp32 target loss per sample (reduction='none'): what the loss-prediction module ranks."""

    def training_losses(self, outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-sample losses [B], the batch training loss) from one forward pass.

        Default: the batch loss is the mean of the per-sample losses. A task whose standard loss is
        normalised otherwise (SSD: by the number of matched boxes in the batch) overrides this and
        computes both at once.
        """
        per_sample = self.per_sample_loss(outputs, targets)
        return per_sample, per_sample.mean()

    @abstractmethod
    def uncertainty(self, outputs: Any) -> torch.Tensor:
        """[B] uncertainty of the model's outputs (higher = less certain); `uncertainty_name` says which."""

    @abstractmethod
    def new_metric(self) -> Metric: ...

    @abstractmethod
    def model_kwargs(self) -> dict:
        """What the model config cannot know, e.g. {"in_channels": 1, "num_classes": 10}."""

    def fingerprint(self) -> dict[str, str]:
        """Identity of the pool and test data (file lists and sizes, or a dataset version), recorded in the
        checkpoint so that a resume on changed data is refused. Keys name the part (e.g. "pool", "test")."""
        return {}

    def pool_item_names(self, indices) -> list[str]:
        """What each pool point is in the task's own data, for `selected.csv`'s `item` column: a relative file path,
        an image id, an image and person. Default: the pool index as text."""
        return [str(int(i)) for i in indices]

    def labeled_class_names(self, indices) -> list[list[str]] | None:
        """Class names of each *labeled* pool point (one for an image label, one per object for detection), for
        selected.csv's `classes` column (query diagnostics). The runner asks only for points it has just labeled;
        samplers never see this. None: the task has no classes (pose)."""
        return None

    def example_inputs(self, n: int = 2) -> Any:
        """A few eval-transformed pool inputs, to materialize lazy layers."""
        inputs, _ = next(iter(self.input_batches(torch.arange(min(n, self.pool_size)), n)))
        return inputs

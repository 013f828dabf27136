"""The task-agnostic phases of one active-learning cycle: train, evaluate, select.

Nothing here knows what the inputs, targets or outputs are: the task does.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields
from typing import Protocol

import torch
from tqdm import tqdm

from al_runner.errors import NonFiniteLossError
from al_runner.learner import Learner
from al_runner.learning_loss import ranking_accuracy
from al_runner.samplers import Candidates, Sampler
from al_runner.samplers.needs import CANDIDATES, LABELED, NEEDS, needs_over
from al_runner.tasks.base import Task

log = logging.getLogger(__name__)


def batch_is_skipped(n_samples: int, batch_size: int) -> bool:
    """A training batch of one sample is skipped (`train_one_epoch`) unless the batch size itself is 1."""
    return n_samples == 1 and batch_size > 1


def train_one_epoch(
    learner: Learner,
    task: Task,
    labeled: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    cycle: int,
) -> float:
    """One pass over the labeled set; returns the mean training loss. Raises on a non-finite loss.

    The loss sum and the first non-finite batch stay on the device and are read once, at the end of the
    epoch (one host sync per epoch, not per step).

    A leftover batch of ONE sample (labeled set = batch_size * k + 1) is skipped, for every task: train-mode
    BatchNorm cannot normalise one sample on 1x1 maps (SSDlite's last maps crash), and one sample's
    statistics would be noise anyway; the next epoch's shuffle puts that sample in a full batch.
    """
    learner.train()
    device = learner.runtime.device
    total = torch.zeros((), device=device)
    first_bad = torch.full((), -1.0, device=device)
    batches = 0
    batches_of_epoch = task.labeled_batches(labeled, batch_size, generator, augment=True)
    for b, (inputs, targets, pool_indices) in enumerate(batches_of_epoch):
        if batch_is_skipped(len(pool_indices), batch_size):
            log.debug(
                "cycle %d epoch %d: skipped the last training batch of 1 sample (pool index %d)",
                cycle,
                epoch,
                int(pool_indices[0]),
            )
            continue
        loss = learner.train_step(task, inputs, targets, optimizer, epoch).float()  # eager, or a CUDA graph replay
        total += loss
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), float(b), first_bad)
        batches += 1
    loss_sum, bad = torch.stack([total, first_bad]).tolist()
    if bad >= 0:
        raise NonFiniteLossError(cycle, epoch, int(bad), checkpoint=None)
    return loss_sum / max(batches, 1)


@dataclass
class TrainingProgress:
    """A cycle's training after `epochs_done` epochs: everything that continues it bit for bit (on CPU) from
    there, i.e. the weights, the optimizer and LR-schedule states and the training generator (shuffles and
    augmentation draw from it alone)."""

    epochs_done: int
    learner: dict
    optimizer: dict
    scheduler: dict | None
    train_generator: torch.Tensor
    # wall-clock seconds of training up to this save, over every process that trained this cycle: a resumed
    # cycle's train_s counts the time before the stop too
    train_seconds: float = 0.0

    def to_record(self) -> dict:
        """The fields as a plain dict for a checkpoint file (tensors and numbers: loads with weights_only)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict) -> TrainingProgress:
        """A record of `to_record` (one saved before a field existed gets its default)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


class ProgressCheckpoint(Protocol):
    """Where `train_cycle` hands its progress after an epoch (al-run's in-cycle checkpoint, `runner`)."""

    def due(self) -> bool:
        """Whether to save after this epoch (asked every epoch; cheap)."""

    def save(self, progress: TrainingProgress) -> None: ...


def train_cycle(
    learner: Learner,
    task: Task,
    labeled: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    make_optimizer,
    make_scheduler,
    generator: torch.Generator,
    cycle: int,
    progress: bool | None = None,
    on_epoch=None,
    resume: TrainingProgress | None = None,
    checkpoint: ProgressCheckpoint | None = None,
) -> float:
    """`epochs` epochs with a fresh optimizer and LR schedule; the scheduler steps after the optimizer.
    on_epoch(epoch, mean loss, optimizer), if given, runs after each epoch, before the scheduler steps (trackers).

    resume: continue after `resume.epochs_done` epochs from that state (weights, optimizer, schedule, generator).
    checkpoint: after each epoch, if `checkpoint.due()`, the progress so far goes to `checkpoint.save`."""
    optimizer = make_optimizer(learner.parameters())
    scheduler = make_scheduler(optimizer) if make_scheduler is not None else None
    start, began, seconds_before = 0, time.perf_counter(), 0.0 if resume is None else resume.train_seconds
    if resume is not None:
        start = _continue_from(resume, learner, optimizer, scheduler, generator)
    log_every = max(1, epochs // 10)
    loss = math.nan
    # progress None: a bar only on a terminal (tqdm's own check); True/False force it on/off
    bar = tqdm(
        range(start, epochs),
        desc=f"cycle {cycle} train",
        unit="epoch",
        initial=start,
        total=epochs,
        leave=False,
        disable=None if progress is None else not progress,
    )
    for epoch in bar:
        loss = train_one_epoch(learner, task, labeled, optimizer, batch_size, generator, epoch, cycle)
        if on_epoch is not None:
            on_epoch(epoch, loss, optimizer)
        if scheduler is not None:
            scheduler.step()
        if checkpoint is not None and checkpoint.due():
            checkpoint.save(
                TrainingProgress(
                    epoch + 1,
                    learner.state_dict(),
                    optimizer.state_dict(),
                    None if scheduler is None else scheduler.state_dict(),
                    generator.get_state(),
                    seconds_before + time.perf_counter() - began,
                )
            )
        bar.set_postfix(loss=f"{loss:.4f}")
        if (epoch + 1) % log_every == 0 or epoch + 1 == epochs:
            # without a bar (a background or launcher job), progress goes to the run's log every 10 % of epochs
            log.log(
                logging.DEBUG if not bar.disable else logging.INFO,
                "cycle %d epoch %d/%d loss %.4f",
                cycle,
                epoch + 1,
                epochs,
                loss,
            )
    return loss


def _continue_from(resume: TrainingProgress, learner: Learner, optimizer, scheduler, generator) -> int:
    """Load a saved progress into this cycle's fresh optimizer and schedule; returns the epochs already done."""
    if (resume.scheduler is None) != (scheduler is None):
        raise ValueError("the saved training progress and this schedule disagree on having an LR scheduler")
    learner.load_state_dict(resume.learner)
    optimizer.load_state_dict(resume.optimizer)
    if scheduler is not None:
        scheduler.load_state_dict(resume.scheduler)
    generator.set_state(resume.train_generator)
    return int(resume.epochs_done)


@dataclass
class Evaluation:
    metric: float
    details: dict[str, float]  # the metric's named sub-results (per-class AP, per-joint PCKh)
    real_loss: torch.Tensor
    uncertainty: torch.Tensor
    predicted_loss: torch.Tensor | None
    ranking_accuracy: float | None


@torch.inference_mode()
def evaluate(learner: Learner, task: Task, batch_size: int) -> Evaluation:
    """Metric plus, per test point, real loss, uncertainty and predicted loss in one eval-mode pass."""
    learner.eval()
    metric = task.new_metric()
    real, uncertainty, predicted = [], [], []
    for inputs, targets, _ in task.test_batches(batch_size):
        outputs = learner.forward(inputs)
        metric.update(outputs, targets)
        real.append(task.per_sample_loss(outputs, targets).float().cpu())
        uncertainty.append(task.uncertainty(outputs).float().cpu())
        if learner.loss_module is not None:
            predicted.append(learner.predicted_loss().cpu())
    real_t, predicted_t = torch.cat(real), torch.cat(predicted) if predicted else None
    return Evaluation(
        metric=metric.compute(),
        details=metric.details(),
        real_loss=real_t,
        uncertainty=torch.cat(uncertainty),
        predicted_loss=predicted_t,
        ranking_accuracy=None if predicted_t is None else ranking_accuracy(predicted_t, real_t),
    )


@torch.inference_mode()
def score_inputs(
    learner: Learner,
    task: Task,
    indices: torch.Tensor,
    batch_size: int,
    needs: frozenset[str],
    options: dict | None = None,
    generator: torch.Generator | None = None,
) -> dict:
    """Eval-mode, un-augmented pass over pool inputs (no labels) collecting what a sampler needs."""
    learner.eval()
    collected: dict[str, list] = {}
    for inputs, _ in task.input_batches(indices, batch_size):
        for name, values in learner.score(task, inputs, needs, options, generator).items():
            collected.setdefault(name, []).append(values)
    return {name: _concatenate(parts) for name, parts in collected.items()}


def _concatenate(parts: list):
    """Batches of one need, joined: tensors by torch.cat, structured needs (GradientEmbedding) by their `cat`."""
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else type(parts[0]).cat(parts)


@torch.inference_mode()
def score_with_labels(
    learner: Learner,
    task: Task,
    indices: torch.Tensor,
    batch_size: int,
    needs: frozenset[str] | None = None,
    options: dict | None = None,
) -> dict[str, torch.Tensor]:
    """ORACLES ONLY: needs that read labels (default: every candidate-level one, i.e. the real loss), one row
    per point in the order of `indices`.

    Reads labels on purpose, through the task's labeled path (`Task.labeled_batches`, un-augmented, eval
    mode) and nowhere else; only a sampler with `reads_labels` (named oracle_* in config) gets here.
    """
    if needs is None:
        needs = needs_over(NEEDS, CANDIDATES, reads_labels=True)
    learner.eval()
    order = torch.Generator().manual_seed(0)  # labeled_batches shuffles; the order is undone below
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in needs}
    seen = []
    for inputs, targets, pool_indices in task.labeled_batches(indices, batch_size, order, augment=False):
        for name, values in learner.score(task, inputs, needs, options, targets=targets).items():
            collected[name].append(values.cpu())
        seen.append(pool_indices.cpu())
    by_pool_index = torch.argsort(torch.cat(seen))  # the rows as seen, reordered by ascending pool index
    positions = torch.argsort(indices.cpu())
    return {name: _in_order(torch.cat(parts)[by_pool_index], positions) for name, parts in collected.items()}


def _in_order(by_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows sorted by pool index, put back in the order of the indices they were asked for."""
    in_order = torch.empty_like(by_index)
    in_order[positions] = by_index
    return in_order


def compute_needs(
    learner: Learner,
    task: Task,
    sampler: Sampler,
    points: dict[str, torch.Tensor],
    batch_size: int,
    generator: torch.Generator,
) -> dict:
    """The values of what `sampler` needs, each over the points its declaration names (`points[need.over]`):
    inputs only, except needs that read labels (oracles), which go through `score_with_labels`."""
    values = {}
    for over in (CANDIDATES, LABELED):  # candidates first: their stochastic passes draw first from `generator`
        from_inputs = needs_over(sampler.needs, over, reads_labels=False)
        if from_inputs:
            values.update(
                score_inputs(learner, task, points[over], batch_size, from_inputs, sampler.need_options, generator)
            )
        from_labels = needs_over(sampler.needs, over, reads_labels=True)
        if from_labels:  # an oracle (build.check_sampler made sure it is one and is named so)
            values.update(score_with_labels(learner, task, points[over], batch_size, from_labels, sampler.need_options))
    return values


def draw_subset(unlabeled: torch.Tensor, subset_size: int | None, generator: torch.Generator) -> torch.Tensor:
    """A random subset S_M of the unlabeled pool (the whole pool when subset_size is None)."""
    if subset_size is None or subset_size >= unlabeled.numel():
        return unlabeled
    return unlabeled[torch.randperm(unlabeled.numel(), generator=generator)[:subset_size]]


def select(
    learner: Learner,
    task: Task,
    sampler: Sampler,
    unlabeled: torch.Tensor,
    labeled: torch.Tensor,
    k: int,
    subset_size: int | None,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score a random subset of the unlabeled pool and return (pool indices, scores) of the top k."""
    subset = draw_subset(unlabeled, subset_size, generator)
    unmet = learner.unmet_needs(task, sampler.needs, sampler.need_options)
    if unmet:  # normally refused at build time (build.check_sampler); this guards direct calls
        raise RuntimeError(f"{type(sampler).__name__} cannot be given what it needs: {'; '.join(unmet)}")
    values = compute_needs(learner, task, sampler, {CANDIDATES: subset, LABELED: labeled}, batch_size, generator)
    # the sampler sees positions 0..len(subset)-1, never pool indices (they can encode labels)
    positions, scores = sampler.select(Candidates(count=len(subset), **values), k, generator)
    return subset[positions.cpu()], scores.float().cpu()

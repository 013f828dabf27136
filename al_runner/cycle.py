"""One active-learning cycle, the single implementation behind al-run's cycles and al-label's rounds.

`build_run` builds a run's pieces from config (threads, determinism, runtime, task, learning-loss method,
sampler, learner, the sampler checked against them, and the run's two random streams); `run_cycle` runs one
cycle on them: train (`loop.train_cycle`, re-initialising the learner first when `schedule.reinit_each_cycle`),
evaluate (`loop.evaluate`), select (`loop.select`, unless it is the last cycle), timed phase by phase.

The train and select generators are created once per run, from the seed alone, and carried from cycle to cycle
(al-run: in its checkpoint; al-label: in the project's state between rounds), so that a round of al-label draws
exactly what the same cycle of al-run draws. What is around the cycle stays with its caller: al-run's run
directory, checkpoint and resume (`al_runner.runner`), al-label's rounds and files (`al_runner.labeling.commands`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from al_runner.build import (
    apply_threads,
    build_learner,
    build_method,
    build_sampler,
    build_task,
    check_sampler,
    instantiate,
    make_runtime,
    make_scheduler_factory,
)
from al_runner.config_schema import RootSchema
from al_runner.determinism import apply_determinism
from al_runner.learner import Learner
from al_runner.learning_loss import LearningLoss
from al_runner.loop import Evaluation, ProgressCheckpoint, TrainingProgress, evaluate, select, train_cycle
from al_runner.runtime import Runtime
from al_runner.samplers import Sampler
from al_runner.tasks.base import Task

# Offsets that give each random stream of a run its own generator, derived from the seed alone.
TRAIN_STREAM, SELECT_STREAM = 1_000_003, 2_000_003


@dataclass
class RunParts:
    """What a run's cycles work on. `learner` is replaced when a cycle re-initialises it."""

    cfg: DictConfig
    runtime: Runtime
    task: Task
    learning_loss: LearningLoss | None
    sampler: Sampler
    learner: Learner
    train_generator: torch.Generator
    select_generator: torch.Generator

    def generator_states(self) -> dict[str, torch.Tensor]:
        return {"train": self.train_generator.get_state(), "select": self.select_generator.get_state()}

    def load_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        self.train_generator.set_state(states["train"])
        self.select_generator.set_state(states["select"])


def build_run(
    cfg: DictConfig,
    build_task: Callable[[DictConfig, Runtime], Task] = build_task,
    build_sampler: Callable[[DictConfig], Sampler] = build_sampler,
) -> RunParts:
    """The run's pieces, with the sampler checked against the task and learner (`check_sampler`: what they cannot
    give is refused here, before any training). `build_task(cfg, runtime)`: al-run builds it from config, al-label
    from a project's images and labels."""
    apply_threads(cfg)
    apply_determinism(cfg)
    runtime = make_runtime(cfg)
    task = build_task(cfg, runtime)
    learning_loss = build_method(cfg)
    sampler = build_sampler(cfg)
    learner = build_learner(cfg, task, runtime, learning_loss)
    check_sampler(cfg, sampler, learner, task)
    seed = int(cfg.seed)
    return RunParts(
        cfg,
        runtime,
        task,
        learning_loss,
        sampler,
        learner,
        train_generator=torch.Generator().manual_seed(seed + TRAIN_STREAM),
        select_generator=torch.Generator().manual_seed(seed + SELECT_STREAM),
    )


@dataclass
class CycleResult:
    """One cycle's outcome: the evaluation (None when not evaluated), the picks (pool indices, best first, and
    their scores; None on the last cycle) and each phase's wall-clock seconds."""

    evaluation: Evaluation | None
    picked: torch.Tensor | None
    scores: torch.Tensor | None
    train_s: float
    eval_s: float
    select_s: float

    def seconds(self) -> dict[str, float]:
        """cycles.csv's timing columns."""
        return {"train_s": round(self.train_s, 3), "eval_s": round(self.eval_s, 3), "select_s": round(self.select_s, 3)}


def run_cycle(
    parts: RunParts,
    labeled: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    cycle: int,
    *,
    last: bool = False,
    evaluated: bool = True,
    on_epoch=None,
    resume: TrainingProgress | None = None,
    checkpoint: ProgressCheckpoint | None = None,
) -> CycleResult:
    """Train on `labeled`, evaluate on the task's test split (unless `evaluated` is False), and pick `k` of
    `candidates` (unless `last`). Draws from the parts' generators, which carry over to the next cycle.
    resume / checkpoint: the training's in-cycle progress, continued from / handed out (`loop.train_cycle`)."""
    t0 = time.perf_counter()
    train(parts, labeled, cycle, on_epoch, resume, checkpoint)
    t1 = time.perf_counter()
    evaluation = evaluate(parts.learner, parts.task, int(parts.cfg.schedule.eval_batch_size)) if evaluated else None
    t2 = time.perf_counter()
    picked, scores = (None, None) if last else pick(parts, candidates, labeled, k)
    t3 = time.perf_counter()
    trained_before = 0.0 if resume is None else resume.train_seconds  # by the process(es) stopped in this cycle
    return CycleResult(evaluation, picked, scores, trained_before + t1 - t0, t2 - t1, t3 - t2)


def train(
    parts: RunParts,
    labeled: torch.Tensor,
    cycle: int,
    on_epoch=None,
    resume: TrainingProgress | None = None,
    checkpoint: ProgressCheckpoint | None = None,
) -> None:
    """The cycle's training: from the previous cycle's weights, or from the initial ones when the schedule
    re-initialises each cycle (the same weights as cycle 0's: `build_learner` seeds them from the config)."""
    cfg, s = parts.cfg, parts.cfg.schedule
    if cycle > 0 and s.reinit_each_cycle:
        parts.learner = build_learner(cfg, parts.task, parts.runtime, parts.learning_loss)
    train_cycle(
        parts.learner,
        parts.task,
        labeled,
        epochs=int(s.epochs),
        batch_size=int(s.batch_size),
        make_optimizer=instantiate(s.optimizer),
        make_scheduler=make_scheduler_factory(s),
        generator=parts.train_generator,
        cycle=cycle,
        progress=cfg.progress,
        on_epoch=on_epoch,
        resume=resume,
        checkpoint=checkpoint,
    )


def pick(parts: RunParts, candidates: torch.Tensor, labeled: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool indices, scores) of the `k` candidates the sampler picks."""
    s = parts.cfg.schedule
    return select(
        parts.learner,
        parts.task,
        parts.sampler,
        candidates,
        labeled,
        k,
        s.subset_size,
        int(s.eval_batch_size),
        parts.select_generator,
    )


class TimedProgressCheckpoint:
    """`loop.ProgressCheckpoint` by the clock: due after an epoch once `seconds` passed since the cycle began or
    since the last save (0: after every epoch). A save costs a state dict's write and changes no number."""

    def __init__(self, seconds: float, write: Callable[[TrainingProgress], None]):
        self.seconds, self.write = seconds, write
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.seconds

    def save(self, progress: TrainingProgress) -> None:
        self.write(progress)
        self.last = time.monotonic()


def progress_checkpoint(cfg: DictConfig, write: Callable[[TrainingProgress], None]) -> TimedProgressCheckpoint | None:
    """The cycle's in-cycle checkpoint every `checkpoint_minutes` (a config without the key, e.g. an al-label
    project made before it existed, gets the default), or None when it is null."""
    minutes = cfg.get("checkpoint_minutes", RootSchema.checkpoint_minutes)
    return None if minutes is None else TimedProgressCheckpoint(float(minutes) * 60.0, write)


def cycle_row(
    cfg: DictConfig,
    cycle: int,
    n_labeled: int,
    metric: str,
    value: float,
    uncertainty: str,
    ranking_accuracy: float | None,
    seconds: dict[str, float],
) -> dict:
    """One row of cycles.csv (`schema.CYCLE_COLUMNS`), for al-run's cycles and al-label's evaluated rounds."""
    return {
        "task": cfg.task.name,
        "model": cfg.model.name,
        "sampler": cfg.sampler.name,
        "seed": int(cfg.seed),
        "cycle": cycle,
        "n_labeled": n_labeled,
        "metric": metric,
        "value": value,
        "uncertainty": uncertainty,
        "ranking_accuracy": ranking_accuracy,
        **seconds,
    }

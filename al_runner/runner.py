"""Builds one run from the composed config and drives its cycles, resumably."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from al_runner import outputs
from al_runner.errors import ConfigError, NonFiniteLossError
from al_runner.learner import Learner, Runtime
from al_runner.loop import LossModuleTraining, evaluate, select, train_cycle
from al_runner.losses import MarginRankingLoss
from al_runner.models.loss_module import LossPredictionModule
from al_runner.pool import Pool
from al_runner.samplers import Sampler
from al_runner.tasks.base import Task

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# Keys that change how a run executes but not what it computes: a resume may differ in them.
RESUME_IGNORED_KEYS = ("device", "progress", "runtime", "paths")
# Offsets that give each random stream of a run its own generator, derived from the seed alone.
TRAIN_STREAM, SELECT_STREAM = 1_000_003, 2_000_003


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=auto or device=cpu")
    return device


def _auto_flag(value, device: torch.device) -> bool:
    return device.type == "cuda" if value in (None, "auto") else bool(value)


def make_runtime(cfg: DictConfig) -> Runtime:
    device = resolve_device(str(cfg.device))
    return Runtime(device=device, amp=_auto_flag(cfg.runtime.amp, device),
                   channels_last=_auto_flag(cfg.runtime.channels_last, device),
                   compile=bool(cfg.runtime.get("compile", False)))


def validate_schedule(cfg: DictConfig, pool_size: int) -> None:
    """Refuse impossible schedules before any data is touched by training."""
    s = cfg.schedule
    for key in ("cycles", "initial_size", "batch_size", "eval_batch_size"):
        if int(s[key]) < 1:
            raise ConfigError(f"schedule.{key} must be >= 1, got {s[key]}")
    if int(s.epochs) < 0:
        raise ConfigError(f"schedule.epochs must be >= 0, got {s.epochs}")
    if int(s.cycles) > 1 and int(s.query_size) < 1:
        raise ConfigError(f"schedule.query_size must be >= 1 with {s.cycles} cycles")
    needed = int(s.initial_size) + int(s.query_size) * (int(s.cycles) - 1)
    if needed > pool_size:
        raise ConfigError(
            f"the schedule labels {needed} points (initial_size {s.initial_size} + query_size {s.query_size} × "
            f"{int(s.cycles) - 1} cycles) but the pool of task {cfg.task.name} has only {pool_size}"
        )
    if s.subset_size is not None and int(s.subset_size) < int(s.query_size):
        raise ConfigError(f"schedule.subset_size (M={s.subset_size}) must be >= query_size (K={s.query_size})")


def build_module_training(cfg: DictConfig) -> LossModuleTraining | None:
    spec = cfg.sampler.get("loss_module")
    if spec is None:
        return None  # baselines train the plain target model
    objective = instantiate(spec.objective)
    if isinstance(objective, MarginRankingLoss) and int(cfg.schedule.batch_size) % 2:
        raise ConfigError(
            f"schedule.batch_size={cfg.schedule.batch_size} is odd: the margin ranking loss splits each batch into "
            f"B/2 disjoint pairs, so use an even batch size"
        )
    return LossModuleTraining(objective=objective, weight=float(spec.weight), detach_epoch=int(cfg.schedule.detach_epoch))


def build_learner(cfg: DictConfig, task: Task, runtime: Runtime, with_loss_module: bool) -> Learner:
    """Same seed → same initial weights for every sampler (forked RNG, nothing global leaks)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        model = instantiate(cfg.model.net)(**task.model_kwargs())
        loss_module = LossPredictionModule(len(cfg.model.taps), int(cfg.model.loss_module_hidden)) if with_loss_module else None
        learner = Learner(model, list(cfg.model.taps), str(cfg.model.embedding_layer), loss_module, runtime)
        learner.materialize(task.example_inputs())
    return learner


def comparable_config(cfg: DictConfig) -> dict:
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in container.items() if k not in RESUME_IGNORED_KEYS and k != "hydra"}


def _config_differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            diffs += _config_differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return diffs
    return [] if a == b else [prefix.rstrip(".")]


@dataclass
class RunState:
    next_cycle: int = 0
    finished: bool = False
    rows: list[dict] = field(default_factory=list)
    selected: list[dict] = field(default_factory=list)


class ActiveLearningRun:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.checkpoint_path = self.run_dir / outputs.CHECKPOINT
        self.runtime = make_runtime(cfg)
        self.task: Task = instantiate(cfg.task.build).to(self.runtime.device)
        validate_schedule(cfg, self.task.pool_size)
        self.module_training = build_module_training(cfg)
        self.sampler: Sampler = instantiate(cfg.sampler.strategy)
        if "predicted_loss" in self.sampler.needs and self.module_training is None:
            raise ConfigError(f"sampler {cfg.sampler.name} ranks by predicted loss but configures no loss_module")
        self.learner = build_learner(cfg, self.task, self.runtime, self.module_training is not None)
        self.pool = Pool(self.task.pool_size)
        seed = int(cfg.seed)
        self.init_generator = torch.Generator().manual_seed(seed)  # initial set: seed only, never the sampler
        self.train_generator = torch.Generator().manual_seed(seed + TRAIN_STREAM)
        self.select_generator = torch.Generator().manual_seed(seed + SELECT_STREAM)
        self.state = RunState()

    # --- persistence -------------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": comparable_config(self.cfg),
            "next_cycle": self.state.next_cycle, "finished": self.state.finished,
            "rows": self.state.rows, "selected": self.state.selected,
            "learner": self.learner.state_dict(), "pool": self.pool.state_dict(),
            "generators": {"train": self.train_generator.get_state(), "select": self.select_generator.get_state()},
        }

    def _restore(self, ckpt: dict) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{self.checkpoint_path} was written by an incompatible version; move it away to start over")
        diffs = _config_differences(ckpt["config"], comparable_config(self.cfg))
        if diffs:
            raise ConfigError(
                f"{self.run_dir} holds a run with a different config (differs in: {', '.join(diffs[:8])}). "
                f"Use another output directory (e.g. name=<new>) or delete that one to start over"
            )
        self.state = RunState(ckpt["next_cycle"], ckpt["finished"], ckpt["rows"], ckpt["selected"])
        self.learner.load_state_dict(ckpt["learner"])
        self.pool.load_state_dict(ckpt["pool"])
        self.train_generator.set_state(ckpt["generators"]["train"])
        self.select_generator.set_state(ckpt["generators"]["select"])

    def _write_csvs(self) -> None:
        outputs.write_csv(self.run_dir / outputs.CYCLES_CSV, outputs.CYCLE_COLUMNS, self.state.rows)
        outputs.write_csv(self.run_dir / outputs.SELECTED_CSV, outputs.SELECTED_COLUMNS, self.state.selected)

    # --- the cycle loop ----------------------------------------------------------------------
    def run(self) -> list[dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt = outputs.load_checkpoint(self.checkpoint_path)
        if ckpt is not None:
            self._restore(ckpt)
            if self.state.finished:
                log.info("run in %s already finished (%d cycles); nothing to do", self.run_dir, len(self.state.rows))
                self._write_csvs()
                return self.state.rows
            log.info("resuming %s after cycle %d", self.run_dir, self.state.next_cycle - 1)
        else:
            picks = self.pool.label_initial(int(self.cfg.schedule.initial_size), self.init_generator)
            self.state.selected += [{"cycle": 0, "pool_index": int(i), "score": None} for i in picks]
        cycles = int(self.cfg.schedule.cycles)
        for cycle in range(self.state.next_cycle, cycles):
            self._run_cycle(cycle, last=cycle == cycles - 1)
        return self.state.rows

    def _run_cycle(self, cycle: int, last: bool) -> None:
        cfg, s = self.cfg, self.cfg.schedule
        if cycle > 0 and s.reinit_each_cycle:
            self.learner = build_learner(cfg, self.task, self.runtime, self.module_training is not None)
        labeled = self.pool.labeled_indices
        t0 = time.perf_counter()
        try:
            train_cycle(self.learner, self.task, labeled, epochs=int(s.epochs), batch_size=int(s.batch_size),
                        make_optimizer=instantiate(s.optimizer), make_scheduler=instantiate(s.lr_scheduler),
                        generator=self.train_generator, module_training=self.module_training, cycle=cycle,
                        progress=cfg.progress)
        except NonFiniteLossError as e:
            kept = str(self.checkpoint_path) if self.checkpoint_path.is_file() else None
            raise NonFiniteLossError(e.cycle, e.epoch, e.batch, kept) from None
        t1 = time.perf_counter()
        evaluation = evaluate(self.learner, self.task, int(s.eval_batch_size))
        t2 = time.perf_counter()
        if not last:
            picked, scores = select(self.learner, self.task, self.sampler, self.pool.unlabeled_indices, labeled,
                                    int(s.query_size), s.subset_size, int(s.eval_batch_size), self.select_generator)
            self.pool.label(picked, cycle + 1)
            self.state.selected += [{"cycle": cycle + 1, "pool_index": int(i), "score": float(v)}
                                    for i, v in zip(picked.tolist(), scores.tolist())]
        t3 = time.perf_counter()
        row = {
            "task": cfg.task.name, "model": cfg.model.name, "sampler": cfg.sampler.name, "seed": int(cfg.seed),
            "cycle": cycle, "n_labeled": labeled.numel(), "metric": self.task.metric_name, "value": evaluation.metric,
            "ranking_accuracy": evaluation.ranking_accuracy,
            "train_s": round(t1 - t0, 3), "eval_s": round(t2 - t1, 3), "select_s": round(t3 - t2, 3),
        }
        self.state.rows.append(row)
        self.state.next_cycle, self.state.finished = cycle + 1, last
        outputs.write_test_scores(self.run_dir / outputs.TEST_SCORES_CSV, cycle, evaluation.real_loss,
                                  evaluation.entropy, evaluation.predicted_loss)
        outputs.save_checkpoint(self.checkpoint_path, self._checkpoint())
        self._write_csvs()
        rank = "" if evaluation.ranking_accuracy is None else f" | ranking acc {evaluation.ranking_accuracy:.4f}"
        log.info("[%s seed %d] cycle %d (%d/%d) | labeled %d | %s %.4f%s | train %.1fs eval %.1fs select %.1fs",
                 cfg.sampler.name, cfg.seed, cycle, cycle + 1, int(s.cycles), row["n_labeled"], row["metric"], row["value"],
                 rank, row["train_s"], row["eval_s"], row["select_s"])


def run_experiment(cfg: DictConfig, run_dir: str | Path) -> list[dict]:
    """Run (or resume, or skip if finished) one (task, model, sampler, seed) into run_dir."""
    return ActiveLearningRun(cfg, Path(run_dir)).run()

"""Drives one run's cycles, resumably: the run directory, checkpoint, resume, tracking and run lock around them.

One cycle (train, evaluate, select) and the building of its pieces from config are `al_runner.cycle`, shared with
al-label's rounds; the phases are `al_runner.loop`; the files are `al_runner.rundir` (names and columns in
`al_runner.schema`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from al_runner import config_schema, platform, rundir, schema
from al_runner.atomic import remove_stale_temp_files
from al_runner.build import build_task, resolve_threads, schedule_sizes, seed_for, validate_schedule
from al_runner.cycle import build_run, cycle_row, progress_checkpoint, run_cycle
from al_runner.errors import ConfigError, DataError, NonFiniteLossError
from al_runner.learner import Learner
from al_runner.loop import TrainingProgress
from al_runner.pool import Pool
from al_runner.runlock import RunLock
from al_runner.runtime import Runtime
from al_runner.samplers import Sampler
from al_runner.tasks.base import Task
from al_runner.tracking import Tracking

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 3  # 3: records the data fingerprint
IN_CYCLE_FORMAT = 1  # the in-cycle checkpoint (schema.IN_CYCLE_CHECKPOINT)


@dataclass
class RunState:
    next_cycle: int = 0
    finished: bool = False
    rows: list[dict] = field(default_factory=list)
    selected: list[dict] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)


class ActiveLearningRun:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.checkpoint_path = self.run_dir / schema.CHECKPOINT
        self.in_cycle_path = self.run_dir / schema.IN_CYCLE_CHECKPOINT
        self.tracking = Tracking(cfg)  # logger=...: a tracker whose package is missing is refused at once, in one line
        self.parts = build_run(cfg, build_task=_task_of_config)  # the sampler's needs refused before any training
        # what decides the floating-point path (CPU, ISA, builds): logged, saved, compared on resume
        self.platform = platform.floating_point_path(
            self.runtime.device, resolve_threads(cfg), precision="bf16" if self.runtime.amp else "fp32"
        )
        self.initial_size, self.query_size = schedule_sizes(cfg, self.task.pool_size)  # counts, or pool fractions
        self.pool = Pool(self.task.pool_size)
        # initial set: seed_data (default: seed) only, never the sampler
        self.init_generator = torch.Generator().manual_seed(seed_for(cfg, "data"))
        self.state = RunState()
        self.outcome = "finished"  # or "resumed" / "skipped" (the sweep summary's words)

    # the run's pieces (`self.parts`), by name: the learner is replaced when a cycle re-initialises it
    @property
    def runtime(self) -> Runtime:
        return self.parts.runtime

    @property
    def task(self) -> Task:
        return self.parts.task

    @property
    def sampler(self) -> Sampler:
        return self.parts.sampler

    @property
    def learner(self) -> Learner:
        return self.parts.learner

    @property
    def train_generator(self) -> torch.Generator:
        return self.parts.train_generator

    @property
    def select_generator(self) -> torch.Generator:
        return self.parts.select_generator

    # --- persistence -------------------------------------------------------------------------
    def comparable_config(self) -> dict:
        return rundir.comparable_config(self.cfg, self.runtime.resolved())

    def _checkpoint(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.comparable_config(),
            "data": self.task.fingerprint(),
            "next_cycle": self.state.next_cycle,
            "finished": self.state.finished,
            "rows": self.state.rows,
            "selected": self.state.selected,
            "details": self.state.details,
            "learner": self.learner.state_dict(),
            "pool": self.pool.state_dict(),
            "generators": self.parts.generator_states(),
            "platform": self.platform,
        }

    def _restore(self, ckpt: dict) -> None:
        self._check_resumable(ckpt, self.checkpoint_path, CHECKPOINT_FORMAT)
        self.state = RunState(ckpt["next_cycle"], ckpt["finished"], ckpt["rows"], ckpt["selected"], ckpt["details"])
        self.learner.load_state_dict(ckpt["learner"])
        self.pool.load_state_dict(ckpt["pool"])
        self.parts.load_generator_states(ckpt["generators"])

    def _check_resumable(self, ckpt: dict, path: Path, expected_format: int) -> None:
        """A checkpoint of this run: same format, config, floating-point path and data, else refused."""
        if ckpt.get("format") != expected_format:
            raise ConfigError(f"{path} was written by an incompatible version; move it away to start over")
        diffs = rundir.config_differences(ckpt["config"], self.comparable_config())
        if diffs:
            raise rundir.different_config(self.run_dir, diffs)
        rundir.check_platform(ckpt, self.platform, self.run_dir)  # another CPU / ISA / build: refused
        changed = rundir.data_changes(ckpt["data"], self.task.fingerprint())
        if changed:
            raise DataError(
                f"{self.run_dir}: the data changed since this run's checkpoint ({'; '.join(changed)}), so its labeled "
                f"pool indices would point at other images. Restore that data, or start over in another directory "
                f"(e.g. name=<new>) or after deleting this one"
            )

    # --- within a cycle: training progress, saved every `checkpoint_minutes` -----------------------
    def _in_cycle_progress(self) -> TrainingProgress | None:
        """The saved training progress of the cycle this run is about to run, if any (checked like the
        checkpoint). A file of an earlier cycle (killed between the cycle's checkpoint and its removal) is removed."""
        saved = rundir.load_checkpoint(self.in_cycle_path)
        if saved is None:
            return None
        self._check_resumable(saved, self.in_cycle_path, IN_CYCLE_FORMAT)
        if saved["cycle"] != self.state.next_cycle or self.state.finished:
            self.in_cycle_path.unlink(missing_ok=True)
            return None
        return TrainingProgress.from_record(saved["progress"])

    def _save_in_cycle(self, cycle: int, progress: TrainingProgress) -> None:
        state = {
            "format": IN_CYCLE_FORMAT,
            "config": self.comparable_config(),
            "data": self.task.fingerprint(),
            "platform": self.platform,
            "cycle": cycle,
            "progress": progress.to_record(),
        }
        rundir.save_checkpoint(self.in_cycle_path, state)  # write-then-rename, as the cycle checkpoint
        # `al-run --status` reads where a stopped run will resume from this line (sweep_status.SAVED_LINE)
        log.info(
            "cycle %d: progress saved after epoch %d (%s)", cycle, progress.epochs_done, schema.IN_CYCLE_CHECKPOINT
        )

    def _write_csvs(self) -> None:
        rundir.write_csv(self.run_dir / schema.CYCLES_CSV, schema.CYCLE_COLUMNS, self.state.rows)
        rundir.write_csv(self.run_dir / schema.SELECTED_CSV, schema.SELECTED_COLUMNS, self.state.selected)
        if self.state.details:
            rundir.write_csv(self.run_dir / schema.METRIC_DETAILS_CSV, schema.METRIC_DETAIL_COLUMNS, self.state.details)

    # --- the cycle loop ----------------------------------------------------------------------
    def run(self) -> list[dict]:
        """Call with the run directory's lock held (`run_locked`)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.run_dir)  # of a writer killed mid-write
        ckpt = rundir.load_checkpoint(self.checkpoint_path)
        if ckpt is not None:
            self._restore(ckpt)  # a refused resume raises here, before anything is written
        log.info("run directory: %s", self.run_dir)  # where this run's files go, once it is accepted
        if ckpt is None and self._skip_finished_records():
            return self.state.rows
        in_cycle = self._in_cycle_progress()  # refused (another config, machine or data) before anything is written
        log.info("floating-point path: %s", platform.describe(self.platform))
        emulated = platform.emulated_bf16_warning(self.platform)
        if emulated:  # bf16 asked for where the CPU has no bf16 units: it runs, much slower
            log.warning(emulated)
        chosen = platform.auto_bf16_note(self.platform, self.cfg.runtime.get("amp"), self.cfg.model.get("name"))
        if chosen:  # auto picked bf16 on this CPU: say so, and how to get fp32
            log.info(chosen)
        if ckpt is not None and self.state.finished:
            # its config.yaml and platform.json stay as the run wrote them (a later version would add its keys)
            self._write_csvs()  # a kill between the checkpoint and the CSVs left them one cycle behind
            self.outcome = "skipped"
            log.info("run in %s already finished (%d cycles); nothing to do", self.run_dir, len(self.state.rows))
            return self.state.rows
        rundir.save_config(self.run_dir / rundir.CONFIG_FILE, self.cfg)
        rundir.save_platform(self.run_dir / platform.PLATFORM_FILE, self.platform)
        if ckpt is not None:
            self._write_csvs()  # a kill between the checkpoint and the CSVs left them one cycle behind
            self.outcome = "resumed"
            if in_cycle is None:
                log.info("resuming %s after cycle %d", self.run_dir, self.state.next_cycle - 1)
        else:
            picks = self.pool.label_initial(self.initial_size, self.init_generator)
            self.state.selected += [
                {"cycle": 0, "pool_index": int(i), "item": name, "score": None, "classes": classes}
                for i, name, classes in zip(
                    picks.tolist(), self.task.pool_item_names(picks), self._classes_of_labeled(picks)
                )
            ]
        cycles = int(self.cfg.schedule.cycles)
        if in_cycle is not None:
            self.outcome = "resumed"
            log.info(
                "resuming %s in cycle %d after epoch %d of %d (its in-cycle checkpoint)",
                self.run_dir,
                self.state.next_cycle,
                in_cycle.epochs_done,
                int(self.cfg.schedule.epochs),
            )
        self.tracking.start(self.run_dir, self.parts.learning_loss)  # a resumed run continues its tracked run
        try:
            for cycle in range(self.state.next_cycle, cycles):
                self._run_cycle(cycle, last=cycle == cycles - 1, resume=in_cycle)
                in_cycle = None
            self.tracking.finish()  # the run's figures as artifacts
        finally:
            self.tracking.close()
        return self.state.rows

    def _skip_finished_records(self) -> bool:
        """No checkpoint, but the run's records say it finished (e.g. a committed run copied back into its sweep):
        nothing to do, and nothing of it is rewritten (its platform.json keeps the machine it was made on)."""
        cycles = int(self.cfg.schedule.cycles)
        rows = rundir.finished_records(self.run_dir, self.comparable_config(), cycles)
        if rows is None:
            if (self.run_dir / schema.CYCLES_CSV).is_file():
                log.warning(
                    "%s holds records of an unfinished run but no checkpoint to resume from: starting over (its CSVs "
                    "will be replaced)",
                    self.run_dir,
                )
            return False
        self.state = RunState(cycles, True, rows, [], [])
        self.outcome = "skipped"
        log.info(
            "run in %s already finished (%d cycles; its records, without a checkpoint); nothing to do",
            self.run_dir,
            len(rows),
        )
        return True

    def _record_picks(self, cycle: int, picked: torch.Tensor, scores: torch.Tensor) -> None:
        self.pool.label(picked, cycle + 1)
        names = self.task.pool_item_names(picked)  # which image (or person) was labeled, by name
        classes = self._classes_of_labeled(picked)  # after labeling: what the labels bought (query diagnostics)
        self.state.selected += [
            {"cycle": cycle + 1, "pool_index": int(i), "item": name, "score": float(v), "classes": c}
            for i, name, v, c in zip(picked.tolist(), names, scores.tolist(), classes)
        ]

    def _classes_of_labeled(self, indices: torch.Tensor) -> list[str | None]:
        """selected.csv's `classes` of points the pool has labeled: for the query diagnostics, never a sampler."""
        assert bool((self.pool.labeled_cycle[indices] >= 0).all()), "classes are read only for labeled points"
        names = self.task.labeled_class_names(indices)
        if names is None:  # a task without classes (pose)
            return [None] * len(indices)
        return [schema.CLASSES_SEPARATOR.join(point) for point in names]

    def _run_cycle(self, cycle: int, last: bool, resume: TrainingProgress | None = None) -> None:
        cfg = self.cfg
        labeled = self.pool.labeled_indices
        try:
            result = run_cycle(
                self.parts,
                labeled,
                self.pool.unlabeled_indices,
                self.query_size,
                cycle,
                last=last,
                on_epoch=self.tracking.epoch_callback(cycle, int(cfg.schedule.epochs)),
                resume=resume,
                checkpoint=progress_checkpoint(cfg, lambda progress: self._save_in_cycle(cycle, progress)),
            )
        except NonFiniteLossError as e:
            kept = str(self.checkpoint_path) if self.checkpoint_path.is_file() else None
            raise NonFiniteLossError(e.cycle, e.epoch, e.batch, kept) from None
        if not last:
            self._record_picks(cycle, result.picked, result.scores)
        evaluation = result.evaluation
        row = cycle_row(
            cfg,
            cycle,
            labeled.numel(),
            self.task.metric_name,
            evaluation.metric,
            self.task.uncertainty_name,
            evaluation.ranking_accuracy,
            result.seconds(),
        )
        self.state.rows.append(row)
        self.state.details += [{"cycle": cycle, "name": k, "value": float(v)} for k, v in evaluation.details.items()]
        self.state.next_cycle, self.state.finished = cycle + 1, last
        rundir.write_test_scores(
            self.run_dir / schema.TEST_SCORES_CSV,
            cycle,
            evaluation.real_loss,
            evaluation.uncertainty,
            evaluation.predicted_loss,
        )
        rundir.save_checkpoint(self.checkpoint_path, self._checkpoint())
        self.in_cycle_path.unlink(missing_ok=True)  # the cycle's checkpoint supersedes its progress
        self._write_csvs()
        self.tracking.log_cycle(row, [p for p in self.state.selected if p["cycle"] == cycle + 1])
        self._log_cycle(row)

    def _log_cycle(self, row: dict) -> None:
        cfg, cycle, accuracy = self.cfg, row["cycle"], row["ranking_accuracy"]
        rank = "" if accuracy is None else f" | ranking acc {accuracy:.4f}"
        log.info(
            "[%s seed %d] cycle %d (%d/%d) | labeled %d | %s %.4f%s | train %.1fs eval %.1fs select %.1fs",
            cfg.sampler.name,
            cfg.seed,
            cycle,
            cycle + 1,
            int(cfg.schedule.cycles),
            row["n_labeled"],
            row["metric"],
            row["value"],
            rank,
            row["train_s"],
            row["eval_s"],
            row["select_s"],
        )


def _task_of_config(cfg: DictConfig, runtime: Runtime) -> Task:
    """al-run's task, from config, with the schedule checked against its pool before anything else is built."""
    config_schema.check_composed(cfg)
    task = build_task(cfg, runtime)
    validate_schedule(cfg, task.pool_size)
    return task


def run_locked(
    cfg: DictConfig, run_dir: str | Path, remove_if_refused: bool = True, remove_empty_parent: bool = False
) -> ActiveLearningRun:
    """Lock the run directory first (a second process refuses at once, touching nothing), then build and run.

    remove_if_refused: a run refused at build time leaves no empty run directory behind (a sweep keeps it: the
    job's log there records the refusal, and sweep.csv points to it)."""
    run_dir = Path(run_dir)
    # Hydra creates the directory before the job starts
    fresh = remove_if_refused and (not run_dir.is_dir() or not any(run_dir.iterdir()))
    with RunLock(run_dir) as lock:
        try:
            run = ActiveLearningRun(cfg, run_dir)
        except BaseException:
            if fresh:  # refused at build time (bad config, missing data): what this attempt created goes
                lock.path.unlink(missing_ok=True)
                _remove_files_of_refused_run(run_dir, remove_empty_parent)
            raise
        run.run()
    return run


def run_experiment(cfg: DictConfig, run_dir: str | Path) -> list[dict]:
    """Run (or resume, or skip if finished) one (task, model, sampler, seed) into run_dir."""
    return run_locked(cfg, run_dir).state.rows


def _remove_files_of_refused_run(run_dir: Path, remove_empty_parent: bool) -> None:
    """The directory was empty (or absent) when the run began, so its files are this attempt's (Hydra's job log,
    opened by a log line while the data was read): removed, then the directory, then (`remove_empty_parent`, al-run's
    single runs) `outputs/<name>/` if that is left empty. The refusal itself is printed on the terminal."""
    for path in run_dir.iterdir() if run_dir.is_dir() else []:
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
    _remove_if_empty(run_dir)
    if remove_empty_parent and not run_dir.exists():
        _remove_if_empty(run_dir.parent)


def _remove_if_empty(run_dir: Path) -> None:
    try:
        run_dir.rmdir()
    except OSError:  # not empty (a log, another run's files) or already gone
        pass

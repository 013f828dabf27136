"""`al-run --status <sweep dir>`: what a sweep has finished, what runs where and how far it got, what is left, and
about how long that takes.

Read from the run directories themselves (config.yaml, cycles.csv, run.lock, the job's log) and the sweep's plan
(multirun.yaml), not from sweep.csv, so it is right under any launcher and when several `al-run` processes share one
sweep (each writes its own job numbers into sweep.csv). It only reads: no lock is taken, nothing is written, no torch.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from al_runner import schema
from al_runner.cpuinfo import cpu_model
from al_runner.errors import ALRunnerError
from al_runner.figures.errors import FigureDataError
from al_runner.figures.labels import sampler_label
from al_runner.figures.loading import read_platform, read_run_config
from al_runner.figures.sweep_plan import MULTIRUN_FILE, PLANNED_KEYS, cycles_asked, missing_runs_text, planned_sweep
from al_runner.runlock import lock_holder

LOG_TAIL_BYTES = 65536
EPOCH_LINE = re.compile(r"cycle (\d+) epoch (\d+)/(\d+)")  # al_runner.loop's progress line
START_LINE = "run directory: "  # runner.ActiveLearningRun.run's first line
SAVED_LINE = re.compile(r"cycle (\d+): progress saved after epoch (\d+)")  # runner._save_in_cycle's line


class SweepStatusError(ALRunnerError):
    pass


@dataclass
class RunStatus:
    run_dir: Path
    sampler: str
    seed: str
    cycles_planned: int | None
    cycle_seconds: list[float] = field(default_factory=list)  # per finished cycle: train + eval + select
    holder: dict | None = None  # the live lock's owner record, if a process holds the run
    epoch: tuple[int, int] | None = None  # (epochs done, of) in the cycle under way, from the job's log
    saved_epoch: int | None = None  # the epoch its in-cycle save holds (where a stopped run resumes), from the log
    in_cycle_save: bool = False  # whether the run directory holds an in-cycle save
    cpu: str | None = None  # the CPU its platform.json names (CPU runs; a resume on another CPU type is refused)
    arm: str = ""  # the other keys the sweep varies, as this run has them: "runtime.amp=true" ("" when none)

    @property
    def cycles_done(self) -> int:
        return len(self.cycle_seconds)

    @property
    def finished(self) -> bool:
        return self.cycles_planned is not None and self.cycles_done >= self.cycles_planned

    @property
    def state(self) -> str:
        return "finished" if self.finished else "running" if self.holder else "stopped"

    def where(self) -> str:
        if self.cycles_planned is None:
            return f"{self.cycles_done} cycles done"
        text = f"cycle {self.cycles_done} of {self.cycles_planned}"
        return text + (f", epoch {self.epoch[0]}/{self.epoch[1]}" if self.epoch else "")

    def resumes(self) -> str:
        """Where the sweep's command takes a stopped run up again."""
        if self.saved_epoch is not None and self.in_cycle_save:
            return f"resumes after epoch {self.saved_epoch} of cycle {self.cycles_done} (its in-cycle save)"
        if self.in_cycle_save:
            return f"resumes from its in-cycle save in cycle {self.cycles_done}"
        return f"resumes at the start of cycle {self.cycles_done}"

    def epochs_left_share(self) -> float:
        """The share of the current cycle still to train: from the log's epoch while running, from the in-cycle
        save when stopped (what a restart redoes)."""
        if self.epoch is None:
            return 1.0
        done = self.epoch[0] if self.holder else (self.saved_epoch if self.in_cycle_save and self.saved_epoch else 0)
        return 1.0 - done / max(self.epoch[1], 1)

    def name(self) -> str:
        return f"{sampler_label(self.sampler)} seed {self.seed}" + (f" [{self.arm}]" if self.arm else "")


def _cycle_seconds(run_dir: Path) -> list[float]:
    path = run_dir / schema.CYCLES_CSV
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row["cycle"]))
    return [sum(float(row.get(column) or 0.0) for column in schema.TIMING_COLUMNS) for row in rows]


def _log_tail(run_dir: Path) -> str:
    """The job log from the latest start of the run on (each start logs START_LINE first): lines of a process
    that was stopped before it are no longer where the run is."""
    path = run_dir / schema.JOB_LOG
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        tail = f.read().decode("utf-8", "replace")
    start = tail.rfind(START_LINE)
    return tail if start < 0 else tail[start:]


def _last_match(pattern: re.Pattern, text: str, cycle: int) -> re.Match | None:
    """The last line of `pattern` about this cycle (the log is appended across restarts: the last is the latest)."""
    found = [m for m in pattern.finditer(text) if int(m.group(1)) == cycle]
    return found[-1] if found else None


def _cpu_of(run_dir: Path) -> str | None:
    try:
        record = read_platform(run_dir) or {}
    except FigureDataError:  # an unreadable record names no CPU; the run is still reported
        return None
    return record.get("cpu_model") if record.get("device") == "cpu" else None


def run_status(run_dir: Path, arm_keys: list[str] | tuple[str, ...] = ()) -> RunStatus | None:
    """None for a folder that is not a run (no config.yaml). `arm_keys`: the other keys its sweep varies."""
    config = read_run_config(run_dir)
    if config is None:
        return None
    status = RunStatus(
        run_dir=run_dir,
        sampler=str(config.get("sampler.name", "?")),
        seed=str(config.get("seed", "?")),
        cycles_planned=cycles_asked(config),
        cycle_seconds=_cycle_seconds(run_dir),
        cpu=_cpu_of(run_dir),
        arm=arm_text(arm_keys, [swept_value(config, key) for key in arm_keys]),
    )
    if not status.finished:
        status.holder = lock_holder(run_dir)
        tail, cycle = _log_tail(run_dir), status.cycles_done
        epoch, saved = _last_match(EPOCH_LINE, tail, cycle), _last_match(SAVED_LINE, tail, cycle)
        status.epoch = (int(epoch.group(2)), int(epoch.group(3))) if epoch else None
        status.saved_epoch = int(saved.group(2)) if saved else None
        status.in_cycle_save = (run_dir / schema.IN_CYCLE_CHECKPOINT).is_file()
    return status


@dataclass
class SweepStatus:
    sweep_dir: Path
    runs: list[RunStatus]
    not_started: list[tuple[str, str, str]]  # (sampler, seed, arm) of the plan with no run directory yet
    samplers: list[str]  # the plan's, in its order
    unreadable: list[str] = field(default_factory=list)  # "<folder>: <why>" for run folders that could not be read

    def of_state(self, state: str) -> list[RunStatus]:
        return [run for run in self.runs if run.state == state]

    def counts(self) -> str:
        total = len(self.runs) + len(self.not_started)
        states = ", ".join(f"{len(self.of_state(state))} {state}" for state in ("finished", "running", "stopped"))
        return f"{total} run{'' if total == 1 else 's'}: {states}, {len(self.not_started)} not started"

    def seeds_mixing_cpus(self) -> dict[str, dict[str, list[str]]]:
        """Seeds whose runs name different CPUs in platform.json: seed -> CPU -> samplers (their paired
        differences would mix floating-point paths; al-plot notes them too)."""
        by_seed: dict[str, dict[str, list[str]]] = {}
        for run in self.runs:
            if run.cpu:
                by_seed.setdefault(run.seed, {}).setdefault(run.cpu, []).append(run.sampler)
        return {seed: cpus for seed, cpus in by_seed.items() if len(cpus) > 1}

    def typical_cycle_seconds(self, cpu: str | None = None) -> dict[tuple[str | None, str | None, int], float]:
        """Median seconds of cycle c over the finished runs, keyed (sampler, arm, c), with None for "any": per sampler
        and arm, per sampler, per arm (e.g. all bf16 runs), and over all of them. The median, since a run paused or
        slowed for a while (`kill -STOP`, a benchmark beside it) keeps those hours in its cycle times; only the runs
        made on `cpu` (platform.json) when some of them finished, since another CPU type runs at another speed."""
        finished = self.of_state("finished")
        on_this_cpu = [run for run in finished if cpu is not None and run.cpu == cpu]
        times: dict[tuple[str | None, str | None, int], list[float]] = {}
        for run in on_this_cpu or finished:
            for cycle, seconds in enumerate(run.cycle_seconds):
                for sampler, arm in ((run.sampler, run.arm), (run.sampler, None), (None, run.arm), (None, None)):
                    times.setdefault((sampler, arm, cycle), []).append(seconds)
        return {key: statistics.median(values) for key, values in times.items()}

    def seconds_left(self, cpu: str | None = None) -> float | None:
        """Run time the unfinished and unstarted runs still need, from the finished runs' cycle times
        (`typical_cycle_seconds`: of the same sampler and arm where there are some, else of the sampler, else of the
        arm, else of all; those made on `cpu` when some finished there); None before any run finished."""
        means = self.typical_cycle_seconds(cpu)
        if not means:
            return None

        def cycle_time(sampler: str, cycle: int, arm: str = "") -> float:
            for key in ((sampler, arm, cycle), (sampler, None, cycle), (None, arm, cycle), (None, None, cycle)):
                if key in means:
                    return means[key]
            return 0.0

        cycles = max((run.cycles_planned or 0 for run in self.runs), default=0) or (
            max(cycle for _, _, cycle in means) + 1
        )
        left = 0.0
        for run in self.runs:
            if run.finished:
                continue
            for cycle in range(run.cycles_done, run.cycles_planned or cycles):
                share = run.epochs_left_share() if cycle == run.cycles_done else 1.0
                left += share * cycle_time(run.sampler, cycle, run.arm)
        for sampler, _, arm in self.not_started:
            left += sum(cycle_time(sampler, cycle, arm) for cycle in range(cycles))
        return left


def sweep_status(sweep_dir: Path) -> SweepStatus:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepStatusError(f"{sweep_dir} is not a folder: give a sweep's folder (outputs/<name>)")
    single = run_status(sweep_dir)  # a single run's folder (al-run without -m) reads as a sweep of that run
    if single is not None:
        return SweepStatus(sweep_dir, [single], [], [single.sampler])
    plan = sweep_dir / MULTIRUN_FILE
    grid = planned_sweep(plan) if plan.is_file() else None
    arm_keys = [key for key in (grid or {}) if key not in PLANNED_KEYS]
    runs, unreadable = [], []
    for path in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        try:
            status = run_status(path, arm_keys)
        except (ALRunnerError, OSError, ValueError, KeyError) as error:  # one bad folder does not hide the others
            unreadable.append(f"{path.name}: {error}")
            continue
        if status is not None:
            runs.append(status)
    present = {(run.sampler, run.seed, run.arm) for run in runs}
    samplers = (grid or {}).get("sampler") or sorted({run.sampler for run in runs})
    seeds = (grid or {}).get("seed") or sorted({run.seed for run in runs}, key=lambda s: (not s.isdigit(), len(s), s))
    arms = [arm_text(arm_keys, values) for values in product(*(grid[key] for key in arm_keys))]
    not_started = (
        [(s, seed, arm) for seed, s, arm in product(seeds, samplers, arms) if (s, seed, arm) not in present]
        if grid and not any(item.endswith(f"={MISSING_VALUE}") for run in runs for item in run.arm.split(", "))
        else []
    )
    if not runs and not not_started and not unreadable:
        raise SweepStatusError(
            f"{sweep_dir} holds no run (no folder with a config.yaml) and no {MULTIRUN_FILE}: is it a sweep's folder?"
        )
    return SweepStatus(sweep_dir, runs, not_started, samplers, unreadable)


MISSING_VALUE = "?"  # a swept key a run's config.yaml does not hold (then the plan cannot be matched to the runs)


def swept_value(config: dict[str, str], key: str) -> str:
    """The run's value of a swept key: the key itself, or for a config group (`model=a,b`) the group's name."""
    return config.get(key, config.get(f"{key}.name", MISSING_VALUE))


def arm_text(keys, values) -> str:
    """ "runtime.amp=true, model.net.width=16": the values as the plan and a run's config.yaml both spell them."""
    return ", ".join(
        f"{key}={str(v).lower() if str(v) in ('True', 'False', 'None') else v}" for key, v in zip(keys, values)
    )


def sweeps_under(folder: Path) -> list[SweepStatus]:
    """The sweeps (or single runs) directly under a folder such as outputs/, for an overview."""
    found = []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        try:
            found.append(sweep_status(path))
        except SweepStatusError:
            continue
    return found


def overview(folder: Path, statuses: list[SweepStatus]) -> str:
    lines = [f"{folder}: {len(statuses)} sweep(s); `al-run --status <one of them>` for its runs"]
    lines += [f"  {status.sweep_dir}: {status.counts()}" for status in statuses]
    return "\n".join(lines)


def as_json(status: SweepStatus | list[SweepStatus]) -> str:
    """The same reading as `report` (or, for an overview, one record per sweep), for scripts and dashboards
    (`al-run --status DIR --json`)."""
    if isinstance(status, list):
        return json.dumps([as_record(one) for one in status], indent=1)
    return json.dumps(as_record(status), indent=1)


def as_record(status: SweepStatus) -> dict:
    runs = [
        {
            "sampler": run.sampler,
            "seed": run.seed,
            "state": run.state,
            "cycles_done": run.cycles_done,
            "cycles_planned": run.cycles_planned,
            "epoch": list(run.epoch) if run.epoch else None,
            "saved_epoch": run.saved_epoch if run.in_cycle_save else None,
            "holder": run.holder,
            "cpu": run.cpu,
            "run_dir": str(run.run_dir),
            **({"arm": run.arm} if run.arm else {}),
        }
        for run in status.runs
    ]
    record = {
        "sweep_dir": str(status.sweep_dir),
        "runs": runs,
        "not_started": [
            {"sampler": sampler, "seed": seed, **({"arm": arm} if arm else {})}
            for sampler, seed, arm in status.not_started
        ],
        "unreadable": status.unreadable,
        "seconds_left": status.seconds_left(cpu_model()),
        "running_at_once": max(len(status.of_state("running")), 1),
    }
    return record


def _where(status: SweepStatus) -> str:
    here = cpu_model()
    return f", on this {here}" if any(run.cpu == here for run in status.of_state("finished")) else ""


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def _owner(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


def report(status: SweepStatus, now: float | None = None) -> str:
    now = time.time() if now is None else now
    running, stopped = status.of_state("running"), status.of_state("stopped")
    planned = f" (the plan: {MULTIRUN_FILE})" if (status.sweep_dir / MULTIRUN_FILE).is_file() else ""
    lines = [f"sweep {status.sweep_dir}{planned}: {status.counts()}"]
    if running:
        lines.append("running:")
        lines += [f"  {run.name()}: {run.where()} ({_owner(run.holder)})" for run in running]
    if stopped:
        lines.append("stopped (the sweep's command resumes them from their last save):")
        here = cpu_model()
        for run in stopped:
            elsewhere = (
                f"; made on {run.cpu}: a resume on this machine ({here}) is refused"
                if run.cpu not in (None, here)
                else ""
            )
            lines.append(f"  {run.name()}: {run.where()}; {run.resumes()}{elsewhere} ({run.run_dir})")
    if status.not_started:
        by_arm: dict[str, list[tuple[str, str]]] = {}
        for sampler, seed, arm in status.not_started:
            by_arm.setdefault(arm, []).append((sampler, seed))
        lines.append(
            "not started: "
            + "; ".join(
                (f"[{arm}] " if arm else "") + missing_runs_text(missing, status.samplers)
                for arm, missing in by_arm.items()
            )
        )
    if status.unreadable:
        lines.append("not readable (left out above):")
        lines += [f"  {text}" for text in status.unreadable]
    mixed = status.seeds_mixing_cpus()
    if mixed:

        def cpus_text(cpus: dict[str, list[str]]) -> str:
            return ", ".join(
                f"{cpu}: {' and '.join(map(sampler_label, samplers))}" for cpu, samplers in sorted(cpus.items())
            )

        lines.append(
            "seeds whose runs were made on different CPU types (their paired differences mix floating-point paths): "
            + "; ".join(f"seed {seed} ({cpus_text(cpus)})" for seed, cpus in mixed.items())
        )
    left = status.seconds_left(cpu_model())
    if left is None:
        lines.append("time left: no finished run yet to estimate it from")
    elif left > 0:
        workers = max(len(running), 1)
        end = time.strftime("%Y-%m-%d %H:%M", time.localtime(now + left / workers))
        lines.append(
            f"time left: about {_hours(left)} of run time (the finished runs' median cycle times{_where(status)}); "
            f"at {workers} run(s) at once, about {_hours(left / workers)}, ending near {end}"
        )
    return "\n".join(lines)

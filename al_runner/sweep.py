"""What happened to each job of a multirun, under any launcher.

Jobs may run in this process (basic launcher), in joblib worker processes or as SLURM jobs on
other hosts, so nothing is kept in memory: each job writes `<sweep dir>/.jobs/<launch>/<job number>.json`
when it starts ("running") and when it ends (finished / resumed / skipped / busy / failed). After the
sweep, the launching process (a Hydra callback, then `al-run`'s exit code) reads them all, prints
one line per job and writes `<sweep dir>/sweep.csv`. A job that is still "running" afterwards died
without reporting (SIGKILL, out of memory, node failure) and counts as failed.

`<launch>` names one `al-run -m` process (host and pid; its jobs find it in `LAUNCH_ENV`), so two processes
sweeping the same folder (one per core, or a relaunch while the first still runs) keep their records apart: each
reports its own jobs, and a job whose run the other process holds is "busy" (another process runs it), not failed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from al_runner.analysis.summary import report_summary
from al_runner.atomic import atomic_write_text
from al_runner.runlock import pid_alive

log = logging.getLogger(__name__)

JOBS_DIR = ".jobs"
SWEEP_CSV = "sweep.csv"
OUTCOMES = ("finished", "resumed", "skipped", "busy", "failed")  # busy: another process holds the run
LAUNCH_ENV = "AL_RUNNER_SWEEP_LAUNCH"  # the launching process's records folder under .jobs/, for its jobs
SUMMARY_COLUMNS = ["job", "status", "run_dir", "overrides", "error", "log"]
REPORT_DIR = "figures"  # <sweep dir>/figures: al-plot's report of the sweep
ASSIGNMENT_ENV = "AL_RUNNER_DEVICE_ASSIGNMENT"  # the GPU a launcher gave a job (hydra_plugins/al_runner_launchers)


@dataclass
class JobRecord:
    job: int
    status: str  # running | finished | resumed | skipped | busy | failed
    run_dir: str
    overrides: str
    error: str = ""
    log: str = ""


def jobs_dir(sweep_dir: Path) -> Path:
    """This launch's records folder (`LAUNCH_ENV`; a process that launched nothing uses .jobs/ itself)."""
    return Path(sweep_dir) / JOBS_DIR / os.environ.get(LAUNCH_ENV, "")


def start_launch(sweep_dir: Path) -> Path:
    """A new launch of the sweep: its own records folder, named in `LAUNCH_ENV` for its jobs (joblib workers and
    SLURM jobs inherit the environment). Folders of earlier launches go, except those of a launch still running on
    this host (another `al-run -m` process on the same sweep) and, from other hosts, those written to in the last
    day (a launch there cannot be checked)."""
    launch = f"{socket.gethostname()}-{os.getpid()}"
    os.environ[LAUNCH_ENV] = launch
    root = Path(sweep_dir) / JOBS_DIR
    for stale in root.glob("*.json"):  # records of a version that kept them in .jobs/ itself
        stale.unlink(missing_ok=True)
    for folder in root.glob("*-*"):
        if folder.is_dir() and folder.name != launch and not _launch_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
    folder = root / launch
    shutil.rmtree(folder, ignore_errors=True)  # a dead launch that had this pid
    return folder


def _launch_alive(folder: Path) -> bool:
    host, _, pid = folder.name.rpartition("-")
    if host != socket.gethostname():
        return time.time() - folder.stat().st_mtime < 86400
    return pid_alive(pid)


def write_job_record(sweep_dir: Path, record: JobRecord) -> None:
    jobs = jobs_dir(sweep_dir)
    jobs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(jobs / f"{record.job}.json", json.dumps(asdict(record)))


def read_job_record(sweep_dir: Path, job: int) -> JobRecord | None:
    """One job's record as written (a "running" one stays "running"), or None if it never started."""
    path = jobs_dir(sweep_dir) / f"{job}.json"
    return JobRecord(**json.loads(path.read_text())) if path.is_file() else None


def read_job_records(sweep_dir: Path) -> list[JobRecord]:
    """This launch's records."""
    records = []
    for path in jobs_dir(sweep_dir).glob("*.json"):
        record = JobRecord(**json.loads(path.read_text()))
        if record.status not in OUTCOMES:
            record.status, record.error = (
                "failed",
                "the job ended without reporting (killed, out of memory or node lost)",
            )
        records.append(record)
    return sorted(records, key=lambda r: r.job)


def summary_lines(records: list[JobRecord]) -> list[str]:
    lines = []
    for r in records:
        line = f"  #{r.job} {r.status:<8} {r.run_dir}"
        if r.status == "failed":
            line += f"\n      error: {r.error}\n      log: {r.log}"
        elif r.status == "busy":
            line += f"\n      {r.error}"
        lines.append(line)
    counts = {o: sum(r.status == o for r in records) for o in OUTCOMES}
    lines.insert(0, f"sweep: {len(records)} job(s): " + ", ".join(f"{n} {o}" for o, n in counts.items() if n))
    return lines


def write_sweep_csv(sweep_dir: Path, records: list[JobRecord]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, SUMMARY_COLUMNS)
    writer.writeheader()
    writer.writerows(asdict(r) for r in records)
    path = Path(sweep_dir) / SWEEP_CSV
    atomic_write_text(path, out.getvalue())
    return path


class SweepState:
    """What the launching process learned, for `al-run`'s exit code."""

    sweep_dir: Path | None = None
    records: list[JobRecord] | None = None

    @classmethod
    def failed(cls) -> list[JobRecord]:
        return [r for r in cls.records or [] if r.status == "failed"]


def finish_sweep(sweep_dir: Path) -> list[JobRecord]:
    records = read_job_records(sweep_dir)
    SweepState.records = records
    path = write_sweep_csv(sweep_dir, records)
    print("\n".join(summary_lines(records)) + f"\n  (written to {path})", flush=True)
    return records


def sweep_statistics(sweep_dir: Path) -> list[str]:
    """End of a multirun: al-plot's report into <sweep dir>/figures, and its short summary table, as lines.

    al-plot runs as a child process (the plotting stays out of the launching process); the table is read back from
    the tables it wrote (`al_runner.analysis.summary`). Never raises: a sweep that finished must not turn into a
    failure because its summary could not be made."""
    out_dir = Path(sweep_dir) / REPORT_DIR
    package_root = str(Path(__file__).resolve().parent.parent)  # this al_runner, installed or a checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    plot = [sys.executable, "-m", "al_runner.figures.cli", "--runs", str(sweep_dir), "--out", str(out_dir)]
    try:
        result = subprocess.run(plot, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            return [f"statistics: not written (al-plot: {error.removeprefix('error: ')})"]
        table = report_summary(out_dir)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, one line instead of a traceback
        return [f"statistics: not written ({type(error).__name__}: {error})"]
    return [
        "statistics of this sweep (al-plot):",
        *table,
        f"  full report (AUBC, paired tests with Holm, penalty matrix, ...): {out_dir / 'results.md'}",
    ]


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml `hydra.callbacks`): runs in the launching process only.

    With `statistics` (default), the end of a multirun also writes al-plot's report into <sweep dir>/figures and
    prints its short table (AUBC, last-cycle metric, significant wins) and the path of results.md."""

    def __init__(self, statistics: bool = True):
        self.statistics = statistics

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In the job, once its log is set up: the GPU a launcher gave it, in the run's log."""
        assignment = os.environ.get(ASSIGNMENT_ENV)
        if assignment:
            logging.getLogger("al_runner.launcher").info("%s", assignment)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        SweepState.sweep_dir, SweepState.records = sweep_dir, None
        start_launch(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = finish_sweep(Path(str(config.hydra.sweep.dir)))
        if self.statistics and any(r.status != "failed" for r in records):
            print("\n".join(sweep_statistics(Path(str(config.hydra.sweep.dir)))), flush=True)

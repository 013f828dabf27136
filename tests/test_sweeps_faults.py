"""Runs that survive anything: SIGKILL at any moment, a second process on the same run, Ctrl-C.

Each test drives the real `al-run` in subprocesses on tiny data and compares the final CSVs (minus
the wall-clock columns) with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from al_runner.sweep_status import report, sweep_status
from tests.conftest import csv_contents

REPO = Path(__file__).resolve().parent.parent
ARGS = [
    "task=synthetic",
    "model=small_cnn",
    "schedule=smoke",
    "model.net.width=8",
    "progress=false",
    "schedule.cycles=3",
    "runtime.threads=1",
    "name=faults",
]


def env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **extra}


def start(out: Path, *overrides: str, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "al_runner", *ARGS, *overrides, f"paths.output={out}"],
        cwd=REPO,
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(out: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "al_runner", *ARGS, f"paths.output={out}"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def run_dir(out: Path) -> Path:
    (found,) = (out / "faults").iterdir()
    return found


def wait_for(path_glob, process: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        hits = list(path_glob())
        if hits:
            return hits[0]
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the stall marker")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("reference")
    finish(out)
    return csv_contents(run_dir(out))


# One run killed again and again, each time somewhere else (the n-th write of a file counts from the
# start of that process; a relaunched process resumes, re-renders the CSVs, then continues):
KILL_POINTS = [
    "checkpoint.pt:1",  # the first checkpoint write: nothing finished yet
    "test_scores.csv:2",  # mid-cycle 1, evaluated but not yet checkpointed
    "checkpoint.pt:1",  # resumed after cycle 0: the checkpoint write of cycle 1
    "cycles.csv:1",  # resumed after cycle 0: re-rendering the CSVs from the checkpoint
    "cycles.csv:2",  # resumed after cycle 0: the CSV write right after cycle 1's checkpoint
]


def test_sigkill_at_any_point_then_relaunch_gives_the_uninterrupted_csvs(tmp_path, reference):
    for stall in KILL_POINTS:
        victim = start(tmp_path, AL_RUNNER_STALL_WRITE=stall)
        name = stall.split(":")[0]
        marker = wait_for(lambda: (tmp_path / "faults").glob(f"*/{name}.stalled"), victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert list(marker.parent.glob(f"{name}.tmp.*")), (
            f"{stall}: the kill should leave a half-written temporary file"
        )
        marker.unlink()
    directory = run_dir(tmp_path)
    relaunch = finish(tmp_path)
    assert "resuming" in relaunch.stdout and "after cycle 1" in relaunch.stdout
    assert csv_contents(directory) == reference
    assert not list(directory.glob("*.tmp.*"))


def test_sigkill_mid_cycle_resumes_from_the_in_cycle_checkpoint_with_the_uninterrupted_csvs(tmp_path, reference):
    # checkpoint_minutes=0: progress saved after every epoch; killed while writing the second save (after epoch 2 of
    # cycle 0), so the first (after epoch 1) is what the relaunch finds
    victim = start(tmp_path, "checkpoint_minutes=0", AL_RUNNER_STALL_WRITE="checkpoint_in_cycle.pt:2")
    wait_for(lambda: (tmp_path / "faults").glob("*/checkpoint_in_cycle.pt.stalled"), victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    directory = run_dir(tmp_path)
    assert not (directory / "checkpoint.pt").exists()  # cycle 0 never finished
    status = report(sweep_status(tmp_path / "faults"))  # al-run --status: where the relaunch will take it up
    assert "0 finished, 0 running, 1 stopped" in status
    assert "cycle 0 of 3, epoch 1/2; resumes after epoch 1 of cycle 0 (its in-cycle save)" in status
    relaunch = finish(tmp_path)  # the default cadence: the same run directory, the cadence is no part of its identity
    assert "in cycle 0 after epoch 1 of 2" in relaunch.stdout
    assert csv_contents(directory) == reference
    assert not list(directory.glob("*.tmp.*")) and not (directory / "checkpoint_in_cycle.pt").exists()


def test_a_second_process_refuses_at_once_and_the_first_finishes(tmp_path, reference):
    first = start(tmp_path, AL_RUNNER_STALL_WRITE="cycles.csv:2", AL_RUNNER_STALL_SECONDS="300")
    marker = wait_for(lambda: (tmp_path / "faults").glob("*/cycles.csv.stalled"), first)
    marker.unlink()
    directory = run_dir(tmp_path)
    assert "0 finished, 1 running, 0 stopped" in report(sweep_status(tmp_path / "faults"))
    assert f"(pid {first.pid} on " in report(sweep_status(tmp_path / "faults"))
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir()}
    t0 = time.time()
    second = subprocess.run(
        [sys.executable, "-m", "al_runner", *ARGS, f"paths.output={tmp_path}"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0 and time.time() - t0 < 30
    assert f"is in use by pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir()} == before
    (directory / "cycles.csv.release").touch()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    assert csv_contents(directory) == reference


def test_ctrl_c_prints_one_line_on_how_to_resume(tmp_path):
    victim = start(tmp_path, AL_RUNNER_STALL_WRITE="checkpoint.pt:2")
    wait_for(lambda: (tmp_path / "faults").glob("*/checkpoint.pt.stalled"), victim)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 130
    assert "Traceback" not in err
    (line,) = [l for l in err.splitlines() if l.strip()]
    assert line.startswith("al-run: interrupted;") and "al-run task=synthetic" in line


def test_two_al_run_processes_on_one_sweep_share_its_runs_and_neither_fails(tmp_path):
    """One `al-run -m` per core on the same sweep: the second skips the run the first holds ("busy", not a failure),
    runs the other, and each process's summary and records are its own (the second's launch leaves the first's
    records alone)."""
    sweep = [sys.executable, "-m", "al_runner", "-m", *ARGS, "seed=0,1", f"paths.output={tmp_path}"]
    first = subprocess.Popen(
        sweep,
        cwd=REPO,
        env=env(AL_RUNNER_STALL_WRITE="cycles.csv:1", AL_RUNNER_STALL_SECONDS="300"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = wait_for(lambda: (tmp_path / "faults").glob("*seed0*/cycles.csv.stalled"), first)  # holds seed 0
    second = subprocess.run(sweep, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "2 job(s): 1 finished, 1 busy" in second.stdout and f"is in use by pid {first.pid}" in second.stdout
    marker.with_name("cycles.csv.release").touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert "2 job(s): 1 finished, 1 skipped" in out  # seed 1 was finished by the second process
    launches = [folder.name for folder in (tmp_path / "faults" / ".jobs").iterdir()]
    assert len(launches) == 2 and f"{socket.gethostname()}-{first.pid}" in launches  # one records folder each
    status = report(sweep_status(tmp_path / "faults"))
    assert "2 finished, 0 running, 0 stopped, 0 not started" in status

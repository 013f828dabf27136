"""The `al-run` entry point as a user calls it: clear errors, real runs and a real multirun."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMOKE = ["task=synthetic", "schedule=smoke", "model.net.width=8", "progress=false"]


def al_run(*args, cwd):
    # PYTHONPATH: this checkout's al_runner, not whichever copy is installed in the venv
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_unknown_option_is_a_clear_error(tmp_path):
    result = al_run("sampler=no_such_sampler", f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    assert "sampler/no_such_sampler" in result.stderr and "learning_loss" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_cifar10_names_the_path_without_traceback(tmp_path):
    result = al_run("task=cifar10", f"task.root={tmp_path / 'nothing'}", f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    assert str(tmp_path / "nothing") in result.stderr and "task.download=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_schedule_is_refused_without_traceback(tmp_path):
    result = al_run(*SMOKE, "schedule.initial_size=500", f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0 and "pool of task synthetic has only 200" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_directory_is_deterministic_and_a_rerun_resumes(tmp_path):
    args = [*SMOKE, "sampler=entropy", "seed=3", f"paths.output={tmp_path}"]
    first = al_run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dirs = list(tmp_path.rglob("cycles.csv"))
    # named by the config that changes results: <task>-<model>-<sampler>-seed<seed>-<hash>
    assert len(run_dirs) == 1 and run_dirs[0].parent.name.startswith("synthetic-small_cnn-entropy-seed3-")
    second = al_run(*args, cwd=tmp_path)
    assert second.returncode == 0 and "already finished" in second.stdout + second.stderr
    assert len(list(tmp_path.rglob("cycles.csv"))) == 1


@pytest.mark.slow
def test_real_multirun_sweeps_seeds_and_samplers(tmp_path):
    result = al_run(
        "-m", *SMOKE, "seed=0,1", "sampler=random,learning_loss", f"paths.output={tmp_path}", "name=sweep", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(tmp_path.glob("sweep/*/cycles.csv"))
    # one directory per job, named by its resolved config, so the same command finds the same runs
    combos = [tuple(f.parent.name.split("-")[2:4]) for f in files]
    assert combos == [("learning_loss", "seed0"), ("learning_loss", "seed1"), ("random", "seed0"), ("random", "seed1")]
    for f in files:
        rows = list(csv.DictReader(open(f)))
        assert [r["cycle"] for r in rows] == ["0", "1"]
        assert f"seed{rows[0]['seed']}-" in f.parent.name


@pytest.mark.slow
def test_demo_experiment_multirun_uses_its_sweep(tmp_path):
    """The preset's own hydra.sweeper.params drive the sweep (shrunk to seconds)."""
    result = al_run(
        "-m",
        "experiment=demo",
        "task=synthetic",
        "schedule=smoke",
        "model.net.width=8",
        "progress=false",
        f"paths.output={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(tmp_path.glob("demo/*/cycles.csv"))) == 15


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    # batch 7 is refused for the ranking loss but fine for random: the sweep finishes random's job
    result = al_run(
        "-m",
        *SMOKE,
        "schedule.batch_size=7",
        "sampler=learning_loss,random",
        f"paths.output={tmp_path}",
        "name=sweep",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "1 job(s) failed" in result.stderr and "odd" in result.stderr and "Traceback" not in result.stderr
    assert len(list(tmp_path.glob("sweep/*-random-*/cycles.csv"))) == 1
    assert not list(tmp_path.glob("sweep/*-learning_loss-*/cycles.csv"))
    assert "failed" in (tmp_path / "sweep" / "sweep.csv").read_text()

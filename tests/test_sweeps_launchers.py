"""Real multiruns through Hydra's joblib and submitit (local) launchers, and an install from a wheel."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = ["task=synthetic", "model=small_cnn", "schedule=smoke", "model.net.width=8", "progress=false", "name=sweep"]


def al_run(*args: str, cwd: Path = REPO, executable: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    command = executable or [sys.executable, "-m", "al_runner"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def sweep_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_joblib_sweep_reports_a_failed_job_and_exits_non_zero(tmp_path):
    # batch 7 is refused for the ranking loss (odd batch) but fine for random: one job fails, one finishes
    result = al_run(
        "-m",
        "hydra/launcher=parallel",
        *TINY,
        "schedule.batch_size=7",
        "sampler=learning_loss,random",
        f"paths.output={tmp_path}",
    )
    assert result.returncode != 0
    assert "1 job(s) failed" in result.stderr and "odd" in result.stderr and "Traceback" not in result.stderr
    assert "sweep: 2 job(s): 1 finished, 1 failed" in result.stdout
    rows = {r["status"]: r for r in sweep_rows(tmp_path / "sweep")}
    assert set(rows) == {"finished", "failed"} and "odd" in rows["failed"]["error"]
    assert rows["failed"]["log"].endswith("al-run.log") and Path(rows["failed"]["log"]).is_file()
    for name in ("cycles.csv", "selected.csv", "test_scores.csv"):
        assert (Path(rows["finished"]["run_dir"]) / name).is_file()
    assert not (Path(rows["failed"]["run_dir"]) / "cycles.csv").exists()


@pytest.mark.slow
def test_submitit_local_sweep_writes_every_run_and_a_rerun_skips_them(tmp_path):
    args = ["-m", "hydra/launcher=slurm_local", *TINY, "sampler=entropy,random", f"paths.output={tmp_path}"]
    first = al_run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = sweep_rows(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["finished", "finished"]
    for row in rows:
        with open(Path(row["run_dir"]) / "cycles.csv") as f:
            assert [r["cycle"] for r in csv.DictReader(f)] == ["0", "1"]
    # the same runs spelled differently, as a single run: same directory, nothing to do
    single = al_run("seed=0", "sampler=entropy", *TINY, "runtime.threads=1", f"paths.output={tmp_path}")
    assert single.returncode == 0 and "already finished" in single.stdout
    assert len(list((tmp_path / "sweep").glob("*/cycles.csv"))) == 2


@pytest.mark.slow
def test_a_wheel_installed_into_a_fresh_venv_runs_the_demo(tmp_path):
    """`pip install .` (not editable): al-run finds every config without a source checkout around it."""
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "outputs", "multirun", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # torch, hydra, ... come from this interpreter's environment, after the venv's own site-packages
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # the venv's python runs pip (seen through the .pth), so the install and the al-run script are the venv's
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    al_run_script = [str(venv / "bin" / "al-run")]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env_check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import al_runner, sys; print(al_runner.__file__)"],
        cwd=outside,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert str(venv) in env_check.stdout, env_check.stdout + env_check.stderr
    version = subprocess.run(
        al_run_script + ["--version"], cwd=outside, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}
    )
    assert version.stdout.strip() == "al-run (al_runner) 0.1.0"
    plot_help = subprocess.run(
        [str(venv / "bin" / "al-plot"), "--help"],
        cwd=outside,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert plot_help.returncode == 0 and "--runs" in plot_help.stdout
    # the demo's first job (seed 0, random), shortened to one epoch of one cycle
    demo = subprocess.run(
        al_run_script
        + [
            "experiment=demo",
            "seed=0",
            "sampler=random",
            "schedule.cycles=1",
            "schedule.epochs=1",
            "progress=false",
            f"paths.output={outside / 'out'}",
        ],
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"},
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    (cycles,) = (outside / "out" / "demo").glob("mnist5k-small_cnn-random-seed0-*/cycles.csv")
    assert "mnist5k" in cycles.read_text()
    for preset, expected in (
        ("parallel", "n_jobs: 2"),
        ("slurm", "max_num_timeout: 20"),
        ("slurm_local", "cpus_per_task: 1"),
    ):
        shown = subprocess.run(
            al_run_script + [f"hydra/launcher={preset}", "--cfg", "hydra", "-p", "hydra.launcher"],
            cwd=outside,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
        )
        assert expected in shown.stdout, shown.stderr[-2000:]


@pytest.mark.slow
def test_the_installed_al_run_launches_our_launchers_outside_the_checkout(tmp_path):
    """The console script, run from another folder with no PYTHONPATH: hydra_plugins.al_runner_launchers must be
    found through the install, not through a checkout on sys.path ("Unknown plugin class" otherwise)."""
    script = Path(sys.executable).parent / "al-run"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(
        [str(script), "-m", "hydra/launcher=parallel", *TINY, "sampler=random", "seed=0,1", f"paths.output={tmp_path}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["status"] for r in sweep_rows(tmp_path / "sweep")] == ["finished", "finished"]

"""On CPU the resolved thread count is part of a run's identity and of what a resume compares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from al_runner import identity
from al_runner.build import DEFAULT_THREADS
from al_runner.errors import ConfigError
from al_runner.rundir import load_checkpoint
from al_runner.runner import run_experiment
from al_runner.schema import CHECKPOINT
from tests.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "task=synthetic",
    "model=small_cnn",
    "schedule=smoke",
    "model.net.width=8",
    "progress=false",
    "schedule.cycles=1",
]


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run_dir_for(*overrides: str) -> Path:
    cfg = compose_config([*SMOKE, *overrides], return_hydra_config=True)
    return Path(str(OmegaConf.select(cfg, "hydra.run.dir")))


def test_one_and_two_threads_are_two_run_directories_on_cpu():
    one, two = run_dir_for("runtime.threads=1"), run_dir_for("runtime.threads=2")
    assert one != two and one.parent == two.parent
    # null means torch's default in this process: the same run as spelling that count out
    assert run_dir_for() == run_dir_for(f"runtime.threads={DEFAULT_THREADS}")


def test_thread_count_is_left_out_on_cuda():
    """On CUDA the thread count only drives host-side work: the comparable config leaves it out."""
    from al_runner.rundir import comparable_config

    cfg = compose_config([*SMOKE, "runtime.threads=3"])
    on_cpu = comparable_config(cfg, {"device_type": "cpu", "amp": False, "channels_last": True, "compile": False})
    on_cuda = comparable_config(cfg, {"device_type": "cuda", "amp": True, "channels_last": True, "compile": False})
    assert on_cpu["runtime"]["threads"] == 3 and "threads" not in on_cuda["runtime"]


def test_a_parallel_launcher_names_the_directory_with_the_share_each_job_applies(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    shared = run_dir_for("hydra/launcher=parallel", "hydra.launcher.n_jobs=4")  # 8 cores / 4 jobs = 2 threads each
    assert shared == run_dir_for("runtime.threads=2")
    assert run_dir_for("hydra/launcher=parallel", "hydra.launcher.n_jobs=4", "runtime.threads=1") == run_dir_for(
        "runtime.threads=1"
    )  # an explicit count wins over the share


def test_resuming_a_one_thread_checkpoint_with_two_threads_is_refused_naming_runtime_threads(tmp_path):
    run_dir = tmp_path / "run"
    run_experiment(compose_config([*TINY, "runtime.threads=1"]), run_dir)
    assert load_checkpoint(run_dir / CHECKPOINT)["config"]["runtime"]["threads"] == 1
    with pytest.raises(ConfigError, match=r"differs in: runtime\.threads"):
        run_experiment(compose_config([*TINY, "runtime.threads=2"]), run_dir)


def al_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_same_command_at_one_and_two_threads_writes_two_runs(tmp_path):
    for threads in (1, 2):
        result = al_run(*TINY, f"runtime.threads={threads}", f"paths.output={tmp_path}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(path.parent for path in (tmp_path / "default").glob("*/cycles.csv"))
    assert len(runs) == 2
    recorded = {load_checkpoint(run / CHECKPOINT)["config"]["runtime"]["threads"] for run in runs}
    assert recorded == {1, 2}
    for run in runs:  # each directory is named by the config its checkpoint recorded
        assert run.name.endswith(identity.config_hash(load_checkpoint(run / CHECKPOINT)["config"]))


@pytest.mark.slow
def test_a_joblib_sweep_job_records_the_thread_count_its_directory_was_named_with(tmp_path):
    result = al_run(
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "sampler=random,entropy",
        f"paths.output={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(path.parent for path in (tmp_path / "default").glob("*/cycles.csv"))
    assert len(runs) == 2
    share = max(1, (os.cpu_count() or 1) // 2)
    for run in runs:
        recorded = load_checkpoint(run / CHECKPOINT)["config"]
        assert recorded["runtime"]["threads"] == share
        assert run.name.endswith(identity.config_hash(recorded))

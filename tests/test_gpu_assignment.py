"""Every GPU of one machine: hydra/launcher=parallel and gpu_shared put job k on GPU k mod N (device=cuda:<k mod N>),
log it in the run's log, and never change the run's directory. On this CPU machine the GPU count is faked
(hydra.launcher.gpus=N, and torch.cuda patched where the override itself is checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from al_runner.errors import ConfigError
from hydra_plugins.al_runner_launchers import joblib_gpus
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "task=synthetic",
    "model=small_cnn",
    "schedule=smoke",
    "model.net.width=8",
    "progress=false",
    "name=gpus",
    "schedule.epochs=1",
    "hydra.callbacks.sweep_summary.statistics=false",
]


def test_jobs_go_round_robin_over_the_gpus_and_a_job_naming_its_device_keeps_it():
    jobs = [
        ["sampler=random"],
        ["sampler=entropy"],
        ["sampler=coreset", "device=cpu"],
        ["sampler=margin"],
        ["sampler=badge", "device=cuda"],
    ]
    assert joblib_gpus.plan_devices(jobs, 0, 2, "auto") == [0, 1, None, 1, 0]
    assert joblib_gpus.plan_devices(jobs, 3, 3, "auto") == [0, 1, None, 0, 1]  # a later batch continues the count
    assert joblib_gpus.plan_devices(jobs, 0, 0, "auto") == [None] * 5  # no GPU: nothing assigned
    assert joblib_gpus.plan_devices(jobs[:2], 0, 2, "cpu") == [None, None]  # device=cpu for the whole sweep
    with pytest.raises(ConfigError, match="hydra.launcher.gpus=-1 is not valid"):
        joblib_gpus.resolve_gpus(-1)


def test_a_job_gets_device_cuda_k_when_that_gpu_exists(monkeypatch, tmp_path):
    from hydra_plugins.hydra_joblib_launcher import _core

    seen = {}

    def fake_execute_job(idx, overrides, *rest):
        seen.update(idx=idx, overrides=list(overrides), logged=os.environ.get(joblib_gpus.ASSIGNMENT_ENV))
        return "ran"

    monkeypatch.setattr(_core, "execute_job", fake_execute_job)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    # gpu_shared with 8 jobs at once on 4 GPUs: job 6 on GPU 2, 2 jobs per GPU
    assert joblib_gpus.execute_job_on_gpu(2, 4, 8, tmp_path, 6, ["sampler=random", "device=auto"], None) == "ran"
    assert seen["overrides"] == ["sampler=random", "device=cuda:2"]
    assert seen["logged"] == (
        "job #6 assigned GPU 2 of 4 (its round-robin GPU; at most 2 job(s) per GPU at once): device=cuda:2"
    )
    assert joblib_gpus.ASSIGNMENT_ENV not in os.environ  # not left behind for the worker's next job
    # GPU 2 full (its 2 places held by running jobs): the next GPU with room
    held = [joblib_gpus.acquire_gpu_slot(tmp_path, 4, 2, 2)[1] for _ in range(2)]
    joblib_gpus.execute_job_on_gpu(2, 4, 8, tmp_path, 10, ["sampler=random"], None)
    assert seen["overrides"] == ["sampler=random", "device=cuda:3"]
    assert "GPU 3 of 4 (its round-robin GPU 2 was full;" in seen["logged"]
    for fd in held:
        os.close(fd)


def test_gpu_places_are_held_while_a_job_runs_and_freed_when_it_ends(tmp_path):
    first, first_fd = joblib_gpus.acquire_gpu_slot(tmp_path, 2, 1, 0)
    second, second_fd = joblib_gpus.acquire_gpu_slot(tmp_path, 2, 1, 0)  # GPU 0 holds its one job: GPU 1
    assert (first, second) == (0, 1)
    os.close(first_fd)
    assert joblib_gpus.acquire_gpu_slot(tmp_path, 2, 1, 1)[0] == 0  # GPU 1 busy, GPU 0 free again
    os.close(second_fd)


def test_both_launchers_name_the_same_run_directories_with_or_without_gpus(monkeypatch):
    base = ["task=synthetic", "model=small_cnn", "schedule=smoke"]

    def run_dir(*overrides):
        return str(OmegaConf.select(compose_config([*base, *overrides], return_hydra_config=True), "hydra.run.dir"))

    for launcher in ("parallel", "gpu_shared"):
        plain = run_dir(f"hydra/launcher={launcher}")
        assert run_dir(f"hydra/launcher={launcher}", "hydra.launcher.gpus=4") == plain
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a faked 4-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for launcher in ("parallel", "gpu_shared"):
        assert run_dir(f"hydra/launcher={launcher}", "device=cuda:3", "runtime.threads=1") == run_dir(
            f"hydra/launcher={launcher}", "device=cuda:0", "runtime.threads=1"
        )  # the index never counts


@pytest.mark.slow
def test_a_parallel_sweep_on_a_faked_two_gpu_machine_logs_each_jobs_gpu_and_keeps_its_run_directory(tmp_path):
    args = [
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.gpus=2",
        *TINY,
        "sampler=random,entropy",
        f"paths.output={tmp_path}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "al_runner", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logs = {p.parent.name: p.read_text() for p in (tmp_path / "gpus").glob("*/al-run.log")}
    assert len(logs) == 2
    for job, sampler in enumerate(("random", "entropy")):
        (name,) = [n for n in logs if f"-{sampler}-" in n]
        assert f"job #{job} assigned GPU {job % 2} of 2" in logs[name]
        assert "this machine has no CUDA device" in logs[name]  # faked: the job stays on the CPU
        # the directory of the same run without any GPU assignment (2 jobs at once on this machine's cores)
        expected = compose_config(
            [*TINY, f"sampler={sampler}", f"paths.output={tmp_path}", "hydra/launcher=parallel"],
            return_hydra_config=True,
        )
        assert Path(str(OmegaConf.select(expected, "hydra.run.dir"))).name == name

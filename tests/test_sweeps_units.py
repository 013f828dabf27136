"""Run lock, crash-safe writes, job records and the typed schema, without the runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from al_runner import runlock
from al_runner.atomic import STALL_ENV, atomic_write_text, remove_stale_temp_files
from al_runner.config_schema import check_overrides
from al_runner.errors import ConfigError
from al_runner.runlock import LOCK_FILE, RunInUseError, RunLock
from al_runner.sweep import (
    LAUNCH_ENV,
    JobRecord,
    read_job_records,
    start_launch,
    summary_lines,
    write_job_record,
    write_sweep_csv,
)

REPO = Path(__file__).resolve().parent.parent
HOLD_LOCK = (
    "import sys, time; from al_runner.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


def test_second_holder_is_refused_and_the_lock_file_is_untouched(tmp_path):
    with RunLock(tmp_path):
        before = (tmp_path / LOCK_FILE).read_bytes(), (tmp_path / LOCK_FILE).stat().st_mtime_ns
        with pytest.raises(RunInUseError, match=f"in use by pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
        assert ((tmp_path / LOCK_FILE).read_bytes(), (tmp_path / LOCK_FILE).stat().st_mtime_ns) == before
    with RunLock(tmp_path):  # released: free again
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunInUseError, match=f"pid {holder.pid}"):
        RunLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path):  # dead pid on this host: the kernel released its flock
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def _foreign_lock(run_dir: Path, age_s: float, slurm_job: str | None = None) -> None:
    path = run_dir / LOCK_FILE
    path.write_text(json.dumps({"host": "other-node", "pid": 4242, "slurm_job": slurm_job, "started": "earlier"}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def test_fresh_lock_of_another_host_refuses_a_stale_one_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    _foreign_lock(tmp_path, age_s=5)
    with pytest.raises(RunInUseError, match="other-node"):
        RunLock(tmp_path).acquire()
    _foreign_lock(tmp_path, age_s=runlock.STALE_AFTER_S + 60)
    with RunLock(tmp_path):
        pass


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    _foreign_lock(tmp_path, age_s=5, slurm_job="777")
    with RunLock(tmp_path):
        pass


def test_a_write_killed_half_way_leaves_the_old_file(tmp_path):
    target = tmp_path / "cycles.csv"
    atomic_write_text(target, "old\n")
    code = f"from al_runner.atomic import atomic_write_text; atomic_write_text({str(target)!r}, 'new' * 100000)"
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, STALL_ENV: "cycles.csv"})
    stalled = tmp_path / "cycles.csv.stalled"
    for _ in range(200):
        if stalled.exists():
            break
        time.sleep(0.05)
    assert stalled.exists()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert target.read_text() == "old\n"
    leftovers = remove_stale_temp_files(tmp_path)
    assert len(leftovers) == 1 and not leftovers[0].exists()


def test_job_records_summary_and_sweep_csv(tmp_path):
    write_job_record(tmp_path, JobRecord(0, "finished", "/r/a", "seed=0"))
    write_job_record(tmp_path, JobRecord(1, "failed", "/r/b", "seed=1", error="boom", log="/r/b/al-run.log"))
    write_job_record(tmp_path, JobRecord(2, "running", "/r/c", "seed=2"))  # died without reporting
    write_job_record(tmp_path, JobRecord(3, "busy", "/r/d", "seed=3", error="run directory /r/d is in use by pid 7"))
    records = read_job_records(tmp_path)
    assert [r.status for r in records] == ["finished", "failed", "failed", "busy"]
    assert "without reporting" in records[2].error
    lines = "\n".join(summary_lines(records))
    assert "4 job(s): 1 finished, 1 busy, 2 failed" in lines and "boom" in lines and "/r/b/al-run.log" in lines
    assert "in use by pid 7" in lines
    csv_text = write_sweep_csv(tmp_path, records).read_text().splitlines()
    assert csv_text[0] == "job,status,run_dir,overrides,error,log" and len(csv_text) == 5


def test_a_launch_keeps_its_records_apart_and_clears_only_those_of_ended_launches(tmp_path, monkeypatch):
    import socket

    host, jobs = socket.gethostname(), tmp_path / ".jobs"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    try:
        kept = [jobs / f"{host}-{sleeper.pid}", jobs / "node-elsewhere-4242"]  # alive here; another host, recent
        gone = [jobs / f"{host}-{ended.pid}", jobs / "node-elsewhere-99"]  # ended here; another host, 2 days old
        for folder in kept + gone:
            folder.mkdir(parents=True)
            (folder / "0.json").write_text("{}")
        os.utime(gone[1], (time.time() - 2 * 86400,) * 2)
        (jobs / "5.json").write_text("{}")  # a record of a version without launch folders
        monkeypatch.delenv(LAUNCH_ENV, raising=False)
        mine = start_launch(tmp_path)
        assert mine.name == f"{host}-{os.getpid()}" and os.environ[LAUNCH_ENV] == mine.name
        assert all(folder.is_dir() for folder in kept) and not any(folder.exists() for folder in gone)
        assert not (jobs / "5.json").exists()
        write_job_record(tmp_path, JobRecord(0, "finished", "/r/a", "seed=0"))
        assert [r.run_dir for r in read_job_records(tmp_path)] == ["/r/a"]  # only this launch's
        assert (mine / "0.json").is_file() and (kept[0] / "0.json").read_text() == "{}"
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    "arg, message",
    [
        ("seed=abc", "seed=abc is not valid: seed must be an integer"),
        ("seed=1.5", "seed=1.5 is not valid: seed must be an integer"),
        ("seed=0,1,x", "seed=x is not valid"),
        ("device=gpu", "device=gpu is not valid: device must be one of auto, cpu, cuda, cuda:N"),
        ("progress=maybe", "progress=maybe is not valid: progress must be one of true, false, null"),
        ("runtime.threads=0", "runtime.threads must be an integer >= 1, or null"),
    ],
)
def test_bad_values_are_one_line_errors_naming_key_and_choices(arg, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_overrides([arg])


def test_good_values_pass():
    check_overrides(
        [
            "seed=3",
            "seed=0,1,2",
            "device=cuda:1",
            "progress=null",
            "progress=true",
            "runtime.threads=2",
            "sampler=random,entropy",
            "seed=range(3)",
            "seed=${oc.env:SEED}",
            "-m",
        ]
    )


def test_parallel_jobs_share_the_cores_and_slurm_jobs_use_their_cpus(monkeypatch):
    from omegaconf import OmegaConf

    from al_runner.cli import threads_for_launcher

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert threads_for_launcher(OmegaConf.create({"_target_": joblib, "n_jobs": 4})) == 4
    assert threads_for_launcher(OmegaConf.create({"_target_": joblib, "n_jobs": -1})) == 1
    assert threads_for_launcher(OmegaConf.create({"_target_": joblib, "n_jobs": 32})) == 1
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert threads_for_launcher(OmegaConf.create({"_target_": slurm, "cpus_per_task": 8})) == 8
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert threads_for_launcher(OmegaConf.create({"_target_": basic})) is None

"""Sweeps through a real one-node SLURM cluster: `al-run -m ... hydra/launcher=slurm` (submitit's SLURM executor,
sbatch, job arrays), requeue, time limit, a failed job, scancel.

The cluster (Debian's slurm-wlm + munge) is started for this module in a temporary folder by scripts/slurm_cluster.py
and stopped at the end. Without those packages every test here skips with one line saying how to install them.
"""

from __future__ import annotations

import csv
import getpass
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import csv_contents, load_script

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent

TINY = [
    "task=synthetic",
    "model=small_cnn",
    "schedule=smoke",
    "model.net.width=8",
    "progress=false",
    "name=sweep",
    "hydra.callbacks.sweep_summary.statistics=false",
]
# one CPU per job (also its torch threads), no GPU, 1 GB: the local reference runs use runtime.threads=1
SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
cluster_script = load_script("slurm_cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = cluster_script.missing_programs()
    if missing:
        pytest.skip(cluster_script.INSTALL_HINT)
    state = tmp_path_factory.mktemp("slurm")
    env = cluster_script.start(state)
    yield env
    cluster_script.stop(state)


@pytest.fixture(autouse=True)
def no_leftover_jobs(cluster):
    """A test that fails half-way must not leave jobs holding the node's CPUs for the next one."""
    yield
    subprocess.run(["scancel", f"--user={getpass.getuser()}"], env=cluster, capture_output=True)


def al_run_env(cluster_env: dict, **extra) -> dict:
    return {**cluster_env, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **extra}


def al_run(cluster_env: dict, *args: str, timeout: float = 300, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "al_runner", *args],
        cwd=REPO,
        env=al_run_env(cluster_env, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_al_run(cluster_env: dict, *args: str, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "al_runner", *args],
        cwd=REPO,
        env=al_run_env(cluster_env, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sweep_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv") as f:
        return list(csv.DictReader(f))


def array_states(cluster_env: dict, *settled: str) -> dict[str, str]:
    """SLURM's own record of every array task: {"<array>_<task>": state}, e.g. COMPLETED, FAILED, CANCELLED; first
    waits until the `settled` tasks have ended (a job's result is on disk a moment before its process exits)."""

    def read() -> dict[str, str]:
        out = subprocess.run(
            ["squeue", "--states=all", "--array", "--noheader", "--format=%i|%T"],
            env=cluster_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return dict(line.split("|") for line in out.split())

    return wait_until(
        lambda: (
            lambda states: (
                states if all(states.get(t) not in (None, "RUNNING", "COMPLETING") for t in settled) else None
            )
        )(read()),
        f"{settled} to end",
        timeout=60,
    )


def job_field(cluster_env: dict, job: str, name: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job], env=cluster_env, capture_output=True, text=True, check=True
    ).stdout
    return next(part.split("=", 1)[1] for part in out.split() if part.startswith(name + "="))


def wait_until(condition, what: str, process: subprocess.Popen | None = None, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"al-run ended while waiting for {what}: {process.communicate()[1][-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def array_task_of(run_dir: Path) -> str:
    """The SLURM array task (<array>_<task>) that ran a run: submitit gives job number k array index k."""
    sweep_dir = run_dir.parent
    (array,) = {p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}
    (job,) = [
        record["job"]
        for record in map(json.loads, map(Path.read_text, (sweep_dir / ".jobs").rglob("*.json")))
        if record["run_dir"] == str(run_dir)
    ]
    return f"{array}_{job}"


@pytest.fixture(scope="module")
def slurm_sweep(cluster, tmp_path_factory):
    """2 samplers x 2 seeds through sbatch, and the same four runs made locally, one thread each."""
    out = tmp_path_factory.mktemp("slurm_sweep")
    result = al_run(cluster, "-m", *SLURM, *TINY, "sampler=random,learning_loss", "seed=0,1", f"paths.output={out}")
    local = tmp_path_factory.mktemp("local")
    reference = al_run(
        cluster, "-m", *TINY, "runtime.threads=1", "sampler=random,learning_loss", "seed=0,1", f"paths.output={local}"
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    return result, out / "sweep", local / "sweep"


def test_a_sweep_of_2_samplers_x_2_seeds_on_slurm_equals_the_same_runs_made_locally(cluster, slurm_sweep):
    result, sweep_dir, local_dir = slurm_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    assert "submitted SLURM array" in result.stderr + result.stdout
    assert "sweep: 4 job(s): 4 finished" in result.stdout
    runs = sorted(p.name for p in sweep_dir.glob("*/cycles.csv") for p in [p.parent])
    assert runs == sorted(p.parent.name for p in local_dir.glob("*/cycles.csv")) and len(runs) == 4
    for name in runs:  # same run directories (identity), same CSVs apart from wall-clock columns
        assert csv_contents(sweep_dir / name) == csv_contents(local_dir / name), name
    tasks = [array_task_of(sweep_dir / name) for name in runs]
    assert len({t.split("_")[0] for t in tasks}) == 1 and len(set(tasks)) == 4  # one array, one task per run
    states = array_states(cluster, *tasks)
    assert [states[t] for t in tasks] == ["COMPLETED"] * 4


def test_a_job_requeued_mid_cycle_and_a_job_at_its_time_limit_both_resume_and_equal_uninterrupted_runs(
    cluster, slurm_sweep, tmp_path
):
    _, reference_dir, _ = slurm_sweep
    # both jobs stall in their second cycle (evaluated, not yet checkpointed) until released, at most 100 s
    process = start_al_run(
        cluster,
        "-m",
        *SLURM,
        "hydra.launcher.signal_delay_s=55",
        *TINY,
        "sampler=random",
        "seed=0,1",
        f"paths.output={tmp_path}",
        AL_RUNNER_STALL_WRITE="test_scores.csv:2",
        AL_RUNNER_STALL_SECONDS="100",
    )
    sweep_dir = tmp_path / "sweep"
    markers = wait_until(
        lambda: (
            len(list(sweep_dir.glob("*/test_scores.csv.stalled"))) == 2
            and sorted(sweep_dir.glob("*/test_scores.csv.stalled"))
        ),
        "both jobs to stall",
        process,
    )
    requeued_dir, timed_dir = (next(m.parent for m in markers if f"-seed{seed}-" in m.parent.name) for seed in (0, 1))
    requeued, timed = array_task_of(requeued_dir), array_task_of(timed_dir)
    # seed 1: its time limit cut to 1 min, so that SLURM sends submitit's signal (55 s before the limit) at its next
    # time-limit check (slurmctld checks every 30 s); the stalled run would release itself only after 100 s
    subprocess.run(["scontrol", "update", f"JobId={timed}", "TimeLimit=1"], env=cluster, check=True)
    # seed 0: requeued as an admin or a preemption would; SLURM kills the old process (SIGTERM, which submitit
    # ignores, then SIGKILL after KillWait) and queues the job again
    subprocess.run(["scontrol", "requeue", requeued], env=cluster, check=True)
    wait_until(lambda: array_states(cluster)[requeued] == "PENDING", "the requeued job to be pending", process)
    (requeued_dir / "test_scores.csv.release").touch()  # its next start runs through
    # once submitit has requeued the timed-out job, its next start gets its 10 minutes back
    wait_until(lambda: int(job_field(cluster, timed, "Restarts")) >= 1, "the time-limit requeue", process, timeout=120)
    subprocess.run(["scontrol", "update", f"JobId={timed}", "TimeLimit=10"], env=cluster, check=True)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert int(job_field(cluster, requeued, "Restarts")) >= 1 and int(job_field(cluster, timed, "Restarts")) >= 1
    timed_log = "".join(p.read_text() for p in (sweep_dir / ".submitit" / timed).glob("*_log.err"))
    assert "Caught signal SIGUSR" in timed_log and "this job is timed-out" in timed_log  # submitit's own words
    requeued_log = "".join(p.read_text() for p in (sweep_dir / ".submitit" / requeued).glob("*_log.err"))
    assert "DUE TO JOB REQUEUE" in requeued_log and "Caught signal" not in requeued_log  # the admin's requeue only
    for run_dir in (requeued_dir, timed_dir):
        log = (run_dir / "al-run.log").read_text()
        assert "after cycle 0" in log, log[-2000:]  # resumed after its last finished cycle
        assert csv_contents(run_dir) == csv_contents(reference_dir / run_dir.name)
    states = array_states(cluster, requeued, timed)
    assert states[requeued] == states[timed] == "COMPLETED"
    assert [r["status"] for r in sweep_rows(sweep_dir)] == ["resumed", "resumed"]


def test_a_failed_job_fails_the_sweep_names_its_log_and_slurm_records_failed(cluster, tmp_path):
    # batch 7 is refused for the ranking loss (odd batch) but fine for random: one job fails, one finishes
    result = al_run(
        cluster,
        "-m",
        *SLURM,
        *TINY,
        "schedule.batch_size=7",
        "sampler=learning_loss,random",
        f"paths.output={tmp_path}",
    )
    assert result.returncode != 0
    assert "1 job(s) failed" in result.stderr and "odd" in result.stderr and "Traceback" not in result.stderr
    assert "sweep: 2 job(s): 1 finished, 1 failed" in result.stdout
    rows = {r["status"]: r for r in sweep_rows(tmp_path / "sweep")}
    failed, finished = rows["failed"], rows["finished"]
    assert failed["log"].endswith("al-run.log") and Path(failed["log"]).is_file() and failed["log"] in result.stdout
    assert "ended FAILED" in failed["error"]
    assert (Path(finished["run_dir"]) / "cycles.csv").is_file()
    failed_task, finished_task = array_task_of(Path(failed["run_dir"])), array_task_of(Path(finished["run_dir"]))
    states = array_states(cluster, failed_task, finished_task)
    assert states[failed_task] == "FAILED" and states[finished_task] == "COMPLETED"


def test_scancel_of_the_array_keeps_finished_cycles_and_a_rerun_completes_only_what_is_missing(
    cluster, slurm_sweep, tmp_path
):
    _, reference_dir, _ = slurm_sweep
    args = ["-m", *SLURM, *TINY, "sampler=random", "seed=0,1", f"paths.output={tmp_path}"]
    process = start_al_run(cluster, *args, AL_RUNNER_STALL_WRITE="test_scores.csv:2", AL_RUNNER_STALL_SECONDS="100")
    sweep_dir = tmp_path / "sweep"
    stalled = wait_until(
        lambda: (
            len(list(sweep_dir.glob("*/test_scores.csv.stalled"))) == 2
            and sorted(sweep_dir.glob("*/test_scores.csv.stalled"))
        ),
        "both jobs to stall",
        process,
    )
    array = array_task_of(stalled[0].parent).split("_")[0]
    subprocess.run(["scancel", array], env=cluster, check=True)
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "2 job(s) failed" in err
    assert err.count("ended CANCELLED") == 2
    for marker in stalled:
        with open(marker.parent / "cycles.csv") as f:
            assert [r["cycle"] for r in csv.DictReader(f)] == ["0"]  # the finished cycle is on disk
    rerun = al_run(cluster, *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [r["status"] for r in sweep_rows(sweep_dir)] == ["resumed", "resumed"]
    for marker in stalled:
        assert "resuming" in (marker.parent / "al-run.log").read_text()
        assert csv_contents(marker.parent) == csv_contents(reference_dir / marker.parent.name)

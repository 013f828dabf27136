"""hydra/launcher=slurm and slurm_local: hydra-submitit-launcher's launchers with what a sweep of runs needs on top.

- A job whose run failed exits non-zero, so SLURM records it FAILED, not COMPLETED (Hydra issue 1928: the plain
  launcher's job returns normally after the run's error was caught and recorded).
- The launching process waits for every job of the array, whatever happens to one of them, before it reports: a
  failed, cancelled or killed job is named in the sweep summary with its SLURM job id, state and submitit log.
- On a cluster without an accounting database (`sacct` refuses: "accounting storage is disabled"), job states are
  read with `squeue --states=all`, which shows finished jobs for the cluster's MinJobAge.
Preemption and time-outs stay submitit's: its signal (SIGUSR2) -> `checkpoint()` (a resubmission of the same job)
-> requeue; the requeued job resumes its run from checkpoint.pt (al_runner.runner), losing at most the cycle in
progress.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

from al_runner import sweep

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """Raised at the end of a submitit job whose run failed, so that the job's exit status says so."""


def _sacct_works() -> bool:
    try:
        return subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _squeue_watcher_class():
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueInfoWatcher(SlurmInfoWatcher):
        """submitit's watcher reading `squeue --states=all` (finished jobs included, for MinJobAge) instead of
        `sacct`, for clusters without an accounting database."""

        def _make_command(self):
            to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
            if not to_check:
                return None
            return [
                "squeue",
                "--states=all",
                "--array",
                "--noheader",
                "--format=%i|%T|%N",
                "--jobs",
                ",".join(to_check),
            ]

        def read_info(self, string):
            text = string.decode() if isinstance(string, bytes) else string
            return super().read_info("JobID|State|NodeList\n" + text)

    return SqueueInfoWatcher


def slurm_state(job_id: str) -> str:
    """A job's state as SLURM records it (sacct, else squeue), e.g. COMPLETED, FAILED, CANCELLED."""
    for command in (
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id],
        ["squeue", "--states=all", "--array", "--noheader", "--format=%T", "--jobs", job_id],
    ):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.split()[0]
    return "UNKNOWN"


def final_slurm_state(job_id: str, wait_s: float = 60) -> str:
    """The state once SLURM has recorded the job's end (its result file is written before its process exits)."""
    deadline = time.time() + wait_s
    state = slurm_state(job_id)
    while state in ("RUNNING", "COMPLETING", "UNKNOWN") and time.time() < deadline:
        time.sleep(1)
        state = slurm_state(job_id)
    return state


class _SubmititMixin:
    """What al_runner adds to hydra-submitit-launcher's launchers (module docstring)."""

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        result = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        record = sweep.read_job_record(sweep_dir, job_num)
        if record is not None and record.status == "failed":
            raise JobFailed(f"job #{job_num} failed: {record.error} (log: {record.log})")
        return result

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        if self._EXECUTOR == "slurm" and not _sacct_works():
            from submitit.slurm.slurm import SlurmJob

            SlurmJob.watcher = _squeue_watcher_class()(delay_s=10)  # a cancelled job is seen within 10 s
        jobs = self._submit(job_overrides, initial_job_idx, submitit)
        while not all(job.done() for job in jobs):  # every job, even when one failed early
            time.sleep(1)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        returns = []
        for offset, (job, overrides) in enumerate(zip(jobs, job_overrides)):
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            try:
                ret.return_value = job.results()[0].return_value
            except Exception as error:  # noqa: BLE001 - failed, cancelled or killed: the sweep summary says which
                self._note_failure(sweep_dir, initial_job_idx + offset, job, error)
            returns.append(ret)
        return returns

    def _note_failure(self, sweep_dir: Path, job_num: int, job, error: Exception) -> None:
        state = final_slurm_state(job.job_id) if self._EXECUTOR == "slurm" else job.state
        where = f"{self._EXECUTOR} job {job.job_id} ended {state}; submitit log {job.paths.stderr}"
        record = sweep.read_job_record(sweep_dir, job_num)
        if record is None:  # never started its run (e.g. cancelled while pending)
            record = sweep.JobRecord(
                job=job_num,
                status="failed",
                run_dir="",
                overrides="",
                error=f"{where} before its run started",
                log=str(job.paths.stderr),
            )
        elif record.status == "failed":
            record.error = f"{record.error} ({where})"
        else:  # "running": killed, cancelled or out of memory without reporting
            record.status, record.error = "failed", f"{where}, without reporting"
            record.log = record.log or str(job.paths.stderr)
        sweep.write_job_record(sweep_dir, record)

    def _submit(self, job_overrides, initial_job_idx, submitit):
        """hydra-submitit-launcher's `launch` up to the submission (the same executor and parameters)."""
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        params = self.params
        init_params = {"folder": params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update({f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in specific_init_keys})
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{x if x in baseparams else f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x not in init_keys}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        job_params = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        if self._EXECUTOR == "slurm":
            log.info("submitted SLURM array %s (%d job(s))", jobs[0].job_id.split("_")[0], len(jobs))
        return jobs


class SlurmLauncher(_SubmititMixin, BaseSubmititLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(_SubmititMixin, BaseSubmititLauncher):
    _EXECUTOR = "local"

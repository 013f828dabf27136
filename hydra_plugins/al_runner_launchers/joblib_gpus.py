"""hydra/launcher=parallel and gpu_shared: Hydra's joblib launcher, spreading jobs over the machine's GPUs.

On a machine with several GPUs, each job gets one GPU, round-robin over the job numbers (job k on GPU k mod N), by a
`device=cuda:<g>` override; if that GPU already holds its share of the jobs running at once (jobs finish at different
times), the job takes the next GPU with room (`acquire_gpu_slot`), so no GPU holds more than ceil(n_jobs / N): with
n_jobs = N x m, m per GPU (gpu_shared packs several per GPU this way). `gpus` (launcher key) says how many GPUs to
spread over: `auto` = all that torch sees, an integer = that many (fewer than there are leaves the rest free; more
than there are is how the tests fake a multi-GPU machine on CPU: a job whose GPU does not exist there stays on its
configured device and its log says so). A job that names its device itself (device=cpu, cuda:<k>) keeps it. The
assignment is logged in each run's log (sweep.SweepSummary's on_job_start); it never changes a run's identity (the run
directory names the device *type* only: al_runner/rundir.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _HydraJoblibLauncher

from al_runner import sweep
from al_runner.errors import ConfigError

log = logging.getLogger(__name__)

ASSIGNMENT_ENV = sweep.ASSIGNMENT_ENV  # set in the worker for the job it runs; logged by sweep.SweepSummary


def visible_gpu_count() -> int:
    """GPUs torch would see, without touching CUDA on a machine that has no NVIDIA driver (CPU machines)."""
    if not Path("/proc/driver/nvidia/gpus").is_dir() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return 0
    import torch  # only where a driver exists: device_count asks NVML and does not initialise CUDA

    return torch.cuda.device_count()


def resolve_gpus(gpus: Any) -> int:
    if gpus in (None, "auto"):
        return visible_gpu_count()
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ConfigError(f"hydra.launcher.gpus={gpus} is not valid: it must be auto or an integer >= 0")
    return gpus


def _device_of(overrides: Sequence[str], default: str) -> str:
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") == "device":
            return value
    return default


def plan_devices(
    job_overrides: Sequence[Sequence[str]], initial_job_idx: int, gpus: int, default_device: str
) -> list[int | None]:
    """The GPU of each job, round-robin over the job numbers; None for a job that names its device itself
    (cpu, cuda:<k>, mps) or when there are no GPUs."""
    plan: list[int | None] = []
    for offset, overrides in enumerate(job_overrides):
        device = _device_of(overrides, default_device)
        plan.append((initial_job_idx + offset) % gpus if gpus > 0 and device in ("auto", "cuda") else None)
    return plan


def acquire_gpu_slot(slot_dir: Path, gpus: int, per_gpu: int, preferred: int) -> tuple[int, int | None]:
    """A free place on a GPU for the job starting now: its round-robin GPU if that holds fewer than `per_gpu` jobs,
    else the next GPU that does. Places are `flock`ed files under slot_dir, held by the job's worker for the job's
    whole run (a dead worker's lock is released by the kernel). Returns (gpu, open file to close when done)."""
    slot_dir.mkdir(parents=True, exist_ok=True)
    for gpu in [(preferred + k) % gpus for k in range(gpus)]:
        for place in range(per_gpu):
            fd = os.open(slot_dir / f"gpu{gpu}-{place}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return gpu, fd
            except BlockingIOError:
                os.close(fd)
    return preferred, None  # every place taken (cannot happen with per_gpu x gpus >= jobs at once)


def execute_job_on_gpu(
    gpu: int | None, gpus: int, jobs_at_once: int, slot_dir: Path, idx: int, overrides: Sequence[str], *args: Any
) -> JobReturn:
    """Hydra's joblib `execute_job` in a worker, with the job's GPU given as `device=cuda:<gpu>` when it exists."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    overrides, held = list(overrides), None
    if gpu is None:
        os.environ.pop(ASSIGNMENT_ENV, None)
    else:
        import torch

        per_gpu = -(-jobs_at_once // gpus)
        preferred = gpu
        gpu, held = acquire_gpu_slot(slot_dir, gpus, per_gpu, preferred)
        why = "its round-robin GPU" if gpu == preferred else f"its round-robin GPU {preferred} was full"
        where = f"GPU {gpu} of {gpus} ({why}; at most {per_gpu} job(s) per GPU at once)"
        if torch.cuda.is_available() and gpu < torch.cuda.device_count():
            overrides = [o for o in overrides if o.partition("=")[0].lstrip("+") != "device"] + [f"device=cuda:{gpu}"]
            os.environ[ASSIGNMENT_ENV] = f"job #{idx} assigned {where}: device=cuda:{gpu}"
        else:
            os.environ[ASSIGNMENT_ENV] = (
                f"job #{idx} assigned {where}, but this machine has no CUDA device {gpu}: "
                f"it runs on its configured device"
            )
    try:
        return execute_job(idx, overrides, *args)
    finally:
        os.environ.pop(ASSIGNMENT_ENV, None)
        if held is not None:
            os.close(held)  # releases the flock: the next job may take this place


class JoblibLauncher(_HydraJoblibLauncher):
    """hydra-joblib-launcher's launcher, spreading jobs over the machine's GPUs (module docstring)."""

    def __init__(self, gpus: Any = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpus = gpus

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.hydra_joblib_launcher import _core
        from joblib import Parallel, delayed

        gpus = resolve_gpus(self.gpus)
        if gpus == 0:
            return _core.launch(launcher=self, job_overrides=job_overrides, initial_job_idx=initial_job_idx)
        # Hydra's _core.launch, with execute_job_on_gpu in place of execute_job
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals

        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        joblib_cfg = dict(self.joblib)
        joblib_cfg["backend"] = "loky"
        _core.process_joblib_cfg(joblib_cfg)
        n_jobs = int(joblib_cfg.get("n_jobs") or 1)
        jobs_at_once = min(len(job_overrides), (os.cpu_count() or 1) if n_jobs < 0 else n_jobs)
        plan = plan_devices(job_overrides, initial_job_idx, gpus, str(self.config.get("device", "auto")))
        log.info("%d job(s), %d at once, over %d GPU(s) round-robin", len(job_overrides), jobs_at_once, gpus)
        singleton_state = Singleton.get_state()
        runs = Parallel(**joblib_cfg)(
            delayed(execute_job_on_gpu)(
                gpu,
                gpus,
                jobs_at_once,
                sweep_dir / ".gpu_slots",
                initial_job_idx + offset,
                overrides,
                self.hydra_context,
                self.config,
                self.task_function,
                singleton_state,
            )
            for offset, (overrides, gpu) in enumerate(zip(job_overrides, plan))
        )
        return list(runs)

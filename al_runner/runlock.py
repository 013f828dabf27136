"""One process per run directory.

The lock is `<run dir>/run.lock`, held with `fcntl.flock` for the whole run and describing its
owner (host, pid, SLURM job, start time, heartbeat) in JSON:

- On one host the kernel owns the lock: a process that dies in any way (SIGKILL, OOM, power cut
  of the process) releases it, so a leftover `run.lock` of a dead pid is simply taken over.
- Across hosts `flock` is only as good as the shared filesystem (NFSv4 and Lustre with `flock`
  honour it; some mounts do not). So the owner record is checked too: a lock written by another
  host whose heartbeat (the file's mtime, refreshed every `HEARTBEAT_S`) is younger than
  `STALE_AFTER_S` refuses the run; an older one is stale (its host died or lost the
  filesystem) and is taken over with a warning.
- A SLURM job that is requeued (preemption, timeout) keeps its job id: a lock left by the same
  SLURM job is its own earlier life and is taken over at once, whichever host it ran on.

Refusing touches nothing: the lock file is opened without truncation and never written unless
acquired.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from al_runner.errors import ALRunnerError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = float(os.environ.get("AL_RUNNER_LOCK_STALE_S", 600))


class RunInUseError(ALRunnerError):
    pass


def slurm_job_id() -> str | None:
    """The id a requeued SLURM job keeps (array jobs: <array job>_<task>)."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _owner_record() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": slurm_job_id(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _describe(owner: dict) -> str:
    slurm = f", SLURM job {owner['slurm_job']}" if owner.get("slurm_job") else ""
    return f"pid {owner.get('pid')} on host {owner.get('host')}{slurm}, started {owner.get('started')}"


def _read_owner(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def lock_holder(run_dir: Path, now: float | None = None) -> dict | None:
    """The owner record of the process that holds the run directory now, else None; reads only (`al-run --status`).

    Never probes the flock itself (a probe, however brief, could make a starting run refuse): a lock is live while
    it is not released and its heartbeat (the file's mtime) is younger than `STALE_AFTER_S`, and, on this host,
    its pid is alive."""
    path = Path(run_dir) / LOCK_FILE
    try:
        owner = json.loads(path.read_text(encoding="utf-8") or "{}")
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or not owner or owner.get("released") or age >= STALE_AFTER_S:
        return None
    if owner.get("host") == socket.gethostname() and not pid_alive(owner.get("pid")):
        return None
    return owner


def pid_alive(pid) -> bool:
    """Whether a process of this host has that pid (EPERM: alive, another user's)."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


class RunLock:
    """Context manager: `with RunLock(run_dir): ...` (raises RunInUseError if another process holds it)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = _read_owner(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise RunInUseError(self._in_use_message(owner)) from None
        try:
            self._check_other_host(fd)
        except RunInUseError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner_record()).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        self._heartbeat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()
        return self

    def _check_other_host(self, fd: int) -> None:
        """flock may not reach across hosts: a fresh lock of a live job elsewhere still refuses."""
        owner = _read_owner(fd)
        if not owner or owner.get("released"):
            return
        if owner.get("host") == socket.gethostname():
            return  # same host: the kernel's flock is authoritative, the old owner is dead
        if owner.get("slurm_job") and owner.get("slurm_job") == slurm_job_id():
            log.info("taking over the lock of this SLURM job's earlier run (requeued): %s", _describe(owner))
            return
        age = time.time() - os.fstat(fd).st_mtime
        if age < STALE_AFTER_S:
            raise RunInUseError(self._in_use_message(owner, heartbeat_age=age))
        log.warning("taking over a stale lock (no heartbeat for %.0f s): %s", age, _describe(owner))

    def _in_use_message(self, owner: dict, heartbeat_age: float | None = None) -> str:
        seen = "" if heartbeat_age is None else f" (last heartbeat {heartbeat_age:.0f} s ago)"
        return (
            f"run directory {self.path.parent} is in use by {_describe(owner) if owner else 'another process'}"
            f"{seen}; refusing to touch it. Wait for that run to end, or if it is dead on another host, "
            f"delete {self.path}"
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps({**_owner_record(), "released": True}).encode(), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

"""Crash-safe file writes for the run directory.

A file is written to a temporary name beside the target, flushed to disk, then renamed over the
target (`os.replace` is atomic on POSIX): a process killed at any moment, SIGKILL included, leaves
either the old file or the new one, never a torn one. The temporary name carries the writer's pid,
so two writers never share a temporary file.

`AL_RUNNER_STALL_WRITE=<file name>[:<n>]` is a test hook: the n-th write (default: the first) of that
file in this process stops half-way, creates `<file>.stalled` as a signal, and waits until
`<file>.release` exists (or `AL_RUNNER_STALL_SECONDS` pass; default: until killed), so a test can
SIGKILL the process in the middle of a checkpoint or CSV write, or start a second process while the
first is busy.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

STALL_ENV, STALL_SECONDS_ENV = "AL_RUNNER_STALL_WRITE", "AL_RUNNER_STALL_SECONDS"
TMP_MARK = ".tmp."
_writes_seen: dict[str, int] = {}


def temp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def _stall_if_requested(path: Path) -> None:
    request = os.environ.get(STALL_ENV)
    if not request:
        return
    name, _, nth = request.partition(":")
    if name != path.name:
        return
    _writes_seen[name] = _writes_seen.get(name, 0) + 1
    if _writes_seen[name] != int(nth or 1):
        return
    path.with_name(path.name + ".stalled").touch()
    release, deadline = (
        path.with_name(path.name + ".release"),
        time.time() + float(os.environ.get(STALL_SECONDS_ENV) or 10**9),
    )
    while not release.exists() and time.time() < deadline:  # the test kills us here, or lets us go on
        time.sleep(0.05)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            _stall_if_requested(path)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())  # the rename must never publish a file whose bytes are still in flight
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: Path, obj) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Temporary files left by a writer that was killed; call only while holding the run lock."""
    removed = []
    for tmp in Path(directory).glob(f"*{TMP_MARK}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed

"""The CPU's model name, without torch (al-run --status reads it beside the runs' platform.json)."""

from __future__ import annotations

import platform as _stdlib_platform


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what Python's platform module says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _stdlib_platform.processor() or _stdlib_platform.machine() or "unknown"

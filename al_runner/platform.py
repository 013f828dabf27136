"""What decides a run's floating-point path: the same config gives other numbers on another one.

On CPU, the kernels torch picks depend on the CPU (ATen's vectorised code path, the instruction set oneDNN
dispatches to, MKL's code path) and on the torch / oneDNN / MKL builds; the thread count changes the order of
reductions. The committed demo (`outputs/reference/demo`) matched 5 of 75 rows on an AMD EPYC (AVX2) and 2 of 75
on an Intel Xeon with AMX: the config alone does not fix the numbers. `floating_point_path` records all of it; a
run writes it to its log, to `platform.json` and to its checkpoint, and refuses to resume on another one
(`differences`). It is not part of the run directory's name (`al_runner.identity`): committed runs keep theirs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from functools import lru_cache

import torch

from al_runner.cpuinfo import cpu_model
from al_runner.schema import PLATFORM_FILE  # noqa: F401 (the run directory's file, named here too)
from al_runner.schema import PLATFORM_KEYS as COMPARED

# Environment variables that change which instructions oneDNN, ATen or MKL use (recorded when set).
ISA_ENVIRONMENT = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "ONEDNN_DEFAULT_FPMATH_MODE",
)
# COMPARED: the keys a resume compares, by device type (schema.PLATFORM_KEYS: al-plot reads them without torch)


def _build_versions() -> dict[str, str | None]:
    """oneDNN and MKL versions as torch's build configuration names them."""
    config = torch.__config__.show()
    onednn = re.search(r"(?:MKL-DNN|oneDNN)\s+v?([\w.]+)", config)
    mkl = re.search(r"Math Kernel Library Version\s+([\w.]+)", config)
    return {"onednn": onednn.group(1) if onednn else None, "mkl": mkl.group(1) if mkl else None}


@lru_cache(maxsize=1)
def onednn_isa() -> str | None:
    """The instruction set oneDNN dispatches to on this CPU (e.g. "Intel AVX2", "Intel AVX-512 with AMX"),
    read from its verbose header around one tiny convolution; None where it cannot be read."""
    if not torch.backends.mkldnn.is_available():
        return None
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to redirect (a closed descriptor): the ISA stays unknown
        return None
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 1)
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.no_grad():
                # zeros, not a Conv2d module: no draw from torch's global generator; large enough for oneDNN
                torch.nn.functional.conv2d(torch.zeros(2, 16, 16, 16), torch.zeros(16, 16, 3, 3))
        except Exception:  # noqa: BLE001 - a build without verbose support: the ISA stays unknown
            return None
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
    found = re.search(r"info,cpu,isa:([^\r\n]+)", text)
    return found.group(1).strip() if found else None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the first `flags` (x86) or `Features` (Arm) line of /proc/cpuinfo (or of the text
    given); empty where it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")) and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# The CPU units that run bf16 natively, best first (/proc/cpuinfo flags): AMX's tile matrix multiply, then
# AVX-512's bf16 dot product (vdpbf16ps). Without either, oneDNN emulates bf16 with fp32 and conversions.
BF16_UNITS = ("amx_bf16", "avx512_bf16")


def bf16_units(flags: frozenset[str] | set[str] | None = None) -> str:
    """ "amx_bf16", "avx512_bf16" or "none": the best bf16 unit among `flags` (default: this CPU's)."""
    flags = cpu_flags() if flags is None else flags
    return next((unit for unit in BF16_UNITS if unit in flags), "none")


def emulated_bf16_warning(record: dict) -> str | None:
    """One line for the run's log when a CPU run asks for bf16 (runtime.amp=true) on a CPU without bf16 units."""
    if record.get("device") != "cpu" or record.get("precision") != "bf16" or record.get("bf16_units") != "none":
        return None
    return (
        "runtime.amp=true on a CPU without bf16 units (no amx_bf16 or avx512_bf16 flag): bf16 is emulated here "
        "and a training step measured ~11x slower than fp32 on an AVX2-only AMD EPYC "
        '(docs/benchmarks.md, "fp32 vs bf16 on CPU"); runtime.amp=false runs fp32'
    )


def auto_bf16_note(record: dict, amp, model: str | None) -> str | None:
    """One line for the run's log when runtime.amp=auto chose bf16 on a CPU (runtime.amp_cpu_models)."""
    if amp not in (None, "auto") or record.get("device") != "cpu" or record.get("precision") != "bf16":
        return None
    return (
        f"runtime.amp=auto: bf16 autocast on this CPU ({record.get('bf16_units')}) for {model} "
        f"(listed in runtime.amp_cpu_models); runtime.amp=false runs fp32, in its own run directory"
    )


def floating_point_path(device: torch.device | str, threads: int | None, precision: str | None = None) -> dict:
    """What decides this process's floating-point path on `device` with `threads` CPU threads (a flat dict of
    text and numbers, JSON-ready). `precision`: the resolved autocast precision, "fp32" or "bf16" (compared on
    resume); `bf16_units`: this CPU's native bf16 units (recorded, not compared: `cpu_model` already is)."""
    device = torch.device(device)
    record: dict = {
        "device": device.type,
        "torch": str(torch.__version__),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        **_build_versions(),
        "threads": threads,
        "bf16_units": bf16_units(),
        "isa_environment": {k: os.environ[k] for k in ISA_ENVIRONMENT if k in os.environ},
    }
    if precision is not None:
        record["precision"] = precision
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        record.update(
            gpu=torch.cuda.get_device_name(index), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version()
        )
    return record


def differences(recorded: dict, current: dict) -> list[str]:
    """What differs between two records, on the keys that decide the path for the recorded device type, e.g.
    "cpu_model: AMD EPYC then, Intel(R) Xeon(R) Platinum 8480+ now"."""
    keys = COMPARED.get(str(recorded.get("device")), COMPARED["cpu"])
    return [
        f"{key}: {_text(recorded[key])} then, {_text(current.get(key))} now"
        for key in keys
        if key in recorded and key in current and recorded[key] != current[key]
    ]


def describe(record: dict) -> str:
    """One line for the run's log."""
    keys = COMPARED.get(str(record.get("device")), COMPARED["cpu"])
    return ", ".join(f"{key} {_text(record[key])}" for key in keys if key in record)


def _text(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else "none set"
    return "unknown" if value is None else str(value)


def to_json(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=True) + "\n"

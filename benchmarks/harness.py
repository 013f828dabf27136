"""Timing, interleaving, results and their CSV/markdown report, machine info, foreign CPU load.

Every comparison runs in one process with the A/B repeats interleaved (the order alternates every
repeat), so machine noise hits both sides; each figure is the median of the repeats after warm-up and
each ratio is the median of the per-repeat paired ratios.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


# --- timing ------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    cases: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    device: torch.device,
    warmup_cases: dict[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each case; repeat r runs the cases in forward order if r is even, else reversed."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            (warmup_cases or cases)[name]()
            sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            t0 = time.perf_counter()
            cases[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def paired_ratio(numer: list[float], denom: list[float]) -> float:
    """Median over repeats of numer[r] / denom[r] (both timed back to back in repeat r)."""
    return median([a / b for a, b in zip(numer, denom)])


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics, binomial ranks): how far the
    median of noisy repeats could be from the one a longer run would give."""
    from scipy.stats import binom

    xs = sorted(values)
    n = len(xs)
    if n < 6:  # too few samples for a 95 % interval: the range
        return (xs[0], xs[-1]) if xs else (math.nan, math.nan)
    low = max(int(binom.ppf((1 - level) / 2, n, 0.5)) - 1, 0)
    return xs[low], xs[n - 1 - low]


def paired_spread(numer: list[float], denom: list[float]) -> tuple[float, float]:
    """(min, max) of the per-repeat paired ratios: how noisy the median ratio is."""
    ratios = [a / b for a, b in zip(numer, denom)]
    return (min(ratios), max(ratios)) if ratios else (math.nan, math.nan)


# --- process-level measurements ----------------------------------------------------------------
def tune_glibc_malloc() -> bool:
    """Serve large tensors from the heap and keep freed memory (glibc mallopt), process-wide.

    By default glibc hands every block above its mmap threshold (dynamic, at most 32 MiB) to
    mmap and gives it back with munmap when freed, so a ResNet-18 activation of a 128-image batch
    at full width (128·64·32·32·4 B = 32 MiB, just over) is page-faulted in again on every forward.
    M_MMAP_MAX=0 keeps all blocks on the heap; a 2 GiB M_TRIM_THRESHOLD keeps freed memory for reuse.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "mallopt"):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def peak_rss_bytes(reset: bool = False) -> int:
    """This process's peak RSS (VmHWM; `reset` first sets it to the current RSS via clear_refs).

    ru_maxrss would not do: Linux carries it over fork and exec, so a child inherits its parent's peak.
    """
    with contextlib.suppress(OSError):
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ForeignLoad:
    """CPU time used by *other* processes while a benchmark runs, in cores (Linux /proc/stat).

    This machine is shared: a figure taken while someone else's job ran is flagged, not trusted.
    """

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        with contextlib.suppress(OSError, ValueError):
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        return math.nan

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float:
        wall = time.perf_counter() - self.t0
        return max(0.0, ((self._busy() - self.busy0) - (self._own() - self.own0)) / wall) if wall > 0 else math.nan


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --- results -----------------------------------------------------------------------------------
def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


COLUMNS = ["bench", "name", "value", "unit", "target", "status", "note"]


@dataclass
class Results:
    rows: list[dict] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)  # cross-benchmark numbers (e.g. training img/s)

    def add(
        self, bench: str, name: str, value: float, unit: str, target: str = "", note: str = "", met: bool | None = None
    ) -> None:
        status = "" if met is None else ("met" if met else "MISSED")
        self.rows.append(
            {
                "bench": bench,
                "name": name,
                "value": value,
                "unit": unit,
                "target": target,
                "status": status,
                "note": note,
            }
        )
        print(f"  {name:<58} {fmt(value):>10} {unit:<8} {target:<8} {status:<7} {note}", flush=True)


def write_outputs(out: Path, res: Results, info: dict, argv: list[str]) -> Path:
    """The rows as CSV at `out` and as a markdown table (with the command and machine) beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in res.rows:
            w.writerow({**row, "value": f"{row['value']:.6g}" if isinstance(row["value"], float) else row["value"]})
    md = out.with_suffix(".md")
    lines = ["# al_runner benchmark", "", f"Command: `python -m benchmarks {' '.join(argv)}`", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()] + [""]
    lines += ["| benchmark | measurement | value | unit | target | status | note |", "|---|---|---:|---|---|---|---|"]
    for row in res.rows:
        lines.append(
            f"| {row['bench']} | {row['name']} | {fmt(row['value'])} | {row['unit']} | {row['target']} | "
            f"{row['status']} | {row['note']} |"
        )
    md.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out} and {md}")
    return md

#!/usr/bin/env python
"""One markdown table from benchmark 8's CSVs (`python -m benchmarks --only 8 --out X.csv`): a row per model, path
and thread count with img/s per precision, the bf16 / fp32 speed (median of the paired repeats, with their range),
the achieved GFLOP/s against the fp32 and bf16 peaks, and the loss module's step-time overhead per precision.

    .venv/bin/python scripts/precision_table.py outputs/bench/precision_*.csv > table.md

Only reads what the benchmark wrote: no number is computed here but the column layout.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

PATHS = ("train plain", "train module", "score", "eval")


def read(path: Path) -> tuple[int, dict[str, dict]]:
    """(threads, name -> row) of one CSV; the thread count comes from its fp32 peak row ("1 core(s) at ...")."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = {row["name"]: row for row in csv.DictReader(f) if row["bench"].startswith("8")}
    peak = next((name for name in rows if name.startswith("fp32 peak")), None)
    if peak is None:
        raise SystemExit(f"{path}: no 'fp32 peak' row: not a benchmark 8 CSV (python -m benchmarks --only 8)")
    threads = int(re.search(r"(\d+) core", peak).group(1))
    return threads, rows


def models_in(rows: dict[str, dict]) -> list[str]:
    seen = []
    for name in rows:
        match = re.match(r"(\S+) (train plain|score|eval)\b", name)
        if match and match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def cell(rows: dict, name: str, fmt: str = "{:,.0f}") -> str:
    row = rows.get(name)
    return fmt.format(float(row["value"])) if row else ""


def share(rows: dict, name: str) -> str:
    """ "51 % / 3.2 %" of the fp32 and bf16 peaks, from the row's note."""
    row = rows.get(name)
    if not row:
        return ""
    numbers = re.findall(r"([\d.]+) %", row["note"])
    return f"{float(row['value']):,.0f} ({' / '.join(f'{n} %' for n in numbers)})" if numbers else row["value"]


def speed(rows: dict, name: str) -> str:
    row = rows.get(name)
    if not row:
        return ""
    repeats = re.search(r"repeats ([\d.]+) … ([\d.]+)", row["note"])
    return f"{float(row['value']):.2f}× ({repeats.group(1)}–{repeats.group(2)})" if repeats else f"{row['value']}×"


def overhead(rows: dict, model: str, precision: str) -> str:
    row = rows.get(f"{model} loss-module step time / plain ({precision})")
    if not row:
        return ""
    match = re.search(r"overhead ([+-][\d.]+ %)", row["note"])
    return match.group(1) if match else ""


def table(paths: list[Path]) -> str:
    lines = [
        "| model | path | threads | fp32 img/s | bf16 img/s | bf16 / fp32 (repeats) | fp32 GFLOP/s (% of fp32 / bf16 "
        "peak) | bf16 GFLOP/s (% of fp32 / bf16 peak) |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    overheads = ["", "| model | threads | module overhead fp32 | module overhead bf16 |", "|---|---:|---:|---:|"]
    for path in paths:
        threads, rows = read(path)
        for model in models_in(rows):
            for p in PATHS:
                if f"{model} {p} fp32" not in rows:
                    continue
                fp32, bf16 = cell(rows, f"{model} {p} fp32", "{:,.1f}"), cell(rows, f"{model} {p} bf16", "{:,.1f}")
                lines.append(
                    f"| {model} | {p} | {threads} | {fp32} | {bf16} | {speed(rows, f'{model} {p}: bf16 / fp32 speed')} "
                    "| "
                    f"{share(rows, f'{model} {p} fp32: achieved')} | {share(rows, f'{model} {p} bf16: achieved')} |"
                )
            if overhead(rows, model, "fp32"):
                overheads.append(
                    f"| {model} | {threads} | {overhead(rows, model, 'fp32')} | {overhead(rows, model, 'bf16')} |"
                )
    return "\n".join(lines + overheads) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", nargs="+", type=Path, help="benchmark 8 CSVs, in the order their rows should appear")
    args = p.parse_args(argv)
    missing = [str(path) for path in args.csv if not path.is_file()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}")
    sys.stdout.write(table(args.csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

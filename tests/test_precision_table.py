"""scripts/precision_table.py: benchmark 8's CSV rows laid out as one table, numbers copied, not recomputed."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "precision_table.py"
spec = importlib.util.spec_from_file_location("precision_table", SCRIPT)
precision_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(precision_table)

ROWS = [  # (name, value, unit, target, status, note) as benchmarks/harness.py writes them
    ("fp32 peak, 2 core(s) at 2600 MHz", 332.8, "GFLOP/s", "", "", "64 FLOP/cycle/core"),
    ("m train plain fp32", 100.0, "img/s", "", "", ""),
    ("m train plain fp32: achieved", 20.0, "GFLOP/s", "", "", "6.0 % of the fp32 peak, 0.4 % of the bf16 peak"),
    ("m train plain bf16", 250.0, "img/s", "", "", ""),
    ("m train plain bf16: achieved", 50.0, "GFLOP/s", "", "", "15.0 % of the fp32 peak, 0.9 % of the bf16 peak"),
    ("m train plain: bf16 / fp32 speed", 2.5, "x", "", "", "repeats 2.40 … 2.61"),
    ("m loss-module step time / plain (fp32)", 1.01, "x", "<= 1.03", "met", "overhead +1.0 % (repeats …)"),
    ("m loss-module step time / plain (bf16)", 1.05, "x", "<= 1.03", "MISSED", "overhead +5.0 % (repeats …)"),
]


def write(path: Path, rows) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["bench", "name", "value", "unit", "target", "status", "note"])
        writer.writerows(["8 precision", *row] for row in rows)
    return path


def test_a_row_per_model_path_and_thread_count_with_the_benchmarks_numbers(tmp_path):
    text = precision_table.table([write(tmp_path / "b.csv", ROWS)])
    row = "| m | train plain | 2 | 100.0 | 250.0 | 2.50× (2.40–2.61) | 20 (6.0 % / 0.4 %) | 50 (15.0 % / 0.9 %) |"
    assert row in text
    assert "| m | 2 | +1.0 % | +5.0 % |" in text
    assert "| m | score |" not in text  # a path the CSV does not have gets no row


def test_a_csv_that_is_not_benchmark_8s_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a benchmark 8 CSV"):
        precision_table.table([write(tmp_path / "b.csv", ROWS[1:])])
    with pytest.raises(SystemExit, match="not found"):
        precision_table.main([str(tmp_path / "missing.csv")])

"""Run-directory files: CSVs rewritten atomically from the run state, and the checkpoint."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

CYCLE_COLUMNS = ["task", "model", "sampler", "seed", "cycle", "n_labeled", "metric", "value",
                 "ranking_accuracy", "train_s", "eval_s", "select_s"]
TIMING_COLUMNS = ["train_s", "eval_s", "select_s"]  # wall-clock: the only columns that differ between reruns
SELECTED_COLUMNS = ["cycle", "pool_index", "score"]
TEST_SCORE_COLUMNS = ["cycle", "test_index", "real_loss", "predicted_loss", "entropy"]

CYCLES_CSV, SELECTED_CSV, TEST_SCORES_CSV, CHECKPOINT = "cycles.csv", "selected.csv", "test_scores.csv", "checkpoint.pt"


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision, so reruns compare exactly
    return str(value)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in columns])
    os.replace(tmp, path)


def write_test_scores(path: Path, cycle: int, real_loss: torch.Tensor, entropy: torch.Tensor,
                      predicted_loss: torch.Tensor | None) -> None:
    predicted = [None] * real_loss.numel() if predicted_loss is None else predicted_loss.tolist()
    rows = [
        {"cycle": cycle, "test_index": i, "real_loss": r, "predicted_loss": p, "entropy": e}
        for i, (r, p, e) in enumerate(zip(real_loss.tolist(), predicted, entropy.tolist()))
    ]
    write_csv(path, TEST_SCORE_COLUMNS, rows)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write-then-rename: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)

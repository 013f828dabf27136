"""The short text summary of a sweep: per experiment (task × model), each sampler's AUBC and last-cycle metric,
mean ± std over seeds, and its significant wins / losses on AUBC after Holm.

`summary_lines` formats the two tables al-plot computes (`al_runner.figures`: the results table and the AUBC table
with its wins, written as results.csv and aubc.csv); `report_summary` reads them back from a report directory, which
is how the end of a multirun prints them (`al_runner.sweep`). No torch and no plotting here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

RESULTS_CSV = "results.csv"  # one row per task × model × sampler at its last common cycle, in display order
AUBC_CSV = "aubc.csv"  # AUBC mean ± std per task × model × sampler, with its significant wins and losses
EXPERIMENT = ["task", "model"]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if _is_missing(mean):
        return "—"
    if _is_missing(std):
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_lines(last_cycle: pd.DataFrame, aubc: pd.DataFrame) -> list[str]:
    """A short terminal table per experiment: AUBC, last-cycle metric, significant wins on AUBC (Holm).

    `last_cycle`: one row per task × model × sampler, samplers in display order, with `sampler_label`, `metric`,
    `n_seeds`, `mean` and `std` (al-plot's results table). `aubc`: one row per task × model × sampler with `mean`,
    `std`, `wins` and `losses` (missing where no paired test could run); a sampler without a row shows "—".
    """
    lines = []
    aubc_rows = {tuple(a[k] for k in (*EXPERIMENT, "sampler")): a for a in aubc.to_dict("records")}
    for (task, model), rows in last_cycle.groupby(EXPERIMENT, sort=True):
        lines.append(
            f"{task} ({model}): AUBC and last-cycle {' / '.join(sorted(rows['metric'].unique()))}, "
            "mean ± std over seeds; wins/losses = significant on AUBC after Holm"
        )
        lines.append(f"  {'sampler':<28} {'seeds':>5}  {'AUBC':<17}  {'last cycle':<17}  wins/losses")
        for row in rows.to_dict("records"):
            a = aubc_rows.get((task, model, row["sampler"]))
            aubc_cell = format_mean_std(a["mean"], a["std"]) if a else "—"
            record = "—" if a is None or _is_missing(a["wins"]) else f"{int(a['wins'])}/{int(a['losses'])}"
            lines.append(
                f"  {row['sampler_label']:<28} {row['n_seeds']:>5}  {aubc_cell:<17}  "
                f"{format_mean_std(row['mean'], row['std']):<17}  {record}"
            )
    return lines


def report_summary(report_dir: Path) -> list[str]:
    """`summary_lines` of the tables an al-plot report wrote into `report_dir` (results.csv, aubc.csv)."""
    import pandas as pd  # only here: al-run imports this module at start-up, and needs pandas only at a sweep's end

    report_dir = Path(report_dir)
    keys = {"task": str, "model": str, "sampler": str}
    last_cycle = pd.read_csv(report_dir / RESULTS_CSV, dtype={**keys, "sampler_label": str, "metric": str})
    aubc = pd.read_csv(report_dir / AUBC_CSV, dtype=keys)
    return summary_lines(last_cycle, aubc)

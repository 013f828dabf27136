"""Label efficiency: how many labels each sampler needs to reach the reference sampler's final metric.

Target = the reference's (random's) mean metric at its last cycle shared by all its seeds. A sampler's
curve is its mean over seeds per cycle (cycles every one of its seeds reached); the labels it needs are
found by linear interpolation between the two cycles that bracket the target, or "not reached" when its
curve never gets there. `ratio` = labels needed / the reference's labels at its last cycle (below 1: fewer
labels for the same metric).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["task", "model", "sampler", "reference", "target", "reference_n_labeled", "n_labeled_needed", "reached",
           "ratio"]


def mean_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean metric per cycle over the seeds, on the cycles every seed of these rows reached."""
    n_seeds = rows["seed"].nunique()
    per_cycle = rows.groupby("cycle").agg(n_labeled=("n_labeled", "mean"), value=("value", "mean"),
                                          seeds=("seed", "nunique"))
    return per_cycle[per_cycle["seeds"] == n_seeds].sort_index()


def labels_to_reach(curve: pd.DataFrame, target: float) -> float:
    """First n_labeled where the curve reaches `target`, linearly interpolated; NaN if it never does."""
    x, y = curve["n_labeled"].to_numpy(float), curve["value"].to_numpy(float)
    reached = np.nonzero(y >= target)[0]
    if len(reached) == 0:
        return float("nan")
    i = reached[0]
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))


def label_efficiency(cycles: pd.DataFrame, reference: str = "random") -> pd.DataFrame:
    """One row per task x model x sampler (experiments without the reference sampler are left out)."""
    rows = []
    for (task, model), experiment in cycles.groupby(["task", "model"], sort=True):
        ref_rows = experiment[experiment["sampler"] == reference]
        if ref_rows.empty:
            continue
        ref_curve = mean_curve(ref_rows)
        target, ref_labels = float(ref_curve["value"].iloc[-1]), float(ref_curve["n_labeled"].iloc[-1])
        for sampler, rows_of_sampler in experiment.groupby("sampler", sort=True):
            needed = labels_to_reach(mean_curve(rows_of_sampler), target)
            rows.append({"task": task, "model": model, "sampler": sampler, "reference": reference, "target": target,
                         "reference_n_labeled": ref_labels, "n_labeled_needed": needed,
                         "reached": bool(needed == needed), "ratio": needed / ref_labels})
    return pd.DataFrame(rows, columns=COLUMNS)

"""Area under the budget curve (AUBC): one number per run for the whole learning curve.

AUBC = trapezoid area under metric-vs-labeled-points, divided by the budget range (last minus first
labeled-set size). It is the curve's mean height, in the metric's units: 0.6 means "0.6 accuracy on
average over the budget". Lüth et al. (NeurIPS 2023) and Zhan et al. (2021) report it to compare query
strategies over a whole budget rather than at one hand-picked point.

Runs of one experiment are compared over the same budget: the cycles every run of that experiment
reached (`common_last_cycle`), so a partial sweep does not mix areas over different ranges.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

EXPERIMENT_KEY = ["task", "model"]
RUN_KEY = ["task", "model", "sampler", "seed"]


def area_under_budget_curve(n_labeled, values) -> float:
    """Trapezoid area under values(n_labeled) divided by the range of n_labeled (NaN for fewer than two sizes)."""
    x, y = np.asarray(n_labeled, dtype=float), np.asarray(values, dtype=float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if len(x) < 2 or x[-1] == x[0]:
        return float("nan")
    return float(trapezoid(y, x) / (x[-1] - x[0]))


def common_last_cycle(cycles: pd.DataFrame) -> pd.Series:
    """Per experiment (task, model): the last cycle that every one of its runs reached."""
    last_per_run = cycles.groupby(RUN_KEY)["cycle"].max()
    return last_per_run.groupby(level=EXPERIMENT_KEY).min().rename("last_cycle")


def aubc_per_run(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its AUBC over cycles 0..last_cycle of its experiment, with that budget range.

    Columns: task, model, sampler, seed, aubc, last_cycle, n_first, n_last. Experiments whose runs share
    fewer than two cycles have no AUBC (left out).
    """
    columns = [*RUN_KEY, "aubc", "last_cycle", "n_first", "n_last"]
    last = common_last_cycle(cycles).reset_index()
    within = cycles.merge(last, on=EXPERIMENT_KEY)
    within = within[within["cycle"] <= within["last_cycle"]]
    rows = []
    for key, run in within.groupby(RUN_KEY, sort=True):
        if run["last_cycle"].iloc[0] < 1:
            continue
        rows.append({**dict(zip(RUN_KEY, key)), "aubc": area_under_budget_curve(run["n_labeled"], run["value"]),
                     "last_cycle": int(run["last_cycle"].iloc[0]),
                     "n_first": int(run["n_labeled"].min()), "n_last": int(run["n_labeled"].max())})
    return pd.DataFrame(rows, columns=columns)


def aubc_summary(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per task x model x sampler: AUBC mean and sample std (ddof=1) over seeds, and the budget range."""
    columns = ["task", "model", "sampler", "n_seeds", "seeds", "mean", "std", "last_cycle", "n_first", "n_last"]
    if per_run.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        per_run.groupby(["task", "model", "sampler"])
        .agg(n_seeds=("seed", "nunique"), seeds=("seed", lambda s: ",".join(map(str, sorted(s)))),
             mean=("aubc", "mean"), std=("aubc", "std"), last_cycle=("last_cycle", "first"),
             n_first=("n_first", "first"), n_last=("n_last", "first"))
        .reset_index()
    )
    return summary[columns]

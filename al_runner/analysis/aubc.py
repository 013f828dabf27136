"""Area under the budget curve (AUBC): one number per run for the whole learning curve.

AUBC = trapezoid area under metric-vs-labeled-points, divided by the budget range (last minus first
labeled-set size). It is the curve's mean height, in the metric's units: 0.6 means "0.6 accuracy on
average over the budget". Lüth et al. (NeurIPS 2023) and Zhan et al. (2021) report it to compare query
strategies over a whole budget rather than at one hand-picked point.

Runs of one experiment are compared over the same budget: the cycles every run of that experiment
reached (`common_last_cycle`), so a partial sweep does not mix areas over different ranges.

Cycle 0 is the random initial set, before any selection: there the samplers differ only in how they train (with
or without the loss-prediction module). `aubc_per_run(cycles, first_cycle=1)` is the AUBC over the selection
cycles alone, which separates the module's training cost from its selection quality.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
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


def aubc_per_run(cycles: pd.DataFrame, first_cycle: int = 0) -> pd.DataFrame:
    """One row per run: its AUBC over cycles first_cycle..last_cycle of its experiment, with that budget range.

    Columns: task, model, sampler, seed, aubc, first_cycle, last_cycle, n_first, n_last. Experiments whose runs
    share fewer than two of those cycles have no AUBC (left out).
    """
    columns = [*RUN_KEY, "aubc", "first_cycle", "last_cycle", "n_first", "n_last"]
    last = common_last_cycle(cycles).reset_index()
    within = cycles.merge(last, on=EXPERIMENT_KEY)
    within = within[(within["cycle"] >= first_cycle) & (within["cycle"] <= within["last_cycle"])]
    rows = []
    for key, run in within.groupby(RUN_KEY, sort=True):
        if run["last_cycle"].iloc[0] < first_cycle + 1:
            continue
        rows.append(
            {
                **dict(zip(RUN_KEY, key)),
                "aubc": area_under_budget_curve(run["n_labeled"], run["value"]),
                "first_cycle": first_cycle,
                "last_cycle": int(run["last_cycle"].iloc[0]),
                "n_first": int(run["n_labeled"].min()),
                "n_last": int(run["n_labeled"].max()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def t_interval(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of a mean from n values with sample std `std` (NaN for fewer than two values)."""
    if n < 2 or not np.isfinite(std):
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, n - 1) * std / np.sqrt(n)
    return float(mean - half), float(mean + half)


def with_t_intervals(summary: pd.DataFrame) -> pd.DataFrame:
    """`summary` (columns mean, std, n_seeds) with ci_low / ci_high: the 95 % t-interval of each row's mean."""
    intervals = [t_interval(m, sd, n) for m, sd, n in zip(summary["mean"], summary["std"], summary["n_seeds"])]
    summary["ci_low"], summary["ci_high"] = [lo for lo, _ in intervals], [hi for _, hi in intervals]
    return summary


def aubc_summary(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per task x model x sampler: AUBC mean, sample std (ddof=1) and the 95 % t-interval of the mean over seeds,
    and the budget range."""
    columns = [
        "task",
        "model",
        "sampler",
        "n_seeds",
        "seeds",
        "mean",
        "std",
        "ci_low",
        "ci_high",
        "first_cycle",
        "last_cycle",
        "n_first",
        "n_last",
    ]
    if per_run.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        per_run.groupby(["task", "model", "sampler"])
        .agg(
            n_seeds=("seed", "nunique"),
            seeds=("seed", lambda s: ",".join(map(str, sorted(s)))),
            mean=("aubc", "mean"),
            std=("aubc", "std"),
            first_cycle=("first_cycle", "first"),
            last_cycle=("last_cycle", "first"),
            n_first=("n_first", "first"),
            n_last=("n_last", "first"),
        )
        .reset_index()
    )
    return with_t_intervals(summary)[columns]

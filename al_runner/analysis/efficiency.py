"""Label efficiency: how many labels each sampler needs to reach the reference sampler's final metric.

Target = the reference's (random's) mean metric at its last cycle shared by all its seeds. A sampler's
curve is its mean over seeds per cycle (cycles every one of its seeds reached); the labels it needs are
found by linear interpolation between the two cycles that bracket the target, or "not reached" when its
curve never gets there. `ratio` = labels needed / the reference's labels at its last cycle (below 1: fewer
labels for the same metric).

The point estimate comes from mean curves and is not a test. Its uncertainty over seeds is a percentile bootstrap
(`bootstrap_interval`): the seeds the sampler shares with the reference are resampled with replacement, jointly for
both (paired by seed), and target and labels needed recomputed; `ci_low` / `ci_high` bound 95 % of the
resamples, `p_reached` is the share of resamples whose curve reaches the target at all. An upper bound the curve
does not reach is +inf ("not reached" in the report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "task",
    "model",
    "sampler",
    "reference",
    "target",
    "reference_n_labeled",
    "n_labeled_needed",
    "reached",
    "ratio",
    "ci_low",
    "ci_high",
    "p_reached",
]
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed generator: the same CSVs give the same interval


def mean_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean metric per cycle over the seeds, on the cycles every seed of these rows reached."""
    n_seeds = rows["seed"].nunique()
    per_cycle = rows.groupby("cycle").agg(
        n_labeled=("n_labeled", "mean"), value=("value", "mean"), seeds=("seed", "nunique")
    )
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


def seed_matrix(rows: pd.DataFrame, seeds: list, cycles: list) -> np.ndarray:
    """[seed, cycle] metric values of one sampler (NaN where a seed did not reach a cycle)."""
    table = rows.pivot_table(index="seed", columns="cycle", values="value", aggfunc="first")
    return table.reindex(index=seeds, columns=cycles).to_numpy(float)


def bootstrap_interval(
    reference_final: np.ndarray,
    sampler: np.ndarray,
    n_labeled: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(low, high, share reached) of the labels the sampler needs to reach the reference's final mean, over
    resampled seeds. reference_final: [seed] the reference's final metric; sampler: [seed, cycle] on the same
    seeds; n_labeled: [cycle]."""
    n_seeds = len(reference_final)
    picks = np.random.default_rng(seed).integers(0, n_seeds, size=(resamples, n_seeds))
    targets = reference_final[picks].mean(axis=1)
    curves = sampler[picks].mean(axis=1)  # [resample, cycle]
    reached = curves >= targets[:, None]
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
    needed = np.full(resamples, np.inf)
    for r in np.nonzero(first >= 0)[0]:
        i = first[r]
        if i == 0:
            needed[r] = n_labeled[0]
        else:
            y0, y1 = curves[r, i - 1], curves[r, i]
            needed[r] = n_labeled[i - 1] + (targets[r] - y0) * (n_labeled[i] - n_labeled[i - 1]) / (y1 - y0)
    tail = (1 - level) / 2
    # the outer order statistics (no interpolation, which an infinite "not reached" would turn into NaN)
    low, high = np.quantile(needed, tail, method="lower"), np.quantile(needed, 1 - tail, method="higher")
    return float(low), float(high), float(np.isfinite(needed).mean())


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
            curve = mean_curve(rows_of_sampler)
            needed = labels_to_reach(curve, target)
            low, high, p_reached = _interval(ref_rows, ref_curve, rows_of_sampler, curve)
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "sampler": sampler,
                    "reference": reference,
                    "target": target,
                    "reference_n_labeled": ref_labels,
                    "n_labeled_needed": needed,
                    "reached": bool(needed == needed),
                    "ratio": needed / ref_labels,
                    "ci_low": low,
                    "ci_high": high,
                    "p_reached": p_reached,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _interval(ref_rows, ref_curve, rows, curve) -> tuple[float, float, float]:
    """The bootstrap over the seeds both samplers ran, on the cycles of the sampler's mean curve (NaN when they
    share fewer than two seeds)."""
    seeds = sorted(set(ref_rows["seed"]) & set(rows["seed"]))
    cycles = list(curve.index)
    if len(seeds) < 2:
        return float("nan"), float("nan"), float("nan")
    final = seed_matrix(ref_rows, seeds, [ref_curve.index[-1]])[:, 0]
    own = seed_matrix(rows, seeds, cycles)
    if np.isnan(final).any() or np.isnan(own).any():
        return float("nan"), float("nan"), float("nan")
    return bootstrap_interval(final, own, curve["n_labeled"].to_numpy(float))

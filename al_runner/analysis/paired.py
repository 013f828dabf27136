"""Paired tests between samplers on the same seeds, Holm-corrected within each family of comparisons.

Under one seed every sampler starts from the same initial labeled set and the same initial weights, so
the per-seed difference removes that shared variation: each pair of samplers is compared by paired tests
on the seeds both reached. Per pair: the paired t-test (scipy.stats.ttest_rel, with its 95 % interval for
the mean difference) and the Wilcoxon signed-rank test (scipy.stats.wilcoxon; exact for small samples, so
with 5 seeds its two-sided p can never fall below 2/2^5 = 0.0625); the effect size d_z = mean / std of the
differences; the seeds a paired t-test would need to detect that d_z with 80 % power at alpha 0.05
(the noncentral t distribution, as statsmodels.stats.power.TTestPower computes it, with its far tail guarded);
and, the other way round, the smallest difference these seeds detect with 80 % power given the spread of the
differences observed (the power these seeds realise: what a non-significant pair rules out, roughly).

A *family* is every pair of samplers within one experiment (task, model) at one cycle, or on AUBC. Holm's
step-down correction (statsmodels.stats.multitest.multipletests, method "holm") controls the chance of any
false "significant" within the family. Pairs that are identical on every seed (cycle 0 of two samplers that
train alike) are no comparison: their p-values are NaN and they do not enter the family.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests


@dataclass(frozen=True)
class TestSettings:
    alpha: float = 0.05  # significance level, after Holm's correction
    confidence: float = 0.95  # of the interval for the mean difference
    power: float = 0.8  # for the seeds-needed estimate


PAIR_COLUMNS = [
    "sampler_a",
    "sampler_b",
    "n_seeds",
    "seeds",
    "mean_a",
    "mean_b",
    "mean_diff",
    "std_diff",
    "ci_low",
    "ci_high",
    "d_z",
    "t",
    "p_t",
    "p_t_holm",
    "w",
    "p_wilcoxon",
    "p_wilcoxon_holm",
    "significant",
    "winner",
    "seeds_for_power",
    "detectable_diff",
]


MAX_SEEDS = 10**7  # search bound: beyond, "never" (NaN)


def paired_t_power(d_z: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test on n seeds for effect size d_z: P(|T| > t_crit) with T noncentral t
    (n - 1 degrees of freedom, noncentrality |d_z| sqrt(n)), the formula of statsmodels' TTestPower.power.
    scipy's noncentral t returns NaN for the far tail P(T < -t_crit) where it underflows (large d_z or n;
    TTestPower's power is then NaN too). That term is below P(T < 0) = Phi(-nc) (4e-15 at d_z 5.5, n 2) and
    counts as 0 there; a NaN where the bound is not negligible is an error, not a number."""
    df, nc = n - 1, abs(d_z) * math.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    lower_tail = stats.nct.cdf(-critical, df, nc)
    if not math.isfinite(lower_tail):
        if stats.norm.cdf(-nc) > 1e-9:
            raise ValueError(f"noncentral t power undefined at d_z={d_z}, n={n}")
        lower_tail = 0.0
    return float(stats.nct.sf(critical, df, nc) + lower_tail)


def seeds_for_power(d_z: float, settings: TestSettings = TestSettings()) -> float:
    """The smallest number of seeds with which a two-sided paired t-test detects effect size d_z with
    `settings.power` at `settings.alpha` (`paired_t_power`, searched over integers: power grows with n).
    NaN for d_z 0 or undefined; at least 2."""
    if math.isinf(d_z):
        return 2.0
    if not math.isfinite(d_z) or d_z == 0:
        return float("nan")

    def enough(n: int) -> bool:
        return paired_t_power(d_z, n, settings.alpha) >= settings.power

    low, high = 1, 2  # invariant: not enough(low) (n = 1 has no test), enough(high) once found
    while not enough(high):
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return float("nan")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


def detectable_effect_size(n: int, settings: TestSettings = TestSettings()) -> float:
    """The d_z a two-sided paired t-test on n seeds detects with `settings.power` at `settings.alpha` (the root of
    `paired_t_power(d_z, n) = power`; power grows with d_z). NaN below 2 seeds."""
    if n < 2:
        return float("nan")
    high = 1.0
    while paired_t_power(high, n, settings.alpha) < settings.power:
        high *= 2
    return float(optimize.brentq(lambda d: paired_t_power(d, n, settings.alpha) - settings.power, 0.0, high, xtol=1e-9))


def detectable_difference(std_diff: float, n: int, settings: TestSettings = TestSettings()) -> float:
    """The smallest |mean difference| a paired t-test on n seeds detects with `settings.power` at `settings.alpha`
    (before correction) when the differences spread as observed (`std_diff`): detectable d_z x std."""
    if not math.isfinite(std_diff):
        return float("nan")
    return detectable_effect_size(n, settings) * std_diff


def compare_pair(a: np.ndarray, b: np.ndarray, settings: TestSettings = TestSettings()) -> dict:
    """Paired statistics of a - b (arrays aligned by seed), before any correction."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    n = len(diff)
    row = {
        "n_seeds": n,
        "mean_a": a.mean(),
        "mean_b": b.mean(),
        "mean_diff": diff.mean(),
        "std_diff": diff.std(ddof=1) if n > 1 else float("nan"),
    }
    nan = float("nan")
    if n < 2 or np.all(diff == 0):  # nothing to test: too few seeds, or identical on every seed
        return {
            **row,
            "ci_low": nan,
            "ci_high": nan,
            "d_z": nan,
            "t": nan,
            "p_t": nan,
            "w": nan,
            "p_wilcoxon": nan,
            "seeds_for_power": nan,
            "detectable_diff": nan,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: scipy warns, the values say it
        t_test = stats.ttest_rel(a, b)
        interval = t_test.confidence_interval(settings.confidence)
        wilcoxon = stats.wilcoxon(a, b)
    d_z = row["mean_diff"] / row["std_diff"] if row["std_diff"] > 0 else math.copysign(math.inf, row["mean_diff"])
    return {
        **row,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "d_z": d_z,
        "t": float(t_test.statistic),
        "p_t": float(t_test.pvalue),
        "w": float(wilcoxon.statistic),
        "p_wilcoxon": float(wilcoxon.pvalue),
        "seeds_for_power": seeds_for_power(d_z, settings),
        "detectable_diff": detectable_difference(row["std_diff"], n, settings),
    }


def holm(p_values: pd.Series, alpha: float) -> pd.Series:
    """Holm-adjusted p-values over the non-NaN entries (NaN stays NaN)."""
    adjusted = pd.Series(np.nan, index=p_values.index)
    known = p_values.notna()
    if known.any():
        adjusted[known] = multipletests(p_values[known].to_numpy(), alpha=alpha, method="holm")[1]
    return adjusted


def pairwise_tests(
    values: pd.DataFrame, samplers: list[str] | None = None, settings: TestSettings = TestSettings()
) -> pd.DataFrame:
    """One family: every pair of samplers in `values` (columns sampler, seed, value) on their shared seeds.

    `samplers` fixes the order (pair (a, b) with a listed first; default: sorted). `winner` names the
    sampler with the higher mean when the Holm-corrected t-test is significant, else is empty.
    """
    order = samplers or sorted(values["sampler"].unique())
    by_sampler = {s: rows.set_index("seed")["value"] for s, rows in values.groupby("sampler")}
    rows = []
    for a, b in itertools.combinations([s for s in order if s in by_sampler], 2):
        shared = sorted(set(by_sampler[a].index) & set(by_sampler[b].index))
        if not shared:
            continue
        pair = compare_pair(by_sampler[a][shared].to_numpy(), by_sampler[b][shared].to_numpy(), settings)
        rows.append({"sampler_a": a, "sampler_b": b, "seeds": ",".join(map(str, shared)), **pair})
    table = pd.DataFrame(
        rows, columns=[c for c in PAIR_COLUMNS if c not in ("p_t_holm", "p_wilcoxon_holm", "significant", "winner")]
    )
    table["p_t_holm"] = holm(table["p_t"], settings.alpha)
    table["p_wilcoxon_holm"] = holm(table["p_wilcoxon"], settings.alpha)
    table["significant"] = table["p_t_holm"] < settings.alpha
    table["winner"] = np.where(
        table["significant"], np.where(table["mean_diff"] > 0, table["sampler_a"], table["sampler_b"]), ""
    )
    return table[PAIR_COLUMNS]


def per_cycle_tests(
    cycles: pd.DataFrame, samplers: list[str] | None = None, settings: TestSettings = TestSettings()
) -> pd.DataFrame:
    """Pairwise tests of the metric at each cycle; one family per task x model x cycle."""
    frames = []
    for (task, model, cycle), rows in cycles.groupby(["task", "model", "cycle"], sort=True):
        table = pairwise_tests(rows[["sampler", "seed", "value"]], samplers, settings)
        frames.append(table.assign(task=task, model=model, cycle=int(cycle), n_labeled=float(rows["n_labeled"].mean())))
    return _with_key_first(frames, ["task", "model", "cycle", "n_labeled"])


def aubc_tests(
    per_run_aubc: pd.DataFrame, samplers: list[str] | None = None, settings: TestSettings = TestSettings()
) -> pd.DataFrame:
    """Pairwise tests of AUBC (`aubc.aubc_per_run`); one family per task x model."""
    frames = []
    for (task, model), rows in per_run_aubc.groupby(["task", "model"], sort=True):
        table = pairwise_tests(rows.rename(columns={"aubc": "value"})[["sampler", "seed", "value"]], samplers, settings)
        frames.append(table.assign(task=task, model=model))
    return _with_key_first(frames, ["task", "model"])


def _with_key_first(frames: list[pd.DataFrame], key: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=[*key, *PAIR_COLUMNS])
    table = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    return table[[*key, *PAIR_COLUMNS]]


def significant_wins(tests: pd.DataFrame) -> pd.DataFrame:
    """Per task x model x sampler: how many others it beat and lost to significantly (Holm), in `tests`."""
    rows = []
    for (task, model), family in tests.groupby(["task", "model"], sort=True):
        for sampler in pd.unique(family[["sampler_a", "sampler_b"]].to_numpy().ravel()):
            involved = family[(family["sampler_a"] == sampler) | (family["sampler_b"] == sampler)]
            decided = involved[involved["significant"]]
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "sampler": sampler,
                    "wins": int((decided["winner"] == sampler).sum()),
                    "losses": int((decided["winner"] != sampler).sum()),
                    "comparisons": len(involved),
                }
            )
    return pd.DataFrame(rows, columns=["task", "model", "sampler", "wins", "losses", "comparisons"])

"""Paired differences split by floating-point path: does pooling seeds made on different machines hide anything?

A sweep that outlives one machine (the 20-seed CIFAR-10 extension: seeds made on an AMD EPYC, others on an Intel
Xeon, the first ones before runs recorded their CPU) keeps every seed's samplers on one path, so each paired
difference compares like with like. Pooling the seeds still assumes the *difference* between two samplers does not
depend on the path. This table shows it per path (mean a − b with its t-interval over that path's seeds) and tests
it: a one-way ANOVA (scipy.stats.f_oneway) of the per-seed differences across the paths with two seeds or more. A
small p says the paths disagree about the difference and the pooled test mixes them; a large p with few seeds per
path says little (the test has low power), which the per-path intervals show.

A seed whose two runs were made on different paths is its own group ("mixed: …") and enters no test.
"""

from __future__ import annotations

import itertools

import pandas as pd
from scipy import stats

from al_runner.analysis.aubc import t_interval

UNRECORDED = "unrecorded"  # runs made before platform.json existed
PATH_COLUMNS = [
    "task",
    "model",
    "sampler_a",
    "sampler_b",
    "path",
    "n_seeds",
    "seeds",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_between_paths",
]


def path_label(record: dict | None) -> str:
    """A run's floating-point path in a few words (its platform.json): device model, ISA, precision."""
    if record is None:
        return UNRECORDED
    if str(record.get("device")) == "cuda":
        parts = (record.get("gpu"), record.get("precision"))
    else:
        parts = (record.get("cpu_model"), record.get("cpu_capability"), record.get("precision"))
    return ", ".join(str(p) for p in parts if p not in (None, "")) or UNRECORDED


def paired_by_path(per_run: pd.DataFrame, samplers: list[str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """per_run: columns task, model, sampler, seed, value, path (one row per run). One row per task × model × pair
    × path: the mean of a − b over the seeds both ran on that path, its t-interval, and (repeated on each row of
    the pair) the ANOVA p across paths. Empty when every seed of every experiment shares one path."""
    rows = []
    for (task, model), runs in per_run.groupby(["task", "model"], sort=True):
        order = [s for s in (samplers or sorted(runs["sampler"].unique())) if s in set(runs["sampler"])]
        by_sampler = {s: r.set_index("seed") for s, r in runs.groupby("sampler")}
        for a, b in itertools.combinations(order, 2):
            shared = sorted(set(by_sampler[a].index) & set(by_sampler[b].index))
            if not shared:
                continue
            diffs = pd.DataFrame(
                {
                    "seed": shared,
                    "diff": [by_sampler[a].at[s, "value"] - by_sampler[b].at[s, "value"] for s in shared],
                    "path": [_seed_path(by_sampler[a].at[s, "path"], by_sampler[b].at[s, "path"]) for s in shared],
                }
            )
            if diffs["path"].nunique() < 2:
                continue
            groups = {path: g for path, g in diffs.groupby("path", sort=True)}
            testable = [g["diff"].to_numpy() for p, g in groups.items() if not p.startswith("mixed") and len(g) >= 2]
            p_between = float(stats.f_oneway(*testable).pvalue) if len(testable) >= 2 else float("nan")
            for path, g in groups.items():
                values = g["diff"].to_numpy(dtype=float)
                std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
                low, high = t_interval(float(values.mean()), std, len(values), confidence)
                rows.append(
                    {
                        "task": task,
                        "model": model,
                        "sampler_a": a,
                        "sampler_b": b,
                        "path": path,
                        "n_seeds": len(values),
                        "seeds": ",".join(str(int(s)) for s in g["seed"]),
                        "mean_diff": float(values.mean()),
                        "ci_low": low,
                        "ci_high": high,
                        "p_between_paths": p_between,
                    }
                )
    return pd.DataFrame(rows, columns=PATH_COLUMNS)


def _seed_path(path_a: str, path_b: str) -> str:
    return path_a if path_a == path_b else f"mixed: {path_a} / {path_b}"

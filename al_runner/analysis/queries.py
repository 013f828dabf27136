"""Query diagnostics: what each cycle's picks look like, and how much two samplers' picks overlap.

Class balance needs the class of each *picked* point. Picked points are labeled by then, so the runner
writes their classes into selected.csv's `classes` column (one class name for an image; one per object for
detection, CLASSES_SEPARATOR-joined; empty where the task has no classes, e.g. pose). Samplers never see it: it is
written after the labels were bought. Runs made before that column existed have no class balance.

Class entropy of a cycle's picks = the Shannon entropy (nats) of the class histogram of that cycle's picks
(objects for detection); `normalised_entropy` divides by log(number of classes seen in the experiment's
picks), so 1 means perfectly balanced. Overlap of two samplers on one seed and cycle = |A ∩ B| / |A| for the
points each picked in that cycle; `labeled_jaccard` = |L_A ∩ L_B| / |L_A ∪ L_B| for the whole labeled sets
after that cycle's selection (both start from the same initial set under one seed).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from al_runner.schema import CLASSES_SEPARATOR, SELECTED_CSV

RUN_KEY = ["task", "model", "sampler", "seed"]
# Classes of older runs' picks, added afterwards from the data (scripts/backfill_classes.py), beside selected.csv.
BACKFILLED_CLASSES_CSV = "selected_classes.csv"


def _split_classes(column: pd.Series) -> list[list[str]]:
    return [text.split(CLASSES_SEPARATOR) if text else [] for text in column]


def read_selected(run_dir: Path) -> pd.DataFrame:
    """A run's selected.csv as (cycle, pool_index, classes); classes = list of class names, or None when unknown.

    Runs from before the `classes` column take them from a backfilled selected_classes.csv when there is one."""
    path = Path(run_dir) / SELECTED_CSV
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    picks = pd.DataFrame({"cycle": table["cycle"].astype(int), "pool_index": table["pool_index"].astype(int)})
    backfilled = Path(run_dir) / BACKFILLED_CLASSES_CSV
    if "classes" in table.columns:
        picks["classes"] = _split_classes(table["classes"])
    elif backfilled.is_file():
        classes = pd.read_csv(backfilled, dtype=str, keep_default_na=False)
        by_index = dict(zip(classes["pool_index"].astype(int), _split_classes(classes["classes"])))
        picks["classes"] = [by_index.get(i) for i in picks["pool_index"]]
    else:
        picks["classes"] = None
    return picks


def load_selected(cycles: pd.DataFrame) -> pd.DataFrame:
    """The picks of every run in a `loading.load_cycles` frame (needs its run_dir column), with the run's key."""
    frames = []
    for key, run in cycles.groupby([*RUN_KEY, "run_dir"], sort=True):
        if not (Path(key[-1]) / SELECTED_CSV).is_file():
            continue
        frames.append(read_selected(Path(key[-1])).assign(**dict(zip(RUN_KEY, key[:-1]))))
    if not frames:
        return pd.DataFrame(columns=[*RUN_KEY, "cycle", "pool_index", "classes"])
    return pd.concat(frames, ignore_index=True)[[*RUN_KEY, "cycle", "pool_index", "classes"]]


def class_histograms(selected: pd.DataFrame) -> pd.DataFrame:
    """Per run and cycle, how many picked points (objects, for detection) of each class."""
    known = selected[np.array([c is not None for c in selected["classes"]], dtype=bool)]
    objects = known.explode("classes").dropna(subset=["classes"])
    objects = objects[objects["classes"] != ""]
    columns = [*RUN_KEY, "cycle", "class", "count"]
    if objects.empty:
        return pd.DataFrame(columns=columns)
    counts = objects.groupby([*RUN_KEY, "cycle", "classes"]).size().rename("count").reset_index()
    return counts.rename(columns={"classes": "class"})[columns]


def entropy_of_counts(counts) -> float:
    """Shannon entropy (nats) of a histogram."""
    p = np.asarray(counts, dtype=float)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def class_balance(histograms: pd.DataFrame) -> pd.DataFrame:
    """Per task x model x sampler x cycle: class entropy of the picks, mean ± std over seeds, and normalised."""
    columns = [
        "task",
        "model",
        "sampler",
        "cycle",
        "n_seeds",
        "classes_picked",
        "entropy_mean",
        "entropy_std",
        "normalised_entropy",
        "n_classes",
    ]
    if histograms.empty:
        return pd.DataFrame(columns=columns)
    classes_in_experiment = histograms.groupby(["task", "model"])["class"].nunique().rename("n_classes")
    per_run = (
        histograms.groupby([*RUN_KEY, "cycle"])
        .agg(entropy=("count", entropy_of_counts), classes_picked=("class", "nunique"))
        .reset_index()
    )
    table = (
        per_run.groupby(["task", "model", "sampler", "cycle"])
        .agg(
            n_seeds=("seed", "nunique"),
            classes_picked=("classes_picked", "mean"),
            entropy_mean=("entropy", "mean"),
            entropy_std=("entropy", "std"),
        )
        .reset_index()
        .merge(classes_in_experiment.reset_index(), on=["task", "model"])
    )
    max_entropy = table["n_classes"].map(lambda n: math.log(n) if n > 1 else np.nan)  # log(classes): balanced
    table["normalised_entropy"] = table["entropy_mean"] / max_entropy
    return table[columns]


def pick_overlap(selected: pd.DataFrame, samplers: list[str] | None = None) -> pd.DataFrame:
    """Per task x model x seed x cycle (>= 1) and pair of samplers: overlap of that cycle's picks and Jaccard
    of the labeled sets after it. `samplers` orders each pair (default: sorted)."""
    columns = [
        "task",
        "model",
        "seed",
        "cycle",
        "sampler_a",
        "sampler_b",
        "picked",
        "shared",
        "overlap",
        "labeled_jaccard",
    ]
    rows = []
    for (task, model, seed), runs in selected.groupby(["task", "model", "seed"], sort=True):
        picks = {s: r.groupby("cycle")["pool_index"].agg(set) for s, r in runs.groupby("sampler")}
        order = [s for s in samplers if s in picks] if samplers else sorted(picks)
        for a, b in itertools.combinations(order, 2):
            labeled_a, labeled_b = set(), set()
            for cycle in sorted(set(picks[a].index) & set(picks[b].index)):
                labeled_a |= picks[a][cycle]
                labeled_b |= picks[b][cycle]
                if cycle == 0:
                    continue
                shared = len(picks[a][cycle] & picks[b][cycle])
                rows.append(
                    {
                        "task": task,
                        "model": model,
                        "seed": seed,
                        "cycle": int(cycle),
                        "sampler_a": a,
                        "sampler_b": b,
                        "picked": len(picks[a][cycle]),
                        "shared": shared,
                        "overlap": shared / max(len(picks[a][cycle]), 1),
                        "labeled_jaccard": len(labeled_a & labeled_b) / len(labeled_a | labeled_b),
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def overlap_summary(overlap: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of `pick_overlap` per task x model x cycle x pair."""
    columns = [
        "task",
        "model",
        "cycle",
        "sampler_a",
        "sampler_b",
        "n_seeds",
        "overlap_mean",
        "overlap_std",
        "labeled_jaccard_mean",
    ]
    if overlap.empty:
        return pd.DataFrame(columns=columns)
    table = (
        overlap.groupby(["task", "model", "cycle", "sampler_a", "sampler_b"])
        .agg(
            n_seeds=("seed", "nunique"),
            overlap_mean=("overlap", "mean"),
            overlap_std=("overlap", "std"),
            labeled_jaccard_mean=("labeled_jaccard", "mean"),
        )
        .reset_index()
    )
    return table[columns]

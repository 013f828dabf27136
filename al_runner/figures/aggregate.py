"""Aggregation over seeds: the plotted series, the last-cycle summary, wall times, and coverage notes.

Every function takes the frame returned by `loading.load_cycles` (one row per run × cycle).
Standard deviations are sample standard deviations over seeds (ddof=1); with one seed they are NaN.
"""

from __future__ import annotations

import pandas as pd

# one figure per task (and per model, if a task was run with several)
from al_runner.analysis.aubc import EXPERIMENT_KEY, with_t_intervals
from al_runner.figures.labels import CONTROL_SAMPLER, PAPER_SAMPLERS, ordered_samplers, sampler_label

# Diagnostics, not contenders: controls (train like one sampler, select like another) and oracles (read labels).
CONTROLS = (CONTROL_SAMPLER, "entropy_with_module")
ORACLE_PREFIX = "oracle_"


def is_contender(sampler: str) -> bool:
    return sampler not in CONTROLS and not sampler.startswith(ORACLE_PREFIX)


GROUP_KEY = ["task", "model", "sampler"]  # one line / one table row


def _series_over_seeds(cycles: pd.DataFrame, column: str) -> pd.DataFrame:
    rows = cycles.dropna(subset=[column])
    series = (
        rows.groupby([*GROUP_KEY, "cycle"], sort=True)
        .agg(
            n_labeled=("n_labeled", "mean"),
            mean=(column, "mean"),
            std=(column, "std"),
            n_seeds=("seed", "nunique"),
        )
        .reset_index()
    )
    return series


def metric_series(cycles: pd.DataFrame) -> pd.DataFrame:
    """Fig. 4/6/7 lines: per task, model, sampler and cycle, the metric's mean and std over the seeds that reached it.

    Columns: task, model, sampler, cycle, n_labeled, mean, std, n_seeds.
    """
    return _series_over_seeds(cycles, "value")


def ranking_series(cycles: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5 lines: ranking accuracy per cycle, only for runs that have a loss-prediction module (non-empty column)."""
    return _series_over_seeds(cycles, "ranking_accuracy")


def last_common_cycles(cycles: pd.DataFrame) -> pd.DataFrame:
    """Per task × model × sampler: the last cycle reached by *all* its seeds, and the last reached by any.

    With a partial sweep, seeds stop at different cycles; comparing a 3-seed mean at one cycle with a
    1-seed value at a later one would be misleading, so the table uses the last cycle they share.
    """
    seeds_in_group = cycles.groupby(GROUP_KEY)["seed"].nunique().rename("n_seeds")
    seeds_per_cycle = cycles.groupby([*GROUP_KEY, "cycle"])["seed"].nunique().rename("seeds_at_cycle").reset_index()
    seeds_per_cycle = seeds_per_cycle.merge(seeds_in_group.reset_index(), on=GROUP_KEY)
    shared = seeds_per_cycle[seeds_per_cycle["seeds_at_cycle"] == seeds_per_cycle["n_seeds"]]
    result = pd.DataFrame(
        {
            "n_seeds": seeds_in_group,
            "last_cycle": shared.groupby(GROUP_KEY)["cycle"].max(),
            "max_cycle": cycles.groupby(GROUP_KEY)["cycle"].max(),
        }
    ).reset_index()
    return result


def last_cycle_summary(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per task × model × sampler at its last common cycle: metric mean ± std with the 95 % t-interval of
    the mean, seeds, n_labeled, ranking accuracy.

    Groups whose seeds share no cycle at all are left out (see `coverage_notes`).
    """
    last = last_common_cycles(cycles).dropna(subset=["last_cycle"])
    last["last_cycle"] = last["last_cycle"].astype("int64")
    at_last = cycles.merge(
        last[[*GROUP_KEY, "last_cycle"]], left_on=[*GROUP_KEY, "cycle"], right_on=[*GROUP_KEY, "last_cycle"]
    )
    stats = (
        at_last.groupby(GROUP_KEY)
        .agg(
            metric=("metric", lambda names: " / ".join(sorted(set(names)))),
            seeds=("seed", lambda seeds: ",".join(str(seed) for seed in sorted(seeds))),
            n_labeled=("n_labeled", "mean"),
            mean=("value", "mean"),
            std=("value", "std"),
            ranking_accuracy_mean=("ranking_accuracy", "mean"),
            ranking_accuracy_std=("ranking_accuracy", "std"),
        )
        .reset_index()
    )
    summary = last.merge(stats, on=GROUP_KEY)
    summary = with_t_intervals(summary)  # the 95 % t-interval of the mean over seeds, as for AUBC
    summary["partial"] = summary["max_cycle"] > summary["last_cycle"]
    if (summary["n_labeled"] % 1 == 0).all():  # the usual case: all seeds agree on the labeled-set size
        summary["n_labeled"] = summary["n_labeled"].astype("int64")
    return _sort_by_task_then_sampler(summary)


def _sort_by_task_then_sampler(frame: pd.DataFrame) -> pd.DataFrame:
    order = {sampler: rank for rank, sampler in enumerate(ordered_samplers(frame["sampler"]))}
    return (
        frame.assign(_rank=frame["sampler"].map(order))
        .sort_values(["task", "model", "_rank"])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def _select_seconds_that_count(cycles: pd.DataFrame) -> pd.Series:
    """select_s, without the 0 that a run's final cycle records (nothing left to select): it would dilute the mean."""
    final_cycle = cycles.groupby([*GROUP_KEY, "seed"])["cycle"].transform("max")
    no_selection = (cycles["cycle"] == final_cycle) & (cycles["select_s"] == 0)
    return cycles["select_s"].mask(no_selection)


def timing_summary(cycles: pd.DataFrame) -> pd.DataFrame:
    """Mean seconds per cycle in each phase, per task × model × sampler, over all cycles of all seeds."""
    timed = cycles.assign(select_s=_select_seconds_that_count(cycles))
    per_cycle = (
        timed.groupby(GROUP_KEY)
        .agg(
            n_runs=("seed", "nunique"),
            n_cycles=("cycle", "size"),
            train_s=("train_s", "mean"),
            eval_s=("eval_s", "mean"),
            select_s=("select_s", "mean"),
        )
        .reset_index()
    )
    per_run_total = (
        cycles.assign(total_s=cycles[["train_s", "eval_s", "select_s"]].sum(axis=1))
        .groupby([*GROUP_KEY, "seed"])["total_s"]
        .sum()
        .groupby(GROUP_KEY)
        .mean()
        .rename("total_s_per_run")
        .reset_index()
    )
    return _sort_by_task_then_sampler(per_cycle.merge(per_run_total, on=GROUP_KEY))


def missing_paper_samplers(cycles: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """Per task × model, the paper's samplers with no run at all."""
    present = cycles.groupby(EXPERIMENT_KEY)["sampler"].agg(set)
    return {
        key: [sampler for sampler in PAPER_SAMPLERS if sampler not in samplers] for key, samplers in present.items()
    }


def short_runs(cycles: pd.DataFrame) -> pd.DataFrame:
    """Runs that stopped before the furthest run of the same task × model (a sweep still running, or a crash)."""
    per_run = cycles.groupby([*GROUP_KEY, "seed"], as_index=False).agg(
        max_cycle=("cycle", "max"), run_dir=("run_dir", "first")
    )
    per_run["experiment_max_cycle"] = per_run.groupby(EXPERIMENT_KEY)["max_cycle"].transform("max")
    return per_run[per_run["max_cycle"] < per_run["experiment_max_cycle"]].reset_index(drop=True)


def _experiment_name(task: str, model: str) -> str:
    return f"{task} ({model})"


def coverage_notes(cycles: pd.DataFrame, planned: set[tuple[str, str]] = frozenset()) -> list[str]:
    """What is missing or partial, in words, for stdout and results.md. `planned`: the task × model experiments
    whose runs all come from a sweep with a plan (`sweep_plan.planned_experiments`): what they lack is what their
    plan asked for (`sweep_plan.planned_run_notes`), not the paper's five samplers."""
    notes = []
    for (task, model), missing in missing_paper_samplers(cycles).items():
        if missing and (task, model) not in planned:
            labels = ", ".join(sampler_label(sampler) for sampler in missing)
            notes.append(f"{_experiment_name(task, model)}: no runs for {labels} (of the paper's five samplers)")
    for run in short_runs(cycles).itertuples():
        notes.append(
            f"{_experiment_name(run.task, run.model)}: {sampler_label(run.sampler)} seed {run.seed} reached cycle "
            f"{run.max_cycle}, others reached cycle {run.experiment_max_cycle} ({run.run_dir})"
        )
    for row in last_common_cycles(cycles).itertuples():
        if pd.isna(row.last_cycle):
            notes.append(
                f"{_experiment_name(row.task, row.model)}: {sampler_label(row.sampler)}: its seeds share no "
                "cycle; left out of the table"
            )
        elif row.max_cycle > row.last_cycle:
            notes.append(
                f"{_experiment_name(row.task, row.model)}: {sampler_label(row.sampler)}: table uses cycle "
                f"{int(row.last_cycle)}, "
                f"the last one reached by all {row.n_seeds} seeds (some reached cycle {row.max_cycle})"
            )
    notes.extend(_inconsistency_notes(cycles))
    return notes


def _inconsistency_notes(cycles: pd.DataFrame) -> list[str]:
    """Signs that runs with different settings were mixed into one figure."""
    notes = []
    labeled = cycles.groupby([*EXPERIMENT_KEY, "cycle"])["n_labeled"].nunique()
    for (task, model, cycle), count in labeled[labeled > 1].items():
        notes.append(
            f"{_experiment_name(task, model)}: runs disagree on n_labeled at cycle {cycle} (different schedules mixed?)"
        )
    metrics = cycles.groupby(EXPERIMENT_KEY)["metric"].unique()
    for (task, model), names in metrics.items():
        if len(names) > 1:
            notes.append(
                f"{_experiment_name(task, model)}: several metric names in one task: {', '.join(sorted(names))}"
            )
    return notes


def cycle_leaders(cycles: pd.DataFrame) -> pd.DataFrame:
    """Per task × model × cycle: which sampler led, by how much over the runner-up, against the seed spread.

    Only the seeds that *every* sampler at that cycle reached are used (a partial sweep must not compare a
    one-seed mean with a five-seed mean). Every metric here (accuracy, mAP, PCKh) is higher-is-better.
    `spread` is the largest sample std over those seeds among the samplers; `lead_within_spread` is True when
    the lead is smaller than it, i.e. one seed-to-seed std could reorder the two (NA with one seed).
    Samplers tied for the lead are joined by "=" in `leader` (then `runner_up` names the best of the others,
    ties joined the same way). Cycles with fewer than two samplers or no shared seed are left out.
    Controls and oracles are left out (`is_contender`): diagnostics, not contenders, and their sweeps (often run
    later, so partial) must not shrink the seeds the contenders are compared on; `selection_gain_over_control`
    and the paired tests cover them.
    """
    columns = [
        "task",
        "model",
        "cycle",
        "n_labeled",
        "n_seeds",
        "seeds",
        "leader",
        "leader_mean",
        "runner_up",
        "runner_up_mean",
        "lead",
        "spread",
        "lead_within_spread",
    ]
    rows = []
    contenders = cycles[cycles["sampler"].map(is_contender)]
    for (task, model, cycle), at_cycle in contenders.groupby([*EXPERIMENT_KEY, "cycle"], sort=True):
        seed_sets = at_cycle.groupby("sampler")["seed"].agg(set)
        shared = set.intersection(*seed_sets) if len(seed_sets) else set()
        if len(seed_sets) < 2 or not shared:
            continue
        group = (
            at_cycle[at_cycle["seed"].isin(shared)]
            .groupby("sampler")
            .agg(mean=("value", "mean"), std=("value", "std"), n_labeled=("n_labeled", "mean"))
            .reset_index()
        )
        best = group["mean"].max()
        tied = group[group["mean"] == best]  # e.g. cycle 0, where every sampler without the module trained identically
        rest = group[group["mean"] < best]
        second_best = rest["mean"].max() if len(rest) else best
        runners_up = rest[rest["mean"] == second_best] if len(rest) else tied.iloc[1:]
        lead = float(best - second_best)
        spread = float(group["std"].max()) if len(shared) > 1 else float("nan")
        rows.append(
            {
                "task": task,
                "model": model,
                "cycle": int(cycle),
                "n_labeled": float(group["n_labeled"].mean()),
                "n_seeds": len(shared),
                "seeds": ",".join(str(seed) for seed in sorted(shared)),
                "leader": "=".join(ordered_samplers(tied["sampler"])),
                "leader_mean": float(best),
                "runner_up": "=".join(ordered_samplers(runners_up["sampler"])),
                "runner_up_mean": float(second_best),
                "lead": lead,
                "spread": spread,
                "lead_within_spread": bool(lead < spread) if spread == spread else pd.NA,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def paired_differences(cycles: pd.DataFrame, reference: str = "random") -> pd.DataFrame:
    """Per task × model × sampler × cycle: mean ± std over seeds of (sampler − reference) on the same seed.

    The same seed gives every sampler the same initial labeled set and initial weights, so the paired
    difference removes that shared seed-to-seed variation. Only seeds present for both at that cycle count.
    """
    key = [*EXPERIMENT_KEY, "seed", "cycle"]
    ref = cycles[cycles["sampler"] == reference][[*key, "value"]].rename(columns={"value": "reference_value"})
    others = cycles[cycles["sampler"] != reference][[*key, "sampler", "n_labeled", "value"]]
    paired = others.merge(ref, on=key)
    paired = paired.assign(difference=paired["value"] - paired["reference_value"])
    columns = ["task", "model", "sampler", "cycle", "n_labeled", "n_seeds", "mean", "std"]
    if paired.empty:
        return pd.DataFrame(columns=columns)
    table = (
        paired.groupby([*GROUP_KEY, "cycle"])
        .agg(
            n_labeled=("n_labeled", "mean"),
            n_seeds=("seed", "nunique"),
            mean=("difference", "mean"),
            std=("difference", "std"),
        )
        .reset_index()
    )
    return _sort_by_task_then_sampler(table)[columns]  # a multi-column sort is stable: cycles stay in order


def selection_gain_over_control(cycles: pd.DataFrame) -> pd.DataFrame:
    """learning_loss − random_with_module on the same seed, per cycle (empty when either is missing).

    Both train the same module the same way; only the selections differ (the control labels what random
    labels), so this isolates what the module's selections add. learning_loss_mse trains with another
    objective and is left out.
    """
    pair = cycles[cycles["sampler"].isin(["learning_loss", CONTROL_SAMPLER])]
    return paired_differences(pair, reference=CONTROL_SAMPLER)

"""The results table (ours beside the paper's) and the wall-time table, as data frames, CSV and Markdown."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from al_runner.analysis.paper import (
    PAPER_N_LABELED_LAST_CYCLE,
    PAPER_TASKS,
    paper_metric,
    paper_ranking_accuracy,
)
from al_runner.analysis.summary import format_mean_std
from al_runner.figures.labels import PAPER_SAMPLERS, sampler_label
from al_runner.figures.loading import NOT_A_PAPER_TASK

RESULTS_CSV_COLUMNS = [
    "task",
    "model",
    "paper_task",
    "sampler",
    "sampler_label",
    "metric",
    "n_seeds",
    "seeds",
    "last_cycle",
    "max_cycle",
    "n_labeled",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "paper_value",
    "paper_n_labeled",
    "diff_vs_paper",
    "ranking_accuracy_mean",
    "ranking_accuracy_std",
    "paper_ranking_accuracy",
    "paper_ranking_accuracy_approximate",
    "note",
]
TIMING_CSV_COLUMNS = [
    "task",
    "model",
    "sampler",
    "sampler_label",
    "n_runs",
    "n_cycles",
    "train_s",
    "eval_s",
    "select_s",
    "total_s_per_run",
]


def paper_task_for(task: str, paper_task_map: dict[str, str]) -> str | None:
    """The paper task whose numbers apply to this task (`--paper-task imagefolder=cifar10`), or None."""
    mapped = paper_task_map.get(task, task)
    return mapped if mapped in PAPER_TASKS else None


def _row_note(
    task: str,
    sampler: str,
    paper_task: str | None,
    has_paper_value: bool,
    n_labeled: float,
    mapped_to: str | None = None,
) -> str:
    if mapped_to == NOT_A_PAPER_TASK:  # loading.without_generated_data: e.g. experiment=mpii_cpu's stick figures
        return f"no paper value: the '{task}' runs are on generated data, not the paper's dataset"
    if paper_task is None:
        return f"no paper value: '{task}' is not a paper task (map it with --paper-task {task}=cifar10|voc|mpii)"
    if not has_paper_value and sampler not in PAPER_SAMPLERS:
        return f"no paper value: {sampler} is not one of the paper's samplers"
    if not has_paper_value:
        return f"no paper value: the paper reports no last-cycle number for {sampler_label(sampler)}"
    if round(n_labeled) != PAPER_N_LABELED_LAST_CYCLE:
        return f"paper value is at {PAPER_N_LABELED_LAST_CYCLE:,} labeled points, this row at {n_labeled:,.0f}"
    return ""


def results_table(summary: pd.DataFrame, paper_task_map: dict[str, str]) -> pd.DataFrame:
    """`aggregate.last_cycle_summary` plus the paper's value beside each row (NaN where the paper has none)."""
    rows = []
    for row in summary.to_dict("records"):
        paper_task = paper_task_for(row["task"], paper_task_map)
        metric = paper_metric(paper_task, row["sampler"])
        ranking = paper_ranking_accuracy(paper_task, row["sampler"])
        rows.append(
            {
                **row,
                "paper_task": paper_task or "",
                "sampler_label": sampler_label(row["sampler"]),
                "paper_value": metric.value if metric else np.nan,
                "paper_n_labeled": PAPER_N_LABELED_LAST_CYCLE if metric else pd.NA,
                "diff_vs_paper": row["mean"] - metric.value if metric else np.nan,
                "paper_ranking_accuracy": ranking.value if ranking else np.nan,
                "paper_ranking_accuracy_approximate": ranking.approximate if ranking else "",
                "note": _row_note(
                    row["task"],
                    row["sampler"],
                    paper_task,
                    metric is not None,
                    row["n_labeled"],
                    paper_task_map.get(row["task"]),
                ),
            }
        )
    table = pd.DataFrame(rows, columns=RESULTS_CSV_COLUMNS)
    return table.astype({"paper_n_labeled": "Int64"})


def timing_table(timing: pd.DataFrame) -> pd.DataFrame:
    return timing.assign(sampler_label=timing["sampler"].map(sampler_label))[TIMING_CSV_COLUMNS]


# ---------------------------------------------------------------- Markdown


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""

    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(row) for row in rows)])


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_interval(low: float, high: float, digits: int = 4) -> str:
    return "—" if _is_missing(low) or _is_missing(high) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def format_duration(seconds: float) -> str:
    if _is_missing(seconds):
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _task_cell(row: dict) -> str:
    if row["paper_task"] and row["paper_task"] != row["task"]:
        return f"{row['task']} (paper: {row['paper_task']})"
    return row["task"]


def _paper_cell(value: float, approximate: bool = False) -> str:
    if _is_missing(value):
        return "—"
    if approximate:
        return f"≈{value:.2f}"  # only two digits were read off the plot
    return f"{value:.4f}"


def results_markdown_rows(results: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in results.to_dict("records"):
        marks = ("*" if row["max_cycle"] > row["last_cycle"] else "") + ("†" if "labeled points" in row["note"] else "")
        rows.append(
            [
                _task_cell(row),
                row["model"],
                row["sampler_label"],
                row["metric"],
                str(row["n_seeds"]),
                f"{row['last_cycle']}{marks}",
                f"{row['n_labeled']:,.0f}",
                format_mean_std(row["mean"], row["std"]),
                format_interval(row["ci_low"], row["ci_high"]),
                _paper_cell(row["paper_value"]),
                "—" if _is_missing(row["diff_vs_paper"]) else f"{row['diff_vs_paper']:+.4f}",
                format_mean_std(row["ranking_accuracy_mean"], row["ranking_accuracy_std"]),
                _paper_cell(row["paper_ranking_accuracy"], row["paper_ranking_accuracy_approximate"] is True),
            ]
        )
    return rows


RESULTS_MD_HEADERS = [
    "task",
    "model",
    "sampler",
    "metric",
    "seeds",
    "cycle",
    "labeled",
    "ours (mean ± std)",
    "95 % CI of the mean",
    "paper",
    "Δ vs paper",
    "ranking acc. (ours)",
    "ranking acc. (paper)",
]


def results_footnotes(results: pd.DataFrame) -> list[str]:
    """Why a paper cell is empty, and what the marks in the cycle column mean; one line per distinct reason."""
    notes = [
        "Mean ± sample std (ddof=1) over seeds at the last cycle reached by *all* seeds of that row, and the 95 % "
        "Student-t interval of that mean (— for one seed). "
        f"Paper values are at the paper's last cycle ({PAPER_N_LABELED_LAST_CYCLE:,} labeled points); "
        "≈ marks values read off the paper's Fig. 5.",
    ]
    if (results["max_cycle"] > results["last_cycle"]).any():
        notes.append("\\* some seeds of this row went further; the row stops at the last cycle all seeds reached.")
    if results["note"].str.contains("labeled points").any():
        notes.append(
            f"† this row is not at {PAPER_N_LABELED_LAST_CYCLE:,} labeled points, so it is not directly "
            "comparable with the paper's value."
        )
    rows_by_reason: dict[str, list[str]] = {}
    for row in results.to_dict("records"):
        if row["note"].startswith("no paper value"):
            rows_by_reason.setdefault(row["note"], []).append(f"{row['task']} / {row['sampler_label']}")
    for reason, rows in rows_by_reason.items():
        notes.append(f"— in the paper column ({', '.join(rows)}): {reason}.")
    return notes


def timing_markdown_rows(timing: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["task"],
            row["model"],
            row["sampler_label"],
            str(row["n_runs"]),
            str(row["n_cycles"]),
            format_duration(row["train_s"]),
            format_duration(row["eval_s"]),
            format_duration(row["select_s"]),
            format_duration(row["total_s_per_run"]),
        ]
        for row in timing.to_dict("records")
    ]


TIMING_MD_HEADERS = [
    "task",
    "model",
    "sampler",
    "runs",
    "cycles",
    "train / cycle",
    "eval / cycle",
    "select / cycle",
    "total / run",
]


def _tied_samplers_label(names: str) -> str:
    return " = ".join(sampler_label(name) for name in names.split("="))  # "random=entropy" -> "random = entropy"


def leaders_markdown_rows(leaders: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in leaders.to_dict("records"):
        within = row["lead_within_spread"]
        verdict = "—" if pd.isna(within) else ("within one std" if within else "larger than any std")
        rows.append(
            [
                row["task"],
                row["model"],
                str(row["cycle"]),
                f"{row['n_labeled']:,.0f}",
                f"{row['n_seeds']} ({row['seeds']})",
                f"{_tied_samplers_label(row['leader'])} {row['leader_mean']:.4f}",
                f"{_tied_samplers_label(row['runner_up'])} {row['runner_up_mean']:.4f}",
                f"{row['lead']:+.4f}",
                "—" if _is_missing(row["spread"]) else f"{row['spread']:.4f}",
                verdict,
            ]
        )
    return rows


LEADERS_MD_HEADERS = [
    "task",
    "model",
    "cycle",
    "labeled",
    "seeds shared by all samplers",
    "leader (mean)",
    "runner-up (mean)",
    "lead",
    "largest seed std",
    "lead vs spread",
]


def _signed_mean_std(mean: float, std: float) -> str:
    if _is_missing(std):
        return f"{mean:+.4f} (1 seed)"
    return f"{mean:+.4f} ± {std:.4f}"


def paired_markdown_rows(paired: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["task"],
            row["model"],
            sampler_label(row["sampler"]),
            str(row["cycle"]),
            f"{row['n_labeled']:,.0f}",
            str(row["n_seeds"]),
            _signed_mean_std(row["mean"], row["std"]),
        ]
        for row in paired.to_dict("records")
    ]


PAIRED_MD_HEADERS = [
    "task",
    "model",
    "sampler",
    "cycle",
    "labeled",
    "seeds",
    "sampler − random, same seed (mean ± std)",
]


def ranking_markdown_rows(series: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["task"],
            row["model"],
            sampler_label(row["sampler"]),
            str(row["cycle"]),
            f"{row['n_labeled']:,.0f}",
            str(row["n_seeds"]),
            format_mean_std(row["mean"], row["std"], digits=3),
        ]
        for row in series.to_dict("records")
    ]


RANKING_MD_HEADERS = ["task", "model", "sampler", "cycle", "labeled", "seeds", "module ranking accuracy (mean ± std)"]


# ---------------------------------------------------------------- statistics (al_runner.analysis)


def format_p(p: float) -> str:
    """p-values to 3 significant digits; "—" where no test ran (identical on every seed, or one seed)."""
    if _is_missing(p):
        return "—"
    return f"{p:.3g}" if p >= 1e-4 else "<1e-4"


def _pair_label(row: dict) -> str:
    return f"{sampler_label(row['sampler_a'])} − {sampler_label(row['sampler_b'])}"


def _verdict(row: dict) -> str:
    if _is_missing(row["p_t"]):
        return "identical on every seed" if row["n_seeds"] > 1 and row["mean_diff"] == 0 else "no test"
    if row["significant"]:
        return f"**{sampler_label(row['winner'])} better**"
    return "not significant"


SEEDS_SHOWN_UP_TO = 1000  # beyond: a difference no practical sweep can detect


def _seeds_needed(value: float) -> str:
    if _is_missing(value):
        return "—"
    return f"{value:.0f}" if value <= SEEDS_SHOWN_UP_TO else f"> {SEEDS_SHOWN_UP_TO:,}"


def aubc_markdown_rows(summary: pd.DataFrame, wins: pd.DataFrame) -> list[list[str]]:
    record = {(w["task"], w["model"], w["sampler"]): w for w in wins.to_dict("records")}
    rows = []
    for row in summary.to_dict("records"):
        w = record.get((row["task"], row["model"], row["sampler"]))
        rows.append(
            [
                row["task"],
                row["model"],
                sampler_label(row["sampler"]),
                str(row["n_seeds"]),
                f"{row['n_first']:,}–{row['n_last']:,} (cycles {row['first_cycle']}–{row['last_cycle']})",
                format_mean_std(row["mean"], row["std"]),
                format_interval(row["ci_low"], row["ci_high"]),
                "—" if w is None else f"{w['wins']} / {w['losses']} of {w['comparisons']}",
            ]
        )
    return rows


AUBC_MD_HEADERS = [
    "task",
    "model",
    "sampler",
    "seeds",
    "labeled range",
    "AUBC (mean ± std)",
    "95 % CI of the mean",
    "significant wins / losses on AUBC (Holm)",
]


def paired_tests_markdown_rows(tests: pd.DataFrame, with_cycle: bool) -> list[list[str]]:
    rows = []
    for row in tests.to_dict("records"):
        cells = [row["task"], row["model"]]
        if with_cycle:
            cells += [str(row["cycle"]), f"{row['n_labeled']:,.0f}"]
        interval = "" if _is_missing(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        cells += [
            _pair_label(row),
            str(row["n_seeds"]),
            f"{row['mean_diff']:+.4f}{interval}",
            "—" if _is_missing(row["d_z"]) else f"{row['d_z']:+.2f}",
            format_p(row["p_t"]),
            format_p(row["p_t_holm"]),
            format_p(row["p_wilcoxon"]),
            format_p(row["p_wilcoxon_holm"]),
            _seeds_needed(row["seeds_for_power"]),
            "—" if _is_missing(row["detectable_diff"]) else f"{row['detectable_diff']:.4f}",
            _verdict(row),
        ]
        rows.append(cells)
    return rows


PAIRED_TESTS_MD_HEADERS = [
    "a − b",
    "seeds",
    "mean difference [95 % CI]",
    "d_z",
    "p (t)",
    "p Holm (t)",
    "p (Wilcoxon)",
    "p Holm (Wilcoxon)",
    "seeds for 80 % power",
    "detectable at 80 % power",
    "after correction",
]


def penalty_markdown_rows(matrix: pd.DataFrame) -> list[list[str]]:
    rows = []
    for winner, values in matrix.iterrows():
        cells = (
            "·" if loser == winner else "not testable" if pd.isna(values[loser]) else f"{values[loser]:.2f}"
            for loser in matrix.columns
        )
        rows.append([sampler_label(winner), *cells])
    sums = (
        f"**{matrix[c].sum():.2f}**" if matrix[c].drop(c, errors="ignore").notna().any() else "not testable"
        for c in matrix.columns
    )  # a NaN cell adds nothing: Σ over the tested pairs
    rows.append(["**Σ beaten**", *sums])
    return rows


def penalty_md_headers(matrix: pd.DataFrame) -> list[str]:
    return ["row beat column", *(sampler_label(c) for c in matrix.columns)]


def efficiency_markdown_rows(efficiency: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in efficiency.to_dict("records"):
        needed = f"{row['n_labeled_needed']:,.0f}" if row["reached"] else "not reached"
        ratio = f"{row['ratio']:.2f}" if row["reached"] else "—"
        rows.append(
            [
                row["task"],
                row["model"],
                sampler_label(row["sampler"]),
                f"{row['target']:.4f}",
                f"{row['reference_n_labeled']:,.0f}",
                needed,
                ratio,
                _labels_interval(row["ci_low"], row["ci_high"]),
                "—" if _is_missing(row["p_reached"]) else f"{100 * row['p_reached']:.0f} %",
            ]
        )
    return rows


def _labels_interval(low: float, high: float) -> str:
    if _is_missing(low):
        return "—"

    def cell(value: float) -> str:
        return "not reached" if value == float("inf") else f"{value:,.0f}"

    return f"[{cell(low)}, {cell(high)}]"


EFFICIENCY_MD_HEADERS = [
    "task",
    "model",
    "sampler",
    "target (random's final mean)",
    "random's labels",
    "labels needed (interpolated)",
    "ratio to random",
    "95 % bootstrap interval over seeds",
    "reached (share of resamples)",
]


def class_balance_markdown_rows(balance: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["task"],
            row["model"],
            sampler_label(row["sampler"]),
            str(row["cycle"]),
            str(row["n_seeds"]),
            f"{row['classes_picked']:.1f} of {row['n_classes']}",
            format_mean_std(row["entropy_mean"], row["entropy_std"], digits=3),
            "—" if _is_missing(row["normalised_entropy"]) else f"{row['normalised_entropy']:.3f}",
        ]
        for row in balance.to_dict("records")
    ]


CLASS_BALANCE_MD_HEADERS = [
    "task",
    "model",
    "sampler",
    "cycle",
    "seeds",
    "classes picked",
    "class entropy of the picks, nats (mean ± std)",
    "normalised (1 = balanced)",
]


def overlap_markdown_rows(overlap: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["task"],
            row["model"],
            str(row["cycle"]),
            f"{sampler_label(row['sampler_a'])} ∩ {sampler_label(row['sampler_b'])}",
            str(row["n_seeds"]),
            format_mean_std(row["overlap_mean"], row["overlap_std"], digits=3),
            f"{row['labeled_jaccard_mean']:.3f}",
        ]
        for row in overlap.to_dict("records")
    ]


OVERLAP_MD_HEADERS = [
    "task",
    "model",
    "cycle",
    "pair",
    "seeds",
    "shared picks of the cycle (mean ± std)",
    "Jaccard of the labeled sets",
]

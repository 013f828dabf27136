"""The statistics part of results.md: which sampler wins, and how sure we are (numbers: `al_runner.analysis`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from al_runner.analysis.aubc import aubc_per_run, aubc_summary
from al_runner.analysis.efficiency import label_efficiency
from al_runner.analysis.paired import TestSettings, aubc_tests, per_cycle_tests, significant_wins
from al_runner.analysis.paths import PATH_COLUMNS, paired_by_path, path_label
from al_runner.analysis.penalty import CORRECTIONS, penalty_long, penalty_matrix
from al_runner.analysis.queries import class_balance, class_histograms, load_selected, overlap_summary, pick_overlap
from al_runner.figures.labels import ordered_samplers, sampler_label
from al_runner.figures.loading import read_platform
from al_runner.figures.plots import save_figure
from al_runner.figures.statistics import plot_penalty_matrices
from al_runner.figures.tables import (
    AUBC_MD_HEADERS,
    CLASS_BALANCE_MD_HEADERS,
    EFFICIENCY_MD_HEADERS,
    OVERLAP_MD_HEADERS,
    PAIRED_TESTS_MD_HEADERS,
    aubc_markdown_rows,
    class_balance_markdown_rows,
    efficiency_markdown_rows,
    format_p,
    markdown_table,
    overlap_markdown_rows,
    paired_tests_markdown_rows,
    penalty_markdown_rows,
    penalty_md_headers,
)

SETTINGS = TestSettings()  # alpha 0.05 after Holm, 95 % intervals, 80 % power


@dataclass
class StatisticsTables:
    aubc_per_run: pd.DataFrame
    aubc: pd.DataFrame
    aubc_tests: pd.DataFrame
    aubc_wins: pd.DataFrame
    selection_per_run: pd.DataFrame  # AUBC over the selection cycles only (cycle 0 left out)
    selection: pd.DataFrame
    selection_tests: pd.DataFrame
    selection_wins: pd.DataFrame
    per_cycle_tests: pd.DataFrame
    penalty: dict[str, pd.DataFrame]  # correction -> square matrix
    efficiency: pd.DataFrame
    class_histograms: pd.DataFrame
    class_balance: pd.DataFrame
    overlap: pd.DataFrame
    samplers: list[str]
    # AUBC over the selection cycles, a − b per floating-point path (empty when all seeds share one path)
    selection_by_path: pd.DataFrame | None = None

    def aubc_with_wins(self) -> pd.DataFrame:
        """AUBC per task × model × sampler with its significant wins / losses (aubc.csv; `analysis.summary`)."""
        return self.aubc.merge(self.aubc_wins, on=["task", "model", "sampler"], how="left")

    def csvs(self) -> dict[str, pd.DataFrame]:
        return {
            "aubc_per_run.csv": self.aubc_per_run,
            "aubc.csv": self.aubc_with_wins(),
            "paired_tests_aubc.csv": self.aubc_tests,
            "paired_tests_per_cycle.csv": self.per_cycle_tests,
            "aubc_selection_per_run.csv": self.selection_per_run,
            "aubc_selection.csv": self.selection.merge(
                self.selection_wins, on=["task", "model", "sampler"], how="left"
            ),
            "paired_tests_aubc_selection.csv": self.selection_tests,
            "penalty_matrix.csv": self.penalty["none"],
            "penalty_matrix_holm.csv": self.penalty["holm"],
            "penalty_pairs.csv": pd.concat([penalty_long(m, c) for c, m in self.penalty.items()], ignore_index=True),
            "label_efficiency.csv": self.efficiency,
            "query_class_histograms.csv": self.class_histograms,
            "query_class_balance.csv": self.class_balance,
            "query_overlap.csv": self.overlap,
            **(
                {"paired_by_path_aubc_selection.csv": self.selection_by_path}
                if self.selection_by_path is not None and len(self.selection_by_path)
                else {}
            ),
        }


def _by_sampler_order(frame: pd.DataFrame, samplers: list[str], columns=("sampler",)) -> pd.DataFrame:
    if frame.empty:
        return frame
    rank = {s: i for i, s in enumerate(samplers)}
    keys = [f"_rank{i}" for i in range(len(columns))]
    ranked = frame.assign(**{k: frame[c].map(rank) for k, c in zip(keys, columns)})
    sort = [c for c in ("task", "model", "cycle") if c in frame.columns] + keys
    return ranked.sort_values(sort, kind="stable").drop(columns=keys).reset_index(drop=True)


def compute_statistics(cycles: pd.DataFrame) -> StatisticsTables:
    samplers = ordered_samplers(cycles["sampler"])
    per_run = aubc_per_run(cycles)
    on_aubc = aubc_tests(per_run, samplers, SETTINGS)
    selection_per_run = aubc_per_run(cycles, first_cycle=1)
    on_selection = aubc_tests(selection_per_run, samplers, SETTINGS)
    per_cycle = per_cycle_tests(cycles, samplers, SETTINGS)
    selected = load_selected(cycles) if "run_dir" in cycles.columns else _empty_selected()  # no picks: empty frames
    histograms = class_histograms(selected)
    return StatisticsTables(
        aubc_per_run=per_run,
        aubc=_by_sampler_order(aubc_summary(per_run), samplers),
        aubc_tests=on_aubc,
        aubc_wins=significant_wins(on_aubc),
        selection_per_run=selection_per_run,
        selection=_by_sampler_order(aubc_summary(selection_per_run), samplers),
        selection_tests=on_selection,
        selection_wins=significant_wins(on_selection),
        per_cycle_tests=per_cycle,
        penalty={
            c: without_untestable_pairs(penalty_matrix(per_cycle, samplers, c, SETTINGS.alpha), per_cycle)
            for c in CORRECTIONS
        },
        efficiency=_by_sampler_order(label_efficiency(cycles), samplers),
        class_histograms=histograms,
        class_balance=_by_sampler_order(class_balance(histograms), samplers),
        overlap=overlap_summary(pick_overlap(selected, samplers)),
        samplers=samplers,
        selection_by_path=paired_by_path(
            with_run_paths(selection_per_run, cycles).rename(columns={"aubc": "value"}), samplers
        )
        if "run_dir" in cycles.columns
        else pd.DataFrame(columns=PATH_COLUMNS),
    )


def with_run_paths(per_run: pd.DataFrame, cycles: pd.DataFrame) -> pd.DataFrame:
    """per_run (one row per task × model × sampler × seed) with each run's floating-point path (`path_label` of
    its platform.json)."""
    runs = cycles[["task", "model", "sampler", "seed", "run_dir"]].drop_duplicates(["task", "model", "sampler", "seed"])
    runs = runs.assign(path=[path_label(read_platform(Path(d))) for d in runs["run_dir"]]).drop(columns="run_dir")
    return per_run.merge(runs, on=["task", "model", "sampler", "seed"], how="left")


def testable_pairs(per_cycle: pd.DataFrame) -> set[frozenset]:
    """Pairs of samplers that a paired test could compare at some cycle after the first selection: they share
    two seeds or more there. (Cycle 0 does not count: the penalty matrix leaves it out.)"""
    if per_cycle.empty:
        return set()
    rows = per_cycle[(per_cycle["cycle"] >= 1) & (per_cycle["n_seeds"] >= 2)]
    return {frozenset((a, b)) for a, b in zip(rows["sampler_a"], rows["sampler_b"])}


def without_untestable_pairs(matrix: pd.DataFrame, per_cycle: pd.DataFrame) -> pd.DataFrame:
    """The penalty matrix with NaN ("not testable") where the two samplers never shared two seeds at a selection
    cycle: a 0 there would read as "tested, never beaten" (e.g. a one-seed sweep)."""
    testable = testable_pairs(per_cycle)
    masked = matrix.copy()
    for winner in masked.index:
        for loser in masked.columns:
            if winner != loser and frozenset((winner, loser)) not in testable:
                masked.loc[winner, loser] = float("nan")
    return masked


def _empty_selected() -> pd.DataFrame:
    return pd.DataFrame(columns=["task", "model", "sampler", "seed", "cycle", "pool_index", "classes"])


def write_statistics(stats: StatisticsTables, out_dir: Path) -> list[Path]:
    """Every statistics CSV, and the penalty-matrix figure (PNG + PDF) when there are two samplers or more."""
    written = []
    for name, table in stats.csvs().items():
        table.to_csv(out_dir / name, index=name.startswith("penalty_matrix"))
        written.append(out_dir / name)
    if len(stats.samplers) > 1:
        figure = plot_penalty_matrices(
            stats.penalty,
            "How often the row sampler beat the column sampler (per selection cycle, each experiment weighted 1)",
        )
        written += save_figure(figure, out_dir, "penalty_matrix")
    return written


def statistics_sections(stats: StatisticsTables) -> list[str]:
    alpha = SETTINGS.alpha
    sections = [
        "## Which sampler wins: AUBC, paired tests, penalty matrix",
        "What each statistic means and how to read it: `docs/statistics.md`. Every pair of samplers is compared "
        "on the seeds both ran (same seed = same initial labeled set and initial weights). Each experiment × "
        f"cycle, and each experiment's AUBC, is one family: Holm's correction keeps the chance of any false "
        f'"significant" in it below {alpha}. All samplers present enter the families, controls and oracles '
        "included (an `oracle_*` sampler reads labels: a diagnostic, never a method).",
        "### Area under the budget curve (AUBC)",
        "Trapezoid area under metric vs labeled points, divided by the labeled range: the curve's mean height. "
        "Computed over the cycles every run of the experiment reached.",
        markdown_table(AUBC_MD_HEADERS, aubc_markdown_rows(stats.aubc, stats.aubc_wins))
        if len(stats.aubc)
        else "- no AUBC: the runs share fewer than two cycles",
        "### AUBC over the selection cycles (cycle 0 left out)",
        "Cycle 0 is the random initial set: there samplers differ only in training (with or without the "
        "loss-prediction module). The same area over cycles 1 to the last separates selection quality from that "
        "training cost. " + ranking_change_sentence(stats.aubc, stats.selection),
        markdown_table(AUBC_MD_HEADERS, aubc_markdown_rows(stats.selection, stats.selection_wins))
        if len(stats.selection)
        else "- no AUBC over the selection cycles: the runs share fewer than two of them",
        "### Paired tests on AUBC",
        "Mean of a − b over seeds with the paired t-test's 95 % interval; d_z = mean / std of the differences; "
        "seeds for 80 % power = seeds a paired t-test would need to detect this d_z at alpha 0.05, before any "
        "correction: illustrative only, since the observed d_z of a few seeds is itself a noisy estimate. "
        "Detectable at 80 % power = the smallest |a − b| a paired t-test on these seeds detects with 80 % power at "
        "alpha 0.05 before correction, given the spread of the differences observed: the power these seeds "
        "realise. A non-significant pair whose detectable difference is small rules out large differences; one "
        "whose detectable difference is large says little. " + wilcoxon_floor_sentence(stats.aubc_tests),
        _tests_table(stats.aubc_tests, with_cycle=False),
        "### Paired tests on AUBC over the selection cycles",
        _tests_table(stats.selection_tests, with_cycle=False),
        *by_path_section(stats.selection_by_path),
        "### Paired tests per cycle",
        "Cycle 0 precedes any selection: differences there come from training alone (with or without the "
        "loss-prediction module); pairs that trained alike are identical there and are no test. "
        + family_size_sentence(stats.per_cycle_tests),
        _tests_table(stats.per_cycle_tests, with_cycle=True),
        "### Penalty matrix",
        "Entry = how often the row sampler beat the column sampler significantly: per experiment, each cycle "
        "after the first selection adds 1 / (number of such cycles), so with one experiment an entry is the "
        "fraction of selection cycles. The last row sums each column: how often that sampler was beaten. "
        "Uncorrected (p < 0.05 per cycle, as Ash et al. and Lüth et al. report it) first, then Holm-corrected. "
        "Figure: [penalty_matrix.png](penalty_matrix.png); CSVs: `penalty_matrix.csv`, `penalty_matrix_holm.csv`.",
        *(_penalty_tables(stats) if len(stats.samplers) > 1 else ["- one sampler only: no matrix"]),
        chance_sentence(stats.per_cycle_tests, alpha),
        "### Label efficiency",
        "Labels each sampler needs (mean curve over its seeds, linearly interpolated between cycles) to reach "
        "random's mean metric at random's last cycle; \"not reached\" when its curve never gets there. A point "
        "estimate from mean curves, not a test: the interval is a 95 % percentile bootstrap over the seeds both "
        'samplers ran (resampled together, 2,000 times, fixed generator), "reached" the share of resamples whose '
        "curve gets there at all.",
        markdown_table(EFFICIENCY_MD_HEADERS, efficiency_markdown_rows(stats.efficiency))
        if len(stats.efficiency)
        else "- no random sampler in these runs: no reference to reach",
        "### Query class balance",
        "Class histogram of each cycle's picks (cycle 0 = the random initial set; objects for detection), its "
        "Shannon entropy, and that entropy over log(classes seen in the experiment). Per-run histograms: "
        "`query_class_histograms.csv`.",
        markdown_table(CLASS_BALANCE_MD_HEADERS, class_balance_markdown_rows(stats.class_balance))
        if len(stats.class_balance)
        else "- no class of any pick is recorded (runs from before selected.csv had a "
        "`classes` column, or a task without classes, e.g. pose)",
        "### Overlap of the samplers' picks on the same seed",
        markdown_table(OVERLAP_MD_HEADERS, overlap_markdown_rows(stats.overlap))
        if len(stats.overlap)
        else "- fewer than two samplers share a seed",
    ]
    return sections


def by_path_section(by_path: pd.DataFrame | None) -> list[str]:
    """The paired AUBC differences (selection cycles) per floating-point path, when the seeds come from several."""
    if by_path is None or by_path.empty:
        return []
    rows = [
        [
            row["task"],
            row["model"],
            f"{sampler_label(row['sampler_a'])} − {sampler_label(row['sampler_b'])}",
            row["path"],
            str(row["n_seeds"]),
            f"{row['mean_diff']:+.4f}"
            + ("" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"),
            format_p(row["p_between_paths"]),
        ]
        for row in by_path.to_dict("records")
    ]
    return [
        "### Paired differences by floating-point path (AUBC over the selection cycles)",
        "These seeds were made on more than one floating-point path (CPU type, ISA, precision, as each run's "
        '`platform.json` records it; "unrecorded" for runs made before it existed). Each seed\'s samplers share '
        "one path, so its difference compares like with like; pooling the seeds assumes the difference does not "
        "depend on the path. Per path: mean a − b with its 95 % t-interval; p between paths: one-way ANOVA of the "
        "per-seed differences across the paths with two seeds or more (few seeds per path give it little power: "
        "read the intervals too).",
        markdown_table(
            ["task", "model", "a − b", "path", "seeds", "mean difference [95 % CI]", "p between paths"], rows
        ),
    ]


def ranking_change_sentence(everything: pd.DataFrame, selection: pd.DataFrame) -> str:
    """Which samplers change rank (by mean AUBC, per experiment) when cycle 0 is left out, in words."""
    changes = []
    for (task, model), rows in everything.groupby(["task", "model"], sort=True):
        other = selection[(selection["task"] == task) & (selection["model"] == model)]
        if other.empty:
            continue
        before = {s: i + 1 for i, s in enumerate(rows.sort_values("mean", ascending=False)["sampler"])}
        after = {s: i + 1 for i, s in enumerate(other.sort_values("mean", ascending=False)["sampler"])}
        moved = [f"{sampler_label(s)} {before[s]} → {after[s]}" for s in before if s in after and before[s] != after[s]]
        if moved:
            changes.append(f"{task} ({model}), rank by mean AUBC with → without cycle 0: " + ", ".join(moved) + ".")
    return " ".join(changes) if changes else "Leaving cycle 0 out changes no sampler's rank by mean AUBC."


def family_size_sentence(per_cycle: pd.DataFrame) -> str:
    """How many pairs each cycle's family holds (identical pairs leave it, so cycle 0's is smaller)."""
    if per_cycle.empty:
        return ""
    tested = per_cycle[per_cycle["p_t"].notna()]
    sizes = tested.groupby("cycle").size()
    listed = ", ".join(f"cycle {c}: {n}" for c, n in sizes.items())
    return f"Pairs per family (tested pairs, per task × model): {listed}." if listed else ""


def chance_sentence(per_cycle: pd.DataFrame, alpha: float) -> str:
    """The uncorrected matrix against what chance alone would give if no sampler differed."""
    tested = per_cycle[(per_cycle["cycle"] >= 1) & per_cycle["p_t"].notna()] if len(per_cycle) else per_cycle
    if tested.empty:
        return ""
    hits = int((tested["p_t"] < alpha).sum())
    return (
        f"Reading the uncorrected matrix: {hits} of the {len(tested)} paired comparisons at selection cycles have "
        f"p < {alpha}; if no sampler differed from any other, about {alpha * len(tested):.1f} would by chance "
        f"alone. The Holm-corrected matrix is the one to draw conclusions from."
    )


def wilcoxon_floor_sentence(tests: pd.DataFrame) -> str:
    """The smallest p the exact two-sided Wilcoxon signed-rank test can give with the seeds these tests had
    (2 / 2^n for n seeds), in words; no paired test at all with one seed."""
    counts = sorted({int(n) for n in tests["n_seeds"] if n >= 2}) if len(tests) else []
    if not counts:
        return "With one seed per pair no paired test can be made (they need two seeds or more)."
    floors = [2.0 / 2**n for n in counts]
    if len(counts) == 1:
        return f"With {counts[0]} seeds the exact Wilcoxon test cannot give p below {floors[0]:.4g}."
    return (
        f"With n seeds the exact Wilcoxon test cannot give p below 2 / 2^n: here {counts[0]}–{counts[-1]} seeds, "
        f"{floors[0]:.4g}–{floors[-1]:.4g}."
    )


def _tests_table(tests: pd.DataFrame, with_cycle: bool) -> str:
    if tests.empty:
        return "- no pair of samplers shares a seed"
    key = ["task", "model"] + (["cycle", "labeled"] if with_cycle else [])
    return markdown_table([*key, *PAIRED_TESTS_MD_HEADERS], paired_tests_markdown_rows(tests, with_cycle))


def _penalty_tables(stats: StatisticsTables) -> list[str]:
    untestable = stats.penalty["none"].isna()
    if untestable.to_numpy().sum() == len(untestable) * (len(untestable) - 1):  # every pair
        return [
            "- not testable: no two samplers share two seeds at a cycle after the first selection (a paired "
            "test needs at least two seeds each); the CSVs leave every cell empty"
        ]
    out = []
    if untestable.to_numpy().any():
        out.append('"not testable": the two samplers never shared two seeds at a selection cycle.')
    for correction, title in (("none", "Uncorrected (p < 0.05 per cycle)"), ("holm", "Holm-corrected")):
        matrix = stats.penalty[correction]
        out += [f"{title}:", markdown_table(penalty_md_headers(matrix), penalty_markdown_rows(matrix))]
    return out

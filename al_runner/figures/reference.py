"""`al-plot --reference DIR`: this sweep against committed reference runs, within the reference's seed spread.

Numbers on CPU depend on the CPU and its instruction set (`al_runner.platform`): a sweep rerun on another machine is
not expected to repeat a reference's accuracies to the last digit, only to fall within their spread over seeds. For
each task, model, sampler and cycle that both have: the mean over seeds here against the reference's mean ± std
(sample std over its seeds), and whether the mean here lies inside that band; and how many (sampler, seed, cycle)
rows are identical, which is what a rerun on the reference's own machine gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from al_runner.figures.loading import load_cycles

CELL = ["task", "model", "sampler", "cycle"]
COMPARISON_CSV = "reference_comparison.csv"


@dataclass
class ReferenceComparison:
    table: pd.DataFrame  # one row per task × model × sampler × cycle both sides have
    identical_rows: int  # (sampler, seed, cycle) rows with the same metric value on both sides
    shared_rows: int  # (sampler, seed, cycle) rows both sides have
    notes: list[str] = field(default_factory=list)

    @property
    def inside(self) -> int:
        return int(self.table["inside"].fillna(False).astype(bool).sum())


def _cells(cycles: pd.DataFrame) -> pd.DataFrame:
    grouped = cycles.groupby(CELL)
    return pd.DataFrame(
        {
            "n_labeled": grouped["n_labeled"].first(),
            "mean": grouped["value"].mean(),
            "std": grouped["value"].std(ddof=1),
            "seeds": grouped["seed"].nunique(),
            "metric": grouped["metric"].first(),
        }
    )


def compare_with_reference(run_roots: list[Path], reference_roots: list[Path]) -> ReferenceComparison:
    here, reference = load_cycles(run_roots).cycles, load_cycles(reference_roots).cycles
    mine, theirs = _cells(here), _cells(reference)
    joined = mine.add_suffix("_here").join(theirs.add_suffix("_ref"), how="inner")
    notes = []
    for name, only in (
        ("reference", mine.index.difference(theirs.index)),
        ("runs", theirs.index.difference(mine.index)),
    ):
        if len(only):
            samplers = sorted({cell[2] for cell in only})
            notes.append(
                f"{len(only)} sampler × cycle cell(s) have no counterpart in the {name}"
                f" (samplers: {', '.join(samplers)}); left out"
            )
    low, high = joined["mean_ref"] - joined["std_ref"], joined["mean_ref"] + joined["std_ref"]
    table = pd.DataFrame(
        {
            "n_labeled": joined["n_labeled_here"],
            "metric": joined["metric_here"],
            "mean_here": joined["mean_here"],
            "seeds_here": joined["seeds_here"],
            "mean_reference": joined["mean_ref"],
            "std_reference": joined["std_ref"],
            "seeds_reference": joined["seeds_ref"],
            "difference": joined["mean_here"] - joined["mean_ref"],
            "inside": ((joined["mean_here"] >= low) & (joined["mean_here"] <= high)).where(joined["std_ref"].notna()),
        }
    ).reset_index()
    rows = here.merge(reference, on=[*CELL, "seed"], suffixes=("_here", "_ref"))
    if table.empty:
        notes.append("no task × model × sampler × cycle in common with the reference: nothing to compare")
    return ReferenceComparison(
        table=table,
        identical_rows=int((rows["value_here"] == rows["value_ref"]).sum()),
        shared_rows=len(rows),
        notes=notes,
    )


def comparison_lines(comparison: ReferenceComparison, reference_roots: list[Path]) -> list[str]:
    """The comparison as printed by al-plot: a table, then one line of totals."""
    roots = ", ".join(str(root) for root in reference_roots)
    lines = [
        f"against the reference runs under {roots} (mean over seeds here vs the reference's mean ± std over its "
        f"seeds; inside = within that band):",
        "| task | model | sampler | cycle | labeled | here | reference | inside |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison.table.itertuples():
        inside = "n/a (1 seed)" if pd.isna(row.inside) else "yes" if row.inside else "no"
        lines.append(
            f"| {row.task} | {row.model} | {row.sampler} | {row.cycle} | {row.n_labeled} | "
            f"{row.mean_here:.4f} ({row.seeds_here}) | {row.mean_reference:.4f} ± {row.std_reference:.4f} "
            f"({row.seeds_reference}) | {inside} |"
        )
    lines.append(
        f"inside the reference's seed spread: {comparison.inside} of {len(comparison.table)} sampler × cycle "
        f"cells; identical (sampler, seed, cycle) rows: {comparison.identical_rows} of "
        f"{comparison.shared_rows} (expect all of them only on the CPU type and torch build the reference "
        f"was made on)"
    )
    lines += [f"note: {note}" for note in comparison.notes]
    return lines


def write_comparison(comparison: ReferenceComparison, out_dir: Path) -> Path:
    path = Path(out_dir) / COMPARISON_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    comparison.table.to_csv(path, index=False, float_format="%.6g")
    return path

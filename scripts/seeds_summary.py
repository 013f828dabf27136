"""The 20-seed CIFAR-10 extension's numbers, worded as docs/results.md and the README quote them, read from the
committed al-plot tables (`outputs/reference/cifar10_cpu_seeds/figures/`). `--write` puts them between the markers
in those two files; tests/test_committed_statistics.py checks that the quoted text is what this script gives, so
the prose cannot fall behind the tables as seeds come in.

    python scripts/seeds_summary.py            # print both texts
    python scripts/seeds_summary.py --write    # after al-plot regenerated the figures: update the two files

Differences are "A − B" in accuracy points (×100), with the paired t-test's 95 % interval over the seeds both
samplers finished; p is the t-test's, Holm within al-plot's family (the per-cycle tests of one cycle, or the AUBC
tests). Nothing here computes a statistic: every number is a cell of the committed tables.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "outputs" / "reference" / "cifar10_cpu_seeds" / "figures"
TARGET_SEEDS = 20  # the goal: about 20 seeds for 80 % power on learn loss vs random (results.md)
SAMPLERS = ("random", "entropy", "learning_loss")
LABEL = {"random": "random", "entropy": "entropy", "learning_loss": "learn loss"}
# (minuend, subtrahend) of each difference quoted, in the order quoted
PAIRS = (("learning_loss", "random"), ("entropy", "random"), ("learning_loss", "entropy"))
MARKERS = {  # file -> name of its block
    REPO / "docs" / "results.md": "results",
    REPO / "README.md": "readme",
}


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- seeds-summary:{name} -->)(.*?)(<!-- /seeds-summary -->)", re.DOTALL)


def signed(x: float, digits: int = 1) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def p_value(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.3f}" if p >= 0.001 else "< 0.001"


def two_figures(x: float) -> str:
    """3.0, 0.55, 12: two significant figures (trailing zero kept), no exponent."""
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def oriented(table: pd.DataFrame, minuend: str, subtrahend: str) -> tuple[pd.DataFrame, float]:
    """The rows of the pair in al-plot's table, and the sign that turns its `sampler_a − sampler_b` into
    `minuend − subtrahend`."""
    rows = table[(table.sampler_a == subtrahend) & (table.sampler_b == minuend)]
    if not rows.empty:
        return rows, -1.0
    return table[(table.sampler_a == minuend) & (table.sampler_b == subtrahend)], 1.0


class Difference:
    """One paired test's row, oriented `minuend − subtrahend` (al-plot writes sampler_a − sampler_b)."""

    def __init__(self, table: pd.DataFrame, minuend: str, subtrahend: str):
        row, sign = oriented(table, minuend, subtrahend)
        if len(row) != 1:
            raise SystemExit(f"no single paired test of {minuend} and {subtrahend} in the table")
        r = row.iloc[0]
        low, high = sorted((sign * r.ci_low, sign * r.ci_high))
        self.minuend, self.subtrahend = minuend, subtrahend
        self.diff, self.low, self.high = sign * r.mean_diff, low, high
        self.n, self.p, self.holm = int(r.n_seeds), float(r.p_t), float(r.p_t_holm)
        self.significant, self.detectable = bool(r.significant), float(r.detectable_diff)

    @property
    def name(self) -> str:
        return f"{LABEL[self.minuend]} − {LABEL[self.subtrahend]}"

    def points(self) -> str:
        return f"{signed(100 * self.diff)} points [{signed(100 * self.low)}, {signed(100 * self.high)}]"


def seeds_text(seeds: list[int]) -> str:
    """[0, 1, 2, 3, 5] -> "0–3, 5"."""
    runs: list[list[int]] = []
    for s in sorted(seeds):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


class Summary:
    def __init__(self, figures: Path = FIGURES):
        runs = pd.read_csv(figures / "aubc_per_run.csv")
        runs = runs[runs.sampler.isin(SAMPLERS)]
        by_seed = runs.groupby("seed").sampler.apply(set)
        self.complete = sorted(int(s) for s, have in by_seed.items() if have >= set(SAMPLERS))
        self.partial = {
            int(s): sorted(have, key=SAMPLERS.index) for s, have in by_seed.items() if s not in self.complete
        }
        per_cycle = pd.read_csv(figures / "paired_tests_per_cycle.csv")
        last = per_cycle[per_cycle.cycle == per_cycle.cycle.max()]
        self.n_labeled = int(last.n_labeled.iloc[0])
        self.last = [Difference(last, a, b) for a, b in PAIRS]
        self.aubc_tests = [Difference(pd.read_csv(figures / "paired_tests_aubc_selection.csv"), a, b) for a, b in PAIRS]
        self.aubc_selection = pd.read_csv(figures / "aubc_selection.csv").set_index("sampler")
        self.aubc_all = pd.read_csv(figures / "aubc.csv").set_index("sampler")
        self.last_cycle = pd.read_csv(figures / "results.csv").set_index("sampler")
        by_path = figures / "paired_by_path_aubc_selection.csv"  # written only when the seeds' paths differ
        self.by_path = pd.read_csv(by_path) if by_path.is_file() else None

    def progress(self) -> str:
        extra = "; ".join(
            f"{', '.join(LABEL[s] for s in samplers)} of seed {seed}" for seed, samplers in sorted(self.partial.items())
        )
        done = f"{len(self.complete)} of {TARGET_SEEDS} seeds complete (seeds {seeds_text(self.complete)})"
        return done + (f", plus {extra}" if extra else "")

    def mean_with_interval(self, table: pd.DataFrame, sampler: str) -> str:
        """ "learn loss 0.574 [0.551, 0.596] (8 seeds)" from a table with mean, ci_low, ci_high, n_seeds."""
        r = table.loc[sampler]
        return f"{LABEL[sampler]} {r['mean']:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] ({int(r.n_seeds)} seeds)"

    def significant(self) -> str:
        found = [d.name for d in self.last if d.significant] + [
            f"{d.name} (AUBC over the selection cycles)" for d in self.aubc_tests if d.significant
        ]
        return ", ".join(found) if found else "none"

    def paths_text(self) -> str:
        """The first pair's AUBC difference (selection cycles) per floating-point path, minuend first, with the
        ANOVA across paths; empty when every seed shares one path."""
        if self.by_path is None:
            return ""
        minuend, subtrahend = PAIRS[0]
        rows, sign = oriented(self.by_path, minuend, subtrahend)
        if rows.empty:
            return ""
        parts = []
        for r in rows.itertuples():
            listed = [int(s) for s in str(r.seeds).split(",")]
            seeds = ("seeds " if len(listed) > 1 else "seed ") + seeds_text(listed)
            interval = (
                ""
                if pd.isna(r.ci_low)
                else " [" + ", ".join(signed(100 * v) for v in sorted((sign * r.ci_low, sign * r.ci_high))) + "]"
            )
            parts.append(f"{r.path} ({seeds}) {signed(100 * sign * r.mean_diff)}{interval}")
        p = rows.p_between_paths.iloc[0]
        test = (
            "no test (fewer than two paths with two seeds)"
            if pd.isna(p)
            else f"one-way ANOVA across the paths with two seeds or more p {p_value(p)}"
        )
        return (
            f" Split by floating-point path (AUBC over the selection cycles, {LABEL[minuend]} − {LABEL[subtrahend]}, "
            f"points): " + "; ".join(parts) + f"; {test}."
        )

    def results_text(self) -> str:
        first, *others = self.last
        tests = (
            f"at {self.n_labeled:,} labels {first.name} is {first.points()} over {first.n} seeds "
            f"(p {p_value(first.p)}, Holm {p_value(first.holm)}), "
            + ", ".join(f"{d.name} {d.points()} over {d.n} (Holm {p_value(d.holm)})" for d in others)
        )
        accuracy = "; ".join(self.mean_with_interval(self.last_cycle, s) for s in SAMPLERS)
        selection = "; ".join(self.mean_with_interval(self.aubc_selection, s) for s in SAMPLERS)
        every = "; ".join(self.mean_with_interval(self.aubc_all, s) for s in SAMPLERS)
        detectable = ", ".join(f"{two_figures(100 * d.detectable)} points for {d.name}" for d in self.aubc_tests)
        return (
            f"{self.progress()}. Accuracy at {self.n_labeled:,} labels (mean, 95 % interval): {accuracy}. "
            f"Paired differences: {tests}. AUBC over the "
            f"selection cycles: {selection}; over all cycles, cycle 0 included: {every}. Significant after Holm: "
            f"{self.significant()}. With the spread observed, a paired t-test on these seeds detects (80 % power, "
            f"alpha 0.05) an AUBC difference over the selection cycles of {detectable}." + self.paths_text()
        )

    def readme_text(self) -> str:
        d = self.last[0]
        verdict = "significant" if d.significant else "still undecided"
        return (
            f"{len(self.complete)} of {TARGET_SEEDS} seeds in: {d.name} at {self.n_labeled:,} labels "
            f"{d.points()}, Holm {p_value(d.holm)}, {verdict}"
        )

    def texts(self) -> dict[str, str]:
        return {"results": self.results_text(), "readme": self.readme_text()}


def quoted(path: Path, name: str) -> str:
    match = block_pattern(name).search(path.read_text(encoding="utf-8"))
    if match is None:
        raise SystemExit(f"{path} has no <!-- seeds-summary:{name} --> ... <!-- /seeds-summary --> block")
    return match.group(2)


def write(texts: dict[str, str]) -> list[Path]:
    changed = []
    for path, name in MARKERS.items():
        quoted(path, name)  # refuse before writing anything if a block is missing
        old = path.read_text(encoding="utf-8")
        new = block_pattern(name).sub(lambda m: m.group(1) + texts[name] + m.group(3), old, count=1)
        if new != old:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", type=Path, default=FIGURES, help="al-plot's output folder for the sweep")
    parser.add_argument("--write", action="store_true", help="update the blocks in docs/results.md and README.md")
    args = parser.parse_args(argv)
    texts = Summary(args.figures).texts()
    if args.write:
        changed = write(texts)
        print("updated: " + (", ".join(str(p.relative_to(REPO)) for p in changed) or "nothing (already current)"))
    else:
        for name, text in texts.items():
            print(f"[{name}]\n{text}\n")


if __name__ == "__main__":
    sys.exit(main())

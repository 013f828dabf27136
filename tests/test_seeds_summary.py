"""scripts/seeds_summary.py: the 20-seed sweep's numbers quoted in docs/results.md and the README are the committed
al-plot tables', worded with the right sign."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import load_script

seeds_summary = load_script("seeds_summary")

TEST_COLUMNS = ["n_seeds", "mean_diff", "ci_low", "ci_high", "p_t", "p_t_holm", "significant", "detectable_diff"]


@pytest.mark.parametrize("path,name", list(seeds_summary.MARKERS.items()), ids=lambda v: getattr(v, "name", v))
def test_the_quoted_numbers_are_those_of_the_committed_tables(path, name):
    assert seeds_summary.quoted(path, name) == seeds_summary.Summary().texts()[name], (
        f"{path.name} quotes other numbers than outputs/reference/cifar10_cpu_seeds/figures/: "
        "run `python scripts/seeds_summary.py --write` after regenerating the figures"
    )


def paired(rows: list[tuple], **extra) -> pd.DataFrame:
    """rows: (sampler_a, sampler_b, n, mean_diff a − b, ci_low, ci_high, p, holm, significant, detectable)."""
    table = pd.DataFrame(rows, columns=["sampler_a", "sampler_b", *TEST_COLUMNS])
    return table.assign(**extra)


def write_figures(folder: Path) -> Path:
    folder.mkdir()
    per_run = [(s, seed) for seed in (0, 1) for s in ("random", "entropy", "learning_loss")] + [("random", 2)]
    pd.DataFrame(per_run, columns=["sampler", "seed"]).assign(aubc=0.5).to_csv(folder / "aubc_per_run.csv")
    last = [
        # al-plot's orientation: sampler_a − sampler_b; random − learn loss = −2 points, so learn loss − random = +2
        ("random", "learning_loss", 2, -0.02, -0.03, -0.01, 0.004, 0.012, True, 0.05),
        ("random", "entropy", 2, -0.001, -0.004, 0.002, 0.5, 0.6, False, 0.05),
        ("learning_loss", "entropy", 2, 0.019, 0.005, 0.033, 0.2, 0.4, False, 0.05),
    ]
    first = [(a, b, 2, 0.0, 0.0, 0.0, 1.0, 1.0, False, 0.0) for a, b, *_ in last]
    pd.concat(
        [paired(first, cycle=0, n_labeled=1000), paired(last, cycle=1, n_labeled=1500)], ignore_index=True
    ).to_csv(folder / "paired_tests_per_cycle.csv", index=False)
    paired([(a, b, 2, 0.0, -0.01, 0.01, 0.9, 0.9, False, 0.123) for a, b, *_ in last]).to_csv(
        folder / "paired_tests_aubc_selection.csv", index=False
    )
    for name, mean in (("aubc_selection.csv", 0.6), ("aubc.csv", 0.5), ("results.csv", 0.7)):
        pd.DataFrame({"sampler": ["random", "entropy", "learning_loss"], "n_seeds": [3, 2, 2], "mean": mean}).assign(
            ci_low=mean - 0.01, ci_high=mean + 0.01
        ).to_csv(folder / name, index=False)
    return folder


def test_differences_are_worded_minuend_first_with_their_interval_turned_around(tmp_path):
    summary = seeds_summary.Summary(write_figures(tmp_path / "figures"))
    results, readme = summary.results_text(), summary.readme_text()
    assert results.startswith("2 of 20 seeds complete (seeds 0–1), plus random of seed 2.")
    assert (
        "at 1,500 labels learn loss − random is +2.0 points [+1.0, +3.0] over 2 seeds (p 0.004, Holm 0.01)" in results
    )
    assert "entropy − random +0.1 points [−0.2, +0.4] over 2 (Holm 0.60)" in results
    assert "learn loss − entropy +1.9 points [+0.5, +3.3] over 2 (Holm 0.40)" in results
    assert "AUBC over the selection cycles: random 0.600 [0.590, 0.610] (3 seeds)" in results
    assert "Accuracy at 1,500 labels (mean, 95 % interval): random 0.700 [0.690, 0.710] (3 seeds)" in results
    assert "Significant after Holm: learn loss − random." in results
    assert "of 12 points for learn loss − random" in results
    assert (
        readme
        == "2 of 20 seeds in: learn loss − random at 1,500 labels +2.0 points [+1.0, +3.0], Holm 0.01, significant"
    )


def test_write_fills_the_blocks_and_leaves_the_rest(tmp_path, monkeypatch):
    doc = tmp_path / "doc.md"
    doc.write_text("before <!-- seeds-summary:readme -->old<!-- /seeds-summary --> after\n")
    monkeypatch.setattr(seeds_summary, "MARKERS", {doc: "readme"})
    assert seeds_summary.write({"readme": "new"}) == [doc]
    assert doc.read_text() == "before <!-- seeds-summary:readme -->new<!-- /seeds-summary --> after\n"
    assert seeds_summary.write({"readme": "new"}) == []  # already current: nothing rewritten
    doc.write_text("no block\n")
    with pytest.raises(SystemExit, match="no <!-- seeds-summary:readme -->"):
        seeds_summary.write({"readme": "new"})


@pytest.mark.parametrize("seeds,text", [([5, 6], "5–6"), ([0, 1, 2, 3, 5], "0–3, 5"), ([7], "7"), ([1, 3], "1, 3")])
def test_seed_lists_are_ranges(seeds, text):
    assert seeds_summary.seeds_text(seeds) == text


def test_the_split_by_path_is_worded_minuend_first_and_absent_for_one_path(tmp_path):
    figures = write_figures(tmp_path / "figures")
    assert "floating-point path" not in seeds_summary.Summary(figures).results_text()
    pd.DataFrame(
        [  # al-plot's orientation, random − learn loss
            ("random", "learning_loss", "unrecorded", "0,1,2", -0.02, -0.05, 0.01, 0.4),
            ("random", "learning_loss", "Intel Xeon, AVX512, fp32", "9,10", 0.01, -0.03, 0.05, 0.4),
            ("random", "learning_loss", "AMD EPYC, AVX2, fp32", "5", 0.03, None, None, 0.4),
            ("random", "entropy", "unrecorded", "0,1,2", 0.5, 0.4, 0.6, 0.01),
        ],
        columns=["sampler_a", "sampler_b", "path", "seeds", "mean_diff", "ci_low", "ci_high", "p_between_paths"],
    ).to_csv(figures / "paired_by_path_aubc_selection.csv", index=False)
    assert (
        seeds_summary.Summary(figures)
        .results_text()
        .endswith(
            " Split by floating-point path (AUBC over the selection cycles, learn loss − random, points): "
            "unrecorded (seeds 0–2) +2.0 [−1.0, +5.0]; Intel Xeon, AVX512, fp32 (seeds 9–10) −1.0 [−5.0, +3.0]; "
            "AMD EPYC, AVX2, fp32 (seed 5) −3.0; "
            "one-way ANOVA across the paths with two seeds or more p 0.40."
        )
    )

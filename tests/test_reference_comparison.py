"""`al-plot --reference DIR` compares a sweep with committed reference runs within their seed spread (per sampler
and cycle), since on another CPU type the numbers are not expected to repeat digit for digit."""

from __future__ import annotations

from pathlib import Path

import pytest

from al_runner.figures.cli import main as al_plot
from al_runner.figures.reference import COMPARISON_CSV, compare_with_reference
from al_runner.schema import CYCLE_COLUMNS

REPO = Path(__file__).resolve().parent.parent


def write_sweep(root: Path, values: dict[tuple[str, int], list[float]]) -> Path:
    """values: (sampler, seed) -> the metric per cycle."""
    for (sampler, seed), per_cycle in values.items():
        run = root / f"toy-net-{sampler}-seed{seed}-0123456789"
        run.mkdir(parents=True)
        rows = [",".join(CYCLE_COLUMNS)]
        for cycle, value in enumerate(per_cycle):
            rows.append(f"toy,net,{sampler},{seed},{cycle},{100 * (cycle + 1)},accuracy,{value},softmax_entropy,,1,1,1")
        (run / "cycles.csv").write_text("\n".join(rows) + "\n")
    return root


def test_each_sampler_and_cycle_is_placed_against_the_reference_mean_and_std(tmp_path):
    reference = write_sweep(
        tmp_path / "ref",
        {
            ("random", 0): [0.50, 0.70],
            ("random", 1): [0.52, 0.72],
            ("random", 2): [0.54, 0.74],
            ("entropy", 0): [0.50, 0.80],
        },
    )
    runs = write_sweep(
        tmp_path / "runs", {("random", 0): [0.50, 0.80], ("random", 1): [0.53, 0.80], ("random", 2): [0.53, 0.80]}
    )
    comparison = compare_with_reference([runs], [reference])
    table = comparison.table.set_index(["sampler", "cycle"])
    assert table.loc[("random", 0), "mean_reference"] == pytest.approx(0.52)
    assert table.loc[("random", 0), "std_reference"] == pytest.approx(0.02)
    assert bool(table.loc[("random", 0), "inside"]) is True  # 0.52 within 0.52 ± 0.02
    assert bool(table.loc[("random", 1), "inside"]) is False  # 0.80 outside 0.72 ± 0.02
    assert comparison.inside == 1 and len(comparison.table) == 2
    assert (comparison.identical_rows, comparison.shared_rows) == (1, 6)  # random seed 0, cycle 0
    assert any("entropy" in note for note in comparison.notes)  # in the reference only: said, left out

    assert al_plot(["--runs", str(runs), "--out", str(tmp_path / "figs"), "--reference", str(reference)]) == 0
    assert (tmp_path / "figs" / COMPARISON_CSV).is_file()


def test_the_committed_demo_is_inside_its_own_spread_row_for_row():
    demo = REPO / "outputs" / "reference" / "demo"
    comparison = compare_with_reference([demo], [demo])
    assert comparison.inside == len(comparison.table) == 25
    assert comparison.identical_rows == comparison.shared_rows == 75

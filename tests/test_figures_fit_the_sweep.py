"""Figures and reports say what the sweep holds: one style per sampler, the dataset's name in titles, no
statistics claimed from one seed, and only the runs a sweep planned reported as missing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

import al_runner.figures.report as report_module
import al_runner.figures.statistics_report as statistics_report
from al_runner.figures import generate_report
from al_runner.figures.aggregate import metric_series, ranking_series
from al_runner.figures.loading import load_cycles
from al_runner.figures.plots import plot_metric_curves, plot_ranking_accuracy
from tests.test_figures import write_multirun_yaml, write_run

# The samplers with a loss-prediction module in the cifar10_cpu reference sweep (five lines in Fig. 5).
MODULE_SAMPLERS = ["learning_loss", "learning_loss_mse", "hybrid", "entropy_with_module", "random_with_module"]


def _line_styles(ax) -> list[tuple]:
    """(colour, dash pattern) of each legend line: what tells the lines apart."""
    return [
        (line.get_color(), str(line.get_linestyle()), str(line._dash_pattern)) for line in ax.get_legend().get_lines()
    ]


def test_fig5_gives_each_sampler_its_own_colour_and_line_style(tmp_path):
    for sampler in MODULE_SAMPLERS:
        write_run(tmp_path, "cifar10", sampler, 0, [0.5, 0.6, 0.7], ranking=[0.6, 0.65, 0.7])
    ax = plot_ranking_accuracy(ranking_series(load_cycles([tmp_path]).cycles), show_model=False).axes[0]
    styles = _line_styles(ax)
    assert len(styles) == len(MODULE_SAMPLERS)
    assert len(set(styles)) == len(styles), styles


@pytest.mark.parametrize("n_samplers", [10, 17])
def test_learning_curves_never_repeat_a_colour_and_style_whatever_the_number_of_samplers(tmp_path, n_samplers):
    samplers = ["random", "entropy", "coreset", "learning_loss_mse", "learning_loss"]
    samplers += [f"custom_{i:02d}" for i in range(n_samplers - len(samplers))]
    for sampler in samplers:
        write_run(tmp_path, "cifar10", sampler, 0, [0.5, 0.6])
    ax = plot_metric_curves(metric_series(load_cycles([tmp_path]).cycles), title="t", metric="accuracy").axes[0]
    styles = _line_styles(ax)
    assert len(styles) == n_samplers and len(set(styles)) == n_samplers


class SavedFigures(dict):
    """stem -> figure, for every figure the report saved."""

    def title(self, stem: str) -> str:
        figure = self[stem]
        return "\n".join([ax.get_title() for ax in figure.axes] + [figure.get_suptitle()])

    def cell_texts(self, stem: str) -> list[str]:
        return [text.get_text() for ax in self[stem].axes for text in ax.texts]


@pytest.fixture
def saved(monkeypatch) -> SavedFigures:
    """Keeps each figure the report makes instead of writing its PNG and PDF (what these tests read is the
    figure itself; writing the files is most of a report's time)."""
    figures = SavedFigures()

    def capture(figure, out_dir, stem):
        figures[stem] = figure
        return []

    for module in (report_module, statistics_report):
        monkeypatch.setattr(module, "save_figure", capture)
    return figures


def _imagefolder_run(root: Path, sampler: str, seed: int, task_root: str) -> Path:
    run = write_run(
        root, "imagefolder", sampler, seed, [0.5, 0.6], ranking=[0.6, 0.7] if sampler == "learning_loss" else None
    )
    (run / "config.yaml").write_text(f"seed: {seed}\ntask:\n  name: imagefolder\n  root: {task_root}\n")
    return run


def test_titles_name_the_folder_or_the_papers_dataset_never_imagefolder(tmp_path, saved):
    runs = tmp_path / "runs"
    for sampler in ("random", "learning_loss"):
        _imagefolder_run(runs, sampler, 0, "/data/my_images")
    generate_report([runs], tmp_path / "own")
    assert saved.title("fig4_imagefolder").startswith("Learning curve: my_images")
    assert "my_images" in saved.title("fig5_ranking_accuracy")
    assert not any("imagefolder" in saved.title(stem) for stem in saved), {stem: saved.title(stem) for stem in saved}
    generate_report([runs], tmp_path / "mapped", {"imagefolder": "cifar10"})
    assert saved.title("fig4_imagefolder").startswith("Fig. 4: CIFAR-10")
    assert "CIFAR-10" in saved.title("fig5_ranking_accuracy")


def test_a_one_seed_sweep_says_not_testable_and_names_no_seed_count_it_lacks(tmp_path, saved):
    for sampler in ("random", "entropy", "learning_loss"):
        write_run(tmp_path / "runs", "cifar10", sampler, 0, [0.5, 0.6, 0.7])
    out = tmp_path / "out"
    generate_report([tmp_path / "runs"], out)
    matrix = pd.read_csv(out / "penalty_matrix.csv", index_col=0)
    off_diagonal = [matrix.loc[a, b] for a in matrix.index for b in matrix.columns if a != b]
    assert all(pd.isna(value) for value in off_diagonal), matrix  # empty cells, not zeros
    text = (out / "results.md").read_text()
    assert "not testable" in text and "5 seeds" not in text
    assert "no paired test can be made" in text
    cells = saved.cell_texts("penalty_matrix")
    assert cells and set(cells) == {"not\ntestable"}, cells  # no "0" drawn in any cell


def test_the_wilcoxon_floor_sentence_counts_the_sweeps_own_seeds(tmp_path, saved):
    for seed in range(3):
        for sampler, shift in (("random", 0.0), ("entropy", 0.01 * (seed + 1))):
            write_run(tmp_path / "runs", "cifar10", sampler, seed, [0.5, 0.6 + shift, 0.7 + shift])
    generate_report([tmp_path / "runs"], tmp_path / "out")
    text = (tmp_path / "out" / "results.md").read_text()
    assert "With 3 seeds the exact Wilcoxon test cannot give p below 0.25." in text and "5 seeds" not in text
    assert "not testable" not in text  # three seeds: every pair was tested


def test_a_two_sampler_sweep_reports_only_what_its_plan_asked_for(tmp_path, saved):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun_yaml(sweep, {}, ["sampler=random,learning_loss", "seed=0"])
    for sampler in ("random", "learning_loss"):
        write_run(sweep, "cifar10", sampler, 0, [0.5, 0.6])
    report = generate_report([sweep], tmp_path / "out")
    assert not any("no runs for" in note for note in report.notes), report.notes
    assert "no runs" not in saved.title("fig4_cifar10")
    assert "no runs for" not in (tmp_path / "out" / "results.md").read_text()
    # a preset that planned five samplers: the three without runs are named, as planned runs
    write_multirun_yaml(sweep, {"sampler": "random,entropy,coreset,learning_loss_mse,learning_loss", "seed": "0"})
    notes = generate_report([sweep], tmp_path / "out").notes
    assert any(
        "2 of 5 planned runs" in note and "seed 0 (entropy, core-set, learn loss mse)" in note for note in notes
    ), notes
    assert not any("no runs for" in note for note in notes)  # said once, by the plan


def test_a_voc_folder_sweeps_titles_name_its_folder_however_its_root_was_saved(tmp_path, saved):
    runs = tmp_path / "runs"
    for seed, root in enumerate(["${oc.env:AL_RUNNER_TREES,${paths.data}/neon-trees-tiles}", "data/neon-trees-tiles"]):
        run = write_run(runs, "voc_folder", "random", seed, [0.05, 0.1])
        (run / "config.yaml").write_text(f"seed: {seed}\ntask:\n  name: voc_folder\n  root: {root}\n")
    generate_report([runs], tmp_path / "figures")
    stem = next(stem for stem in saved if stem.endswith("_voc_folder"))  # fig4 here: the helper writes accuracy
    assert saved.title(stem).startswith("Learning curve: neon-trees-tiles\n"), saved.title(stem)

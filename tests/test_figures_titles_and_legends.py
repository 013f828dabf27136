"""`al-plot` on any sweep, honest titles, captions, ticks and legends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from al_runner.figures import generate_report
from al_runner.figures.aggregate import metric_series, ranking_series
from al_runner.figures.cli import build_parser, main
from al_runner.figures.loading import load_cycles
from al_runner.figures.loss_scatter import Fig8Data, Fig8Run
from al_runner.figures.plots import experiment_title, plot_loss_scatter, plot_metric_curves, plot_ranking_accuracy
from al_runner.figures.sweep_plan import planned_grid
from tests.test_figures import write_run

REPO = Path(__file__).resolve().parent.parent
TINY = ["task=synthetic", "model=small_cnn", "schedule=smoke", "model.net.width=8", "progress=false"]


# ---------------------------------------------------------------- al-plot on real sweeps and a single run


def al_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def real_outputs(tmp_path_factory) -> Path:
    """Three real outputs of tiny runs: a sweep from plain overrides, one from a preset, one single run."""
    out = tmp_path_factory.mktemp("outputs")
    al_run("-m", *TINY, "sampler=random,learning_loss", "name=plain", f"paths.output={out}", cwd=out)
    al_run(
        "-m",
        "experiment=demo",
        *TINY,
        "seed=0",
        "sampler=entropy,learning_loss",
        "name=preset",
        f"paths.output={out}",
        cwd=out,
    )
    al_run(*TINY, "sampler=learning_loss", "name=single", f"paths.output={out}", cwd=out)
    return out


@pytest.mark.slow  # three real al-run processes (about 30 s on a busy 2-core machine)
@pytest.mark.parametrize("name", ["plain", "preset", "single"])
def test_al_plot_draws_a_sweep_from_overrides_one_from_a_preset_and_a_single_run(real_outputs, name, capsys):
    runs, figures = real_outputs / name, real_outputs / f"{name}-figures"
    assert main(["--runs", str(runs), "--out", str(figures)]) == 0, capsys.readouterr().err
    assert {"fig4_synthetic.png", "fig5_ranking_accuracy.png", "fig8_synthetic.png", "results.md"} <= {
        path.name for path in figures.iterdir()
    }
    assert (name == "single") != (runs / "multirun.yaml").is_file()


def test_a_multirun_yaml_without_sweeper_params_is_read_from_its_command_line(tmp_path):
    path = tmp_path / "multirun.yaml"
    path.write_text(
        "hydra:\n  sweeper:\n    params: null\n  overrides:\n    task:\n    - seed=0,1\n"
        "    - sampler=random,entropy\n    - task=synthetic\n"
    )
    assert planned_grid(path) == {"seed": ["0", "1"], "sampler": ["random", "entropy"]}


def test_al_plot_help_names_its_own_command():
    assert build_parser().format_usage().startswith("usage: al-plot ")
    assert "plot_figures.py" not in build_parser().format_help()


# ---------------------------------------------------------------- only the paper's data is set against the paper


def test_a_detection_curve_on_other_data_is_no_paper_figure(tmp_path):
    write_run(tmp_path / "runs", "voc_synth", "random", 0, [0.01, 0.02], metric="mAP@0.5")
    report = generate_report([tmp_path / "runs"], tmp_path / "out")
    assert "fig6_voc_synth.png" in {path.name for path in report.written}  # a detection curve, like Fig. 6
    assert experiment_title("voc_synth", "ssdlite", show_model=False, figure_number=None) == "Learning curve: voc_synth"
    assert experiment_title("voc", "ssd300", show_model=False, figure_number=6) == "Fig. 6: VOC"


def test_runs_on_generated_mpii_people_get_no_paper_numbers(tmp_path):
    runs = tmp_path / "runs"
    for task_root, generate in (("real", "null"), ("generated", "96")):
        run = write_run(
            runs / task_root,
            "mpii",
            "learning_loss",
            0,
            [0.3, 0.4],
            metric="PCKh@0.5",
            model="hourglass" if generate == "null" else "hourglass_small",
        )
        (run / "config.yaml").write_text(f"seed: 0\ntask:\n  name: mpii\n  generate_people: {generate}\n")
    generated = generate_report([runs / "generated"], tmp_path / "generated")
    results = pd.read_csv(tmp_path / "generated" / "results.csv")
    assert results["paper_value"].isna().all()
    assert results["note"].str.contains("on generated data").all()  # not "map it with --paper-task"
    assert any("generated data (task.generate_people=96)" in note for note in generated.notes)
    generate_report([runs / "real"], tmp_path / "real")
    assert pd.read_csv(tmp_path / "real" / "results.csv")["paper_value"].tolist() == [0.8046]


# ---------------------------------------------------------------- captions, legends, ticks


def test_fig5_names_the_sampler_and_claims_no_std_band_with_one_seed(tmp_path):
    write_run(tmp_path, "cifar10", "learning_loss", 0, [0.5, 0.6], ranking=[0.6, 0.7])
    ax = plot_ranking_accuracy(ranking_series(load_cycles([tmp_path]).cycles), show_model=False).axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["learn loss, 1 seed"]
    assert "no std band" in ax.get_title() and "± 1 std" not in ax.get_title()
    assert not any(len(collection.get_paths()) for collection in ax.collections)  # and draws none


def _display_points(ax) -> np.ndarray:
    return np.vstack([ax.transData.transform(np.column_stack(line.get_data())) for line in ax.lines])


def test_the_learning_curve_legend_covers_no_point(tmp_path):
    for sampler in ("random", "entropy", "coreset", "learning_loss_mse", "learning_loss"):
        write_run(tmp_path, "cifar10", sampler, 0, [0.9, 0.5, 0.1])  # falling curves end in the lower right
    figure = plot_metric_curves(metric_series(load_cycles([tmp_path]).cycles), title="t", metric="accuracy")
    figure.canvas.draw()
    ax = figure.axes[0]
    legend = ax.get_legend().get_window_extent(figure.canvas.get_renderer())
    assert not any(legend.contains(x, y) for x, y in _display_points(ax))


def _overlapping_tick_labels(figure, ax) -> tuple[list[str], list[tuple[str, str]]]:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    low, high = sorted(ax.get_xlim())
    boxes = []
    for locations, labels in (
        (ax.xaxis.get_majorticklocs(), ax.xaxis.get_majorticklabels()),
        (ax.xaxis.get_minorticklocs(), ax.xaxis.get_minorticklabels()),
    ):
        boxes += [
            (label.get_text(), label.get_window_extent(renderer))
            for location, label in zip(locations, labels)
            if low <= location <= high and label.get_text()
        ]
    boxes.sort(key=lambda item: item[1].x0)
    return [text for text, _ in boxes], [
        (a, b) for (a, box_a), (b, box_b) in zip(boxes, boxes[1:]) if box_a.x1 > box_b.x0
    ]


@pytest.mark.parametrize("low,high", [(0.02, 0.5), (0.3, 0.9), (0.9, 1.1), (1e-4, 10.0)])
def test_fig8_log_axis_labels_never_overlap(tmp_path, low, high):
    rng = np.random.default_rng(0)
    real = np.exp(rng.uniform(np.log(low), np.log(high), 300))
    points = pd.DataFrame({"real_loss": real, "predicted_loss": np.log(real), "uncertainty": real * 2})
    top = np.zeros(len(points), dtype=bool)
    top[:60] = True
    data = Fig8Data(Fig8Run("cifar10", "m", 0, [0], tmp_path, "softmax_entropy"), 1, 300, points, top, top, 1.0, 1.0)
    figure = plot_loss_scatter(data, title="Fig. 8")
    for ax in figure.axes:
        labels, overlaps = _overlapping_tick_labels(figure, ax)
        assert len(labels) >= 2 and not overlaps, (labels, overlaps)
        legend = ax.get_legend().get_window_extent(figure.canvas.get_renderer())
        points_on_screen = np.vstack([c.get_offsets() for c in ax.collections])
        assert not any(legend.contains(x, y) for x, y in ax.transData.transform(points_on_screen))


def test_fig8_on_generated_data_says_so_in_its_title():
    from types import SimpleNamespace

    from al_runner.figures.report import _fig8_title

    run = SimpleNamespace(seed=0, seeds_available=[0], task="mpii", model="hourglass_small")
    data = SimpleNamespace(run=run, cycle=2, points=[0] * 10, n_test_points=10)
    assert _fig8_title(data, generated=True).startswith("Fig. 8: MPII (generated data) (hourglass_small)")
    assert _fig8_title(data, generated=False).startswith("Fig. 8: MPII (hourglass_small)")

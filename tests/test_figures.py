"""Figures and tables from synthetic run CSVs whose means and stds are known by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from al_runner.figures import FigureDataError, generate_report
from al_runner.figures.aggregate import (
    coverage_notes,
    cycle_leaders,
    last_cycle_summary,
    metric_series,
    missing_paper_samplers,
    paired_differences,
    ranking_series,
    selection_gain_over_control,
    timing_summary,
)
from al_runner.figures.cli import main
from al_runner.figures.labels import CONTROL_SAMPLER
from al_runner.figures.loading import CYCLES_COLUMNS, load_cycles, read_cycles_csv
from al_runner.figures.loss_scatter import choose_fig8_runs, load_fig8_data, top_fraction_mask
from al_runner.figures.plots import plot_metric_curves, plot_ranking_accuracy
from al_runner.figures.tables import results_table

MODULE_SAMPLERS = {"learning_loss", "learning_loss_mse"}


def write_run(
    root: Path,
    task: str,
    sampler: str,
    seed: int,
    values: list[float],
    *,
    model: str = "resnet18",
    ranking: list[float] | None = None,
    timings: tuple[float, float, float] = (10.0, 2.0, 3.0),
    metric: str = "accuracy",
) -> Path:
    """One run dir with a cycles.csv: cycle c has 1,000·(c+1) labels; the last cycle selects nothing (select_s 0)."""
    run_dir = root / f"{task}-{sampler}-seed{seed}"
    run_dir.mkdir(parents=True)
    if ranking is None and sampler in MODULE_SAMPLERS:
        ranking = [0.5 + 0.01 * cycle for cycle in range(len(values))]
    train_s, eval_s, select_s = timings
    rows = [
        {
            "task": task,
            "model": model,
            "sampler": sampler,
            "seed": seed,
            "cycle": cycle,
            "n_labeled": 1000 * (cycle + 1),
            "metric": metric,
            "value": value,
            "uncertainty": "softmax_entropy",
            "ranking_accuracy": "" if ranking is None else ranking[cycle],
            "train_s": train_s,
            "eval_s": eval_s,
            "select_s": 0.0 if cycle == len(values) - 1 else select_s,
        }
        for cycle, value in enumerate(values)
    ]
    pd.DataFrame(rows, columns=list(CYCLES_COLUMNS)).to_csv(run_dir / "cycles.csv", index=False)
    return run_dir


def write_test_scores(run_dir: Path, n_points: int, *, cycle: int = 1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    real = np.exp(rng.normal(-2, 1.5, n_points))
    scores = pd.DataFrame(
        {
            "cycle": cycle,
            "test_index": np.arange(n_points),
            "real_loss": real,
            "predicted_loss": np.log(real) + rng.normal(0, 1, n_points),
            "uncertainty": rng.gamma(1.0, 0.3, n_points) + 0.1 * real,
        }
    )
    scores.to_csv(run_dir / "test_scores.csv", index=False)
    return scores


def load(root: Path) -> pd.DataFrame:
    return load_cycles([root]).cycles


# ---------------------------------------------------------------- aggregation


def test_metric_series_is_mean_and_sample_std_over_seeds(tmp_path):
    for seed, values in enumerate([[0.5, 0.6], [0.6, 0.7], [0.7, 0.8]]):
        write_run(tmp_path, "cifar10", "random", seed, values)
    series = metric_series(load(tmp_path)).set_index("cycle")
    assert series.loc[:, "n_labeled"].tolist() == [1000, 2000]
    assert series["mean"].tolist() == pytest.approx([0.6, 0.7])
    assert series["std"].tolist() == pytest.approx([0.1, 0.1])  # sample std (ddof=1) of three values 0.1 apart
    assert series["n_seeds"].tolist() == [3, 3]


def test_cycle_leaders_name_the_leader_its_lead_and_the_seed_spread(tmp_path):
    # cycle 0: entropy 0.60 vs random 0.55 with stds 0.1 -> within spread; cycle 1: LL 0.90 vs entropy 0.70, stds <= 0.1
    for seed, (r, e, ll) in enumerate([([0.5, 0.6], [0.5, 0.6], [0.4, 0.9]), ([0.6, 0.7], [0.7, 0.8], [0.6, 0.9])]):
        write_run(tmp_path, "cifar10", "random", seed, r)
        write_run(tmp_path, "cifar10", "entropy", seed, e)
        write_run(tmp_path, "cifar10", "learning_loss", seed, ll)
    leaders = cycle_leaders(load(tmp_path)).set_index("cycle")
    assert leaders.loc[0, "leader"] == "entropy" and leaders.loc[0, "runner_up"] == "random"
    assert leaders.loc[0, "lead"] == pytest.approx(0.05)
    assert leaders.loc[0, "spread"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert bool(leaders.loc[0, "lead_within_spread"]) is True
    assert leaders.loc[1, "leader"] == "learning_loss" and leaders.loc[1, "runner_up"] == "entropy"
    assert leaders.loc[1, "lead"] == pytest.approx(0.2)
    assert bool(leaders.loc[1, "lead_within_spread"]) is False
    assert leaders["n_seeds"].tolist() == [2, 2]
    write_run(tmp_path, "cifar10", "random", 2, [0.9, 0.9])  # a seed the others have not reached is left out
    assert cycle_leaders(load(tmp_path))["leader_mean"].tolist() == pytest.approx([0.6, 0.9])
    # the control neither leads nor shrinks the shared seeds, even when it has only one seed and beats everyone
    write_run(tmp_path, "cifar10", CONTROL_SAMPLER, 0, [0.99, 0.99])
    with_control = cycle_leaders(load(tmp_path))
    assert with_control["leader_mean"].tolist() == pytest.approx([0.6, 0.9])
    assert with_control["n_seeds"].tolist() == [2, 2]


def test_cycle_leaders_show_ties_and_no_verdict_from_one_seed(tmp_path):
    from al_runner.figures.tables import leaders_markdown_rows

    write_run(tmp_path, "cifar10", "random", 0, [0.5, 0.6])
    write_run(tmp_path, "cifar10", "entropy", 0, [0.5, 0.7])
    write_run(tmp_path, "cifar10", "learning_loss", 0, [0.45, 0.65])
    leaders = cycle_leaders(load(tmp_path)).set_index("cycle")
    assert leaders.loc[0, "leader"] == "random=entropy" and leaders.loc[0, "runner_up"] == "learning_loss"
    assert leaders.loc[0, "lead"] == pytest.approx(0.05)
    rows = leaders_markdown_rows(leaders.reset_index())
    assert rows[0][5] == "random = entropy 0.5000" and rows[0][-1] == "—"  # one seed: no spread, no verdict
    assert rows[1][5] == "entropy 0.7000" and rows[1][-1] == "—"


def test_paired_differences_pair_samplers_with_random_on_the_same_seed(tmp_path):
    # seed offsets of 0.3 cancel in the paired difference: entropy is +0.02 on every seed
    for seed, offset in enumerate([0.0, 0.3, 0.1]):
        write_run(tmp_path, "cifar10", "random", seed, [0.5 + offset, 0.6 + offset])
        write_run(tmp_path, "cifar10", "entropy", seed, [0.5 + offset, 0.62 + offset])
    write_run(tmp_path, "cifar10", "learning_loss", 1, [0.4, 0.5])  # seed 1 only: pairs with random seed 1
    paired = paired_differences(load(tmp_path))
    entropy = paired[paired["sampler"] == "entropy"].set_index("cycle")
    assert entropy["mean"].tolist() == pytest.approx([0.0, 0.02])
    assert entropy["std"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert entropy["n_seeds"].tolist() == [3, 3]
    ll = paired[paired["sampler"] == "learning_loss"].set_index("cycle")
    assert ll["mean"].tolist() == pytest.approx([0.4 - 0.8, 0.5 - 0.9]) and ll["n_seeds"].tolist() == [1, 1]
    assert "random" not in set(paired["sampler"])


def test_learn_loss_is_paired_with_the_control_on_the_same_seed(tmp_path):
    # control − random is the module's cost (−0.05 on every seed); learn loss − control what selection adds
    for seed, offset in enumerate([0.0, 0.2]):
        write_run(tmp_path, "cifar10", "random", seed, [0.5 + offset, 0.6 + offset])
        write_run(tmp_path, "cifar10", "random_with_module", seed, [0.45 + offset, 0.55 + offset], ranking=[0.6, 0.7])
        write_run(tmp_path, "cifar10", "learning_loss", seed, [0.45 + offset, 0.58 + offset + 0.02 * seed])
        write_run(tmp_path, "cifar10", "learning_loss_mse", seed, [0.4 + offset, 0.5 + offset])
    cycles = load(tmp_path)
    gain = selection_gain_over_control(cycles).set_index("cycle")
    assert set(gain["sampler"]) == {"learning_loss"}  # mse trains another objective: not paired with the control
    assert gain["mean"].tolist() == pytest.approx([0.0, 0.04]) and gain["n_seeds"].tolist() == [2, 2]
    assert gain.loc[1, "std"] == pytest.approx(np.std([0.03, 0.05], ddof=1))
    cost = paired_differences(cycles).set_index(["sampler", "cycle"]).loc["random_with_module", "mean"]
    assert cost.tolist() == pytest.approx([-0.05, -0.05])
    generate_report([tmp_path], tmp_path / "figs")
    assert "## Per cycle: learn loss against the control" in (tmp_path / "figs" / "results.md").read_text()
    assert pd.read_csv(tmp_path / "figs" / "per_cycle_vs_control.csv")["mean"].tolist() == pytest.approx([0.0, 0.04])
    assert selection_gain_over_control(cycles[cycles["sampler"] != "random_with_module"]).empty


def test_no_control_section_without_the_control(tmp_path):
    for sampler in ("random", "learning_loss"):
        write_run(tmp_path, "cifar10", sampler, 0, [0.5, 0.6])
    generate_report([tmp_path], tmp_path / "figs")
    assert "learn loss against the control" not in (tmp_path / "figs" / "results.md").read_text()
    assert not (tmp_path / "figs" / "per_cycle_vs_control.csv").exists()


def test_fig4_lines_are_the_series_in_paper_legend_order(tmp_path):
    write_run(tmp_path, "cifar10", "learning_loss", 0, [0.5, 0.9])
    write_run(tmp_path, "cifar10", "my_sampler", 0, [0.5, 0.7])  # unknown samplers are plotted under their raw name
    write_run(tmp_path, "cifar10", "coreset", 0, [0.4, 0.8])
    write_run(tmp_path, "cifar10", "coreset", 1, [0.6, 0.6])
    series = metric_series(load(tmp_path))
    figure = plot_metric_curves(series, title="Fig. 4: CIFAR-10", metric="accuracy")
    ax = figure.axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["core-set", "learn loss", "my_sampler"]
    coreset = next(line for line in ax.lines if line.get_label() == "core-set")
    assert list(coreset.get_xdata()) == [1000, 2000]
    assert list(coreset.get_ydata()) == pytest.approx([0.5, 0.7])
    assert ax.get_ylabel() == "accuracy"
    assert "seeds per sampler: core-set 2, learn loss 1, my_sampler 1" in ax.get_title().replace("\n", " ")
    band = ax.collections[0].get_paths()[0].vertices[:, 1]  # ±1 std band of core-set: std = 0.1414 at both cycles
    assert band.min() == pytest.approx(0.5 - math.sqrt(0.02)) and band.max() == pytest.approx(0.7 + math.sqrt(0.02))


def test_ranking_series_only_has_module_runs_and_fig5_labels_variants(tmp_path):
    write_run(tmp_path, "cifar10", "random", 0, [0.5, 0.6])
    write_run(tmp_path, "cifar10", "learning_loss", 0, [0.5, 0.6], ranking=[0.6, 0.8])
    write_run(tmp_path, "cifar10", "learning_loss", 1, [0.5, 0.6], ranking=[0.7, 0.9])
    write_run(tmp_path, "cifar10", "learning_loss_mse", 0, [0.5, 0.6], ranking=[0.55, 0.65])
    series = ranking_series(load(tmp_path))
    assert set(series["sampler"]) == MODULE_SAMPLERS
    learn_loss = series[series["sampler"] == "learning_loss"]
    assert learn_loss["mean"].tolist() == pytest.approx([0.65, 0.85])
    assert learn_loss["std"].tolist() == pytest.approx([math.sqrt(0.005)] * 2)
    ax = plot_ranking_accuracy(series, show_model=False).axes[0]
    # one task: the legend names the sampler whose module ranks, the title the task
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "learn loss, 2 seeds",
        "learn loss mse, 1 seed",
    ]
    assert "CIFAR-10" in ax.get_title()


def test_results_table_has_mean_std_seeds_and_paper_value(tmp_path):
    write_run(tmp_path, "cifar10", "learning_loss", 0, [0.5, 0.90], ranking=[0.6, 0.88])
    write_run(tmp_path, "cifar10", "learning_loss", 1, [0.5, 0.92], ranking=[0.6, 0.92])
    write_run(tmp_path, "cifar10", "learning_loss_mse", 0, [0.5, 0.89])
    table = results_table(last_cycle_summary(load(tmp_path)), {}).set_index("sampler")
    row = table.loc["learning_loss"]
    assert (row["n_seeds"], row["seeds"], row["last_cycle"], row["n_labeled"]) == (2, "0,1", 1, 2000)
    assert row["mean"] == pytest.approx(0.91)
    assert row["std"] == pytest.approx(math.sqrt(0.0002))
    # 95 % t-interval of the mean of two seeds: 0.91 ± t(0.975, 1) · std / √2 = 0.91 ± 12.706 · 0.01
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.91 - 0.127062, 0.91 + 0.127062), abs=1e-6)
    assert row["paper_value"] == 0.9101
    assert row["diff_vs_paper"] == pytest.approx(0.91 - 0.9101)
    assert row["ranking_accuracy_mean"] == pytest.approx(0.90)
    assert row["paper_ranking_accuracy"] == 0.9074
    assert "2,000" in row["note"]  # the paper's number is at 10,000 labels, this row is not
    mse = table.loc["learning_loss_mse"]
    assert math.isnan(mse["paper_value"]) and math.isnan(mse["std"]) and math.isnan(mse["ci_low"])  # one seed
    assert "no last-cycle number" in mse["note"]


def test_last_cycle_is_the_last_one_all_seeds_reached(tmp_path):
    write_run(tmp_path, "voc", "entropy", 0, [0.1, 0.2, 0.3], metric="mAP")
    write_run(tmp_path, "voc", "entropy", 1, [0.3, 0.4], metric="mAP")  # still running
    cycles = load(tmp_path)
    row = last_cycle_summary(cycles).iloc[0]
    assert (row["last_cycle"], row["max_cycle"], row["n_seeds"]) == (1, 2, 2)
    assert row["mean"] == pytest.approx(0.3)
    notes = "\n".join(coverage_notes(cycles))
    assert "entropy seed 1 reached cycle 1, others reached cycle 2" in notes
    assert "table uses cycle 1, the last one reached by all 2 seeds" in notes


def test_paper_task_mapping_gives_imagefolder_the_cifar10_column(tmp_path):
    write_run(tmp_path, "imagefolder", "random", 0, [0.5, 0.8])
    summary = last_cycle_summary(load(tmp_path))
    unmapped = results_table(summary, {}).iloc[0]
    assert math.isnan(unmapped["paper_value"]) and "not a paper task" in unmapped["note"]
    mapped = results_table(summary, {"imagefolder": "cifar10"}).iloc[0]
    assert (mapped["paper_task"], mapped["paper_value"]) == ("cifar10", 0.8764)


def test_timing_means_leave_out_the_final_cycles_empty_selection(tmp_path):
    write_run(tmp_path, "cifar10", "random", 0, [0.5, 0.6, 0.7], timings=(10.0, 2.0, 3.0))
    write_run(tmp_path, "cifar10", "random", 1, [0.5, 0.6, 0.7], timings=(20.0, 4.0, 5.0))
    row = timing_summary(load(tmp_path)).iloc[0]
    assert (row["n_runs"], row["n_cycles"]) == (2, 6)
    assert (row["train_s"], row["eval_s"], row["select_s"]) == pytest.approx((15.0, 3.0, 4.0))
    assert row["total_s_per_run"] == pytest.approx(((30 + 6 + 6) + (60 + 12 + 10)) / 2)


# ---------------------------------------------------------------- coverage and bad input


def test_missing_sampler_is_reported_everywhere(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "cifar10", "random", 0, [0.5, 0.6])
    write_run(runs, "cifar10", "learning_loss", 0, [0.5, 0.7])
    assert missing_paper_samplers(load(runs)) == {("cifar10", "resnet18"): ["entropy", "coreset", "learning_loss_mse"]}
    assert main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    expected = "no runs for entropy, core-set, learn loss mse"
    assert expected in capsys.readouterr().out
    assert expected in (tmp_path / "out" / "results.md").read_text()


def test_header_only_cycles_csv_is_skipped_with_a_note(tmp_path):
    write_run(tmp_path, "cifar10", "random", 0, [0.5])
    starting = tmp_path / "just-started"
    starting.mkdir()
    (starting / "cycles.csv").write_text(",".join(CYCLES_COLUMNS) + "\n")
    loaded = load_cycles([tmp_path])
    assert len(loaded.cycles) == 1
    assert any("header only" in note and str(starting) in note for note in loaded.notes)


def test_same_run_in_two_dirs_is_counted_once(tmp_path):
    write_run(tmp_path / "a", "cifar10", "random", 0, [0.5])
    write_run(tmp_path / "b", "cifar10", "random", 0, [0.5, 0.6])
    loaded = load_cycles([tmp_path])
    assert loaded.cycles["cycle"].tolist() == [0, 1]
    assert any("found in 2 directories" in note for note in loaded.notes)


def write_platform(run_dir: Path, **changes) -> None:
    record = {"device": "cpu", "precision": "fp32", "torch": "2.14.1", "cpu_model": "AMD EPYC", "threads": 1}
    (run_dir / "platform.json").write_text(json.dumps(record | changes))


def test_a_seed_whose_runs_mix_floating_point_paths_is_named(tmp_path):
    for seed in (0, 1, 2):
        for sampler in ("random", "entropy", "learning_loss"):
            run_dir = write_run(tmp_path, "cifar10", sampler, seed, [0.5, 0.6])
            if seed == 1 and sampler == "learning_loss":
                write_platform(run_dir, cpu_model="Intel Xeon", precision="bf16")
            elif seed == 2 and sampler == "random":
                continue  # made before platform.json existed: unknown, not a mix
            else:
                write_platform(run_dir)
    notes = [note for note in load_cycles([tmp_path]).notes if "floating-point paths" in note]
    assert len(notes) == 1 and notes[0].startswith("cifar10/resnet18 seed 1:")
    assert "precision: fp32 (entropy), bf16 (learning_loss), fp32 (random)" in notes[0]
    assert "cpu_model: AMD EPYC (entropy), Intel Xeon (learning_loss), AMD EPYC (random)" in notes[0]
    assert "torch" not in notes[0]  # the same in all three


def test_an_unreadable_platform_record_names_the_file(tmp_path):
    run_dir = write_run(tmp_path, "cifar10", "random", 0, [0.5])
    (run_dir / "platform.json").write_text("{not json")
    with pytest.raises(FigureDataError, match="platform.json: not a readable platform record"):
        load_cycles([tmp_path])


GOOD_ROW = "cifar10,resnet18,random,0,0,1000,accuracy,0.5,softmax_entropy,,1.0,1.0,1.0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("task,model,sampler\ncifar10,resnet18,random\n", "missing column(s) seed"),
        (
            ",".join(CYCLES_COLUMNS) + "\n" + GOOD_ROW + "\n" + GOOD_ROW.replace("0.5", "oops") + "\n",
            "column 'value', line 3: unparsable number 'oops'",
        ),
        (
            ",".join(CYCLES_COLUMNS) + "\n" + GOOD_ROW.replace(",0,0,", ",0,,") + "\n",
            "column 'cycle', line 2: value is missing",
        ),
        (",".join(CYCLES_COLUMNS) + "\n" + GOOD_ROW.replace(",0,0,", ",0,1.5,") + "\n", "expected an integer"),
    ],
    ids=["empty", "missing-column", "unparsable", "blank-required", "fractional-cycle"],
)
def test_malformed_cycles_csv_names_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "run" / "cycles.csv"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(FigureDataError) as error:
        read_cycles_csv(path)
    assert str(path) in str(error.value) and message in str(error.value)
    assert main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert str(path) in stderr and "Traceback" not in stderr


def test_no_cycles_csv_names_the_directory(tmp_path, capsys):
    (tmp_path / "sweep" / "job0").mkdir(parents=True)
    with pytest.raises(FigureDataError, match="no cycles.csv found anywhere under .*sweep"):
        load_cycles([tmp_path / "sweep"])
    assert main(["--runs", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 2
    assert str(tmp_path / "sweep") in capsys.readouterr().err


def test_malformed_test_scores_names_the_file(tmp_path):
    run_dir = write_run(tmp_path, "mpii", "learning_loss", 0, [0.5, 0.6])
    (run_dir / "test_scores.csv").write_text("cycle,test_index,real_loss,predicted_loss,uncertainty\n1,0,x,0.1,0.2\n")
    runs, _ = choose_fig8_runs(load(tmp_path))
    with pytest.raises(FigureDataError, match=r"test_scores\.csv: column 'real_loss', line 2"):
        load_fig8_data(runs[0])


# ---------------------------------------------------------------- Fig. 8


def test_fig8_uses_lowest_seed_2000_points_and_numpy_correlation(tmp_path):
    for seed in (3, 1):
        run_dir = write_run(tmp_path, "mpii", "learning_loss", seed, [0.5, 0.6], metric="PCKh@0.5")
        write_test_scores(run_dir, 3000, seed=seed)
    write_run(tmp_path, "mpii", "random", 0, [0.5, 0.6])  # no loss module: not a Fig. 8 candidate
    runs, _ = choose_fig8_runs(load(tmp_path))
    assert [(run.seed, run.seeds_available) for run in runs] == [(1, [1, 3])]
    data = load_fig8_data(runs[0])
    points = data.points
    assert len(points) == 2000 and points["test_index"].is_unique
    original = write_test_scores(tmp_path, 3000, seed=1).set_index("test_index")  # seed 1's file, rebuilt
    assert np.allclose(points["real_loss"], original.loc[points["test_index"], "real_loss"])
    expected = np.corrcoef(points["predicted_loss"], points["real_loss"])[0, 1]
    assert data.predicted_loss_correlation == pytest.approx(expected)
    assert data.uncertainty_correlation == pytest.approx(np.corrcoef(points["uncertainty"], points["real_loss"])[0, 1])
    assert data.predicted_loss_top.sum() == 400
    assert (
        points["predicted_loss"][data.predicted_loss_top].min()
        >= points["predicted_loss"][~data.predicted_loss_top].max()
    )
    assert load_fig8_data(runs[0]).points["test_index"].tolist() == points["test_index"].tolist()  # fixed sampling seed


def test_fig8_ranking_accuracy_counts_every_test_point_of_the_last_cycle(tmp_path):
    run_dir = write_run(tmp_path, "cifar10", "learning_loss", 0, [0.5, 0.6])
    real = np.arange(1.0, 3001.0)
    pd.DataFrame(
        {
            "cycle": 1,
            "test_index": np.arange(3000),
            "real_loss": real,
            "predicted_loss": np.where(np.arange(3000) < 1500, real, -real),  # right order within each half only
            "uncertainty": -real,  # exactly the wrong order
        }
    ).to_csv(run_dir / "test_scores.csv", index=False)
    data = load_fig8_data(choose_fig8_runs(load(tmp_path))[0][0])
    pairs = 3000 * 2999 / 2
    # matching pairs: both in the first half, or both in the second half ordered -real (never), or across: never
    assert data.predicted_loss_ranking_accuracy == pytest.approx((1500 * 1499 / 2) / pairs)
    assert data.uncertainty_ranking_accuracy == 0.0


def test_top_fraction_mask_marks_the_highest_fifth():
    assert top_fraction_mask(np.array([5.0, 1.0, 4.0, 2.0, 3.0])).tolist() == [True, False, False, False, False]


# ---------------------------------------------------------------- end to end


def test_report_writes_every_figure_and_table(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "cifar10", "random", 0, [0.5, 0.6])
    write_run(runs, "cifar10", "random", 1, [0.52, 0.62])
    write_run(runs, "cifar10", "learning_loss", 0, [0.5, 0.7])
    write_test_scores(write_run(runs, "cifar10", "learning_loss", 1, [0.5, 0.7]), 500)
    write_run(runs, "imagefolder", "entropy", 0, [0.4, 0.5])
    out = tmp_path / "out"
    report = generate_report([runs], out, {"imagefolder": "cifar10"})
    expected = (
        {
            f"{stem}.{suffix}"
            for stem in ("fig4_cifar10", "fig4_imagefolder", "fig5_ranking_accuracy", "fig8_cifar10")
            for suffix in ("png", "pdf")
        }
        | {
            "results.md",
            "results.csv",
            "timing.csv",
            "per_cycle_leaders.csv",
            "per_cycle_vs_random.csv",
            "per_cycle_ranking_accuracy.csv",
            "penalty_matrix.png",
            "penalty_matrix.pdf",
        }
        | {
            f"{name}.csv"
            for name in (
                "aubc_per_run",
                "aubc",
                "paired_tests_aubc",
                "aubc_selection_per_run",
                "aubc_selection",
                "paired_tests_aubc_selection",
                "paired_tests_per_cycle",
                "penalty_matrix",
                "penalty_matrix_holm",
                "penalty_pairs",
                "label_efficiency",
                "query_class_histograms",
                "query_class_balance",
                "query_overlap",
            )
        }
    )
    assert {path.name for path in report.written} == expected
    assert {path.name for path in out.iterdir()} == expected
    assert all((out / name).stat().st_size > 0 for name in expected)
    assert (out / "fig4_cifar10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fig8_cifar10.pdf").read_bytes()[:5] == b"%PDF-"
    assert any("learning_loss-seed1" in source and "500 of 500" in source for source in report.fig8_sources)
    results = pd.read_csv(out / "results.csv")
    assert results["sampler"].tolist() == ["random", "learning_loss", "entropy"]
    assert results["paper_value"].tolist() == [0.8764, 0.9101, 0.9059]  # imagefolder gets cifar10's via the mapping
    assert "imagefolder (paper: cifar10)" in (out / "results.md").read_text()
    assert main(["--runs", str(runs), "--out", str(out), "--paper-task", "imagefolder=cifar10"]) == 0
    assert str(out / "fig5_ranking_accuracy.png") in capsys.readouterr().out


# ---------------------------------------------------------------- a partial sweep against its plan


def write_multirun_yaml(sweep: Path, params: dict[str, str], command_line: list[str] = ()) -> None:
    """The two places Hydra's multirun.yaml keeps what was swept: the preset's sweeper params and the command line."""
    lines = ["hydra:", "  sweeper:", "    params:"] + [f"      {key}: {value}" for key, value in params.items()]
    lines += ["  overrides:", "    task:"] + [f"    - {text}" for text in command_line]
    if not command_line:
        lines[-1] = "    task: []"
    (sweep / "multirun.yaml").write_text("\n".join(lines) + "\n")


def test_partial_sweep_names_the_planned_runs_that_have_no_results(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun_yaml(sweep, {"seed": "0,1,2", "sampler": "random,entropy"})
    write_run(sweep, "cifar10", "random", 0, [0.5, 0.6])
    write_run(sweep, "cifar10", "entropy", 0, [0.5, 0.6])
    write_run(sweep, "cifar10", "random", 1, [0.5, 0.6])
    report = generate_report([sweep], tmp_path / "out")
    expected = (
        "3 of 6 planned runs (2 samplers × 3 seeds, from multirun.yaml) have results; "
        "none yet for seed 1 (entropy); seed 2 (all samplers)"
    )
    assert any(expected in note for note in report.notes), report.notes
    assert expected in (tmp_path / "out" / "results.md").read_text()


def test_command_line_sweep_replaces_the_presets_and_ranges_count(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun_yaml(
        sweep, {"seed": "0,1,2,3,4", "sampler": "random,entropy"}, ["seed=range(0,2)", "sampler=random"]
    )
    write_run(sweep, "cifar10", "random", 0, [0.5, 0.6])
    notes = generate_report([sweep], tmp_path / "out").notes
    assert any("1 of 2 planned runs (1 sampler × 2 seeds" in note and "seed 1 (random)" in note for note in notes), (
        notes
    )
    write_run(sweep, "cifar10", "random", 1, [0.5, 0.6])
    assert not any("planned runs" in note for note in generate_report([sweep], tmp_path / "out").notes)


def test_a_sweep_over_other_keys_is_not_checked_against_a_sampler_seed_grid(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun_yaml(sweep, {"seed": "0,1", "model.width": "16,32"})
    write_run(sweep, "cifar10", "random", 0, [0.5, 0.6])
    assert not any("planned runs" in note for note in generate_report([sweep], tmp_path / "out").notes)


def test_run_short_of_its_configured_cycles_is_reported(tmp_path):
    run = write_run(tmp_path, "cifar10", "learning_loss", 3, [0.5])
    (run / "config.yaml").write_text("schedule:\n  cycles: 3\nsampler:\n  name: learning_loss\n")
    notes = generate_report([tmp_path], tmp_path / "out").notes
    assert any("learn loss seed 3: 1 of 3 planned cycles so far" in note for note in notes), notes


def test_unreadable_multirun_yaml_names_the_file(tmp_path):
    write_run(tmp_path, "cifar10", "random", 0, [0.5])
    (tmp_path / "multirun.yaml").write_text("hydra: [unclosed\n")
    with pytest.raises(FigureDataError, match="multirun.yaml: not a readable Hydra multirun.yaml"):
        generate_report([tmp_path], tmp_path / "out")


def test_seeds_from_two_floating_point_paths_get_the_difference_per_path(tmp_path):
    from al_runner.figures.statistics_report import compute_statistics

    for seed in range(4):
        for sampler, gain in (("random", 0.0), ("entropy", 0.01 * (seed + 1))):
            run_dir = write_run(tmp_path, "cifar10", sampler, seed, [0.5, 0.6 + gain, 0.7 + gain])
            if seed >= 2:  # seeds 0-1: made before platform.json existed
                write_platform(run_dir, cpu_model="Intel Xeon", cpu_capability="AVX512")
    by_path = compute_statistics(load_cycles([tmp_path]).cycles).selection_by_path.set_index("path")
    assert by_path["seeds"].to_dict() == {"Intel Xeon, AVX512, fp32": "2,3", "unrecorded": "0,1"}
    # random − entropy over cycles 1-2 is −gain on every cycle
    assert by_path["mean_diff"].to_dict() == pytest.approx({"Intel Xeon, AVX512, fp32": -0.035, "unrecorded": -0.015})
    generate_report([tmp_path], tmp_path / "figures")
    assert (tmp_path / "figures" / "paired_by_path_aubc_selection.csv").is_file()
    assert "Paired differences by floating-point path" in (tmp_path / "figures" / "results.md").read_text()


def test_seeds_of_one_floating_point_path_get_no_split(tmp_path):
    for seed in range(3):
        for sampler in ("random", "entropy"):
            write_platform(write_run(tmp_path, "cifar10", sampler, seed, [0.5, 0.6 + 0.01 * seed, 0.7]))
    generate_report([tmp_path], tmp_path / "figures")
    assert not (tmp_path / "figures" / "paired_by_path_aubc_selection.csv").exists()
    assert "by floating-point path" not in (tmp_path / "figures" / "results.md").read_text()

"""The figure loader splits runs whose saved configs differ into arms (no arm averaged in or dropped)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from al_runner.figures.aggregate import metric_series
from al_runner.figures.loading import CYCLES_COLUMNS, load_cycles


def write_run(root: Path, name: str, sampler: str, seed: int, values: list[float], config: str | None) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    rows = [
        {
            "task": "synthetic",
            "model": "small_cnn",
            "sampler": sampler,
            "seed": seed,
            "cycle": c,
            "n_labeled": 10 * (c + 1),
            "metric": "accuracy",
            "value": v,
            "uncertainty": "softmax_entropy",
            "ranking_accuracy": "",
            "train_s": 1.0,
            "eval_s": 1.0,
            "select_s": 1.0,
        }
        for c, v in enumerate(values)
    ]
    pd.DataFrame(rows, columns=list(CYCLES_COLUMNS)).to_csv(run_dir / "cycles.csv", index=False)
    if config is not None:
        (run_dir / "config.yaml").write_text(config)
    return run_dir


def config(weight: float, seed: int, threads: int | None = None) -> str:
    return (
        f"seed: {seed}\nname: sweep\nruntime:\n  threads: {'null' if threads is None else threads}\n"
        f"schedule:\n  learning_loss:\n    weight: {weight}\n  data_seed: ${{seed}}\n"
        f"paths:\n  output: /somewhere/{seed}\n"
    )


def test_a_sweep_over_the_loss_weight_plots_two_arms(tmp_path):
    for seed in (0, 1):
        write_run(
            tmp_path, f"w1-s{seed}", "learning_loss", seed, [0.5, 0.6 + seed], config(1.0, seed, threads=seed + 1)
        )
        write_run(tmp_path, f"w05-s{seed}", "learning_loss", seed, [0.4, 0.5 + seed], config(0.5, seed))
    loaded = load_cycles([tmp_path])
    arms = sorted(loaded.cycles["sampler"].unique())
    assert arms == [
        "learning_loss [schedule.learning_loss.weight=0.5]",
        "learning_loss [schedule.learning_loss.weight=1.0]",
    ]
    series = metric_series(loaded.cycles)
    last = series[series["cycle"] == 1].set_index("sampler")
    assert last["n_seeds"].tolist() == [2, 2]  # both seeds of both arms kept, none dropped as a duplicate
    assert last.loc["learning_loss [schedule.learning_loss.weight=0.5]", "mean"] == 1.0
    assert last.loc["learning_loss [schedule.learning_loss.weight=1.0]", "mean"] == 1.1
    assert any("weight" in note for note in loaded.notes)


def test_runs_differing_only_in_seed_threads_and_paths_are_one_arm(tmp_path):
    for seed in (0, 1, 2):
        write_run(tmp_path, f"s{seed}", "random", seed, [0.5, 0.6], config(1.0, seed, threads=seed + 1))
    loaded = load_cycles([tmp_path])
    assert loaded.cycles["sampler"].unique().tolist() == ["random"]


def test_runs_without_saved_config_still_load(tmp_path):
    write_run(tmp_path, "a", "random", 0, [0.5], None)
    write_run(tmp_path, "b", "random", 1, [0.7], None)
    assert load_cycles([tmp_path]).cycles["sampler"].unique().tolist() == ["random"]


def test_a_data_root_written_as_its_interpolation_or_as_the_path_it_pinned_is_one_arm(tmp_path):
    roots = ["${oc.env:AL_RUNNER_CIFAR10_JPG,${paths.data}/cifar10-jpg}", "/data/cifar10-jpg", "../cifar10-jpg/"]
    for seed, root in enumerate(roots):
        write_run(tmp_path, f"s{seed}", "random", seed, [0.5, 0.6], config(1.0, seed) + f"task:\n  root: {root}\n")
    assert load_cycles([tmp_path]).cycles["sampler"].unique().tolist() == ["random"]


def test_runs_on_two_data_folders_are_two_arms_and_their_figure_saves(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        for folder in ("flowers", "cifar10-jpg"):
            root = f"${{oc.env:ROOT,/data/{folder}}}"
            cfg = config(1.0, seed) + f"task:\n  root: {root}\n"
            write_run(runs, f"{folder}-s{seed}", "random", seed, [0.5, 0.6 + seed], cfg)
    loaded = load_cycles([runs])
    assert sorted(loaded.cycles["sampler"].unique()) == [
        "random [task.root=…/cifar10-jpg]",
        "random [task.root=…/flowers]",
    ]

    from al_runner.figures.report import generate_report

    # a `$` in a label (config text) is printed as written, never parsed as matplotlib mathtext
    write_run(
        runs, "dollar-s0", "entropy", 0, [0.5, 0.6], config(1.0, 0) + "task:\n  note: ${oc.env:X,${paths.data}/a}\n"
    )
    write_run(runs, "dollar-s1", "entropy", 1, [0.5, 0.6], config(1.0, 1) + "task:\n  note: b\n")
    report = generate_report([runs], tmp_path / "figures")
    assert "entropy [task.note=${oc.env:X,${paths.data}/a}]" in (tmp_path / "figures" / "results.md").read_text()
    assert any(path.suffix == ".png" for path in report.written)


def test_a_run_from_before_a_runtime_key_existed_is_one_arm_with_a_run_that_keeps_its_default(tmp_path):
    write_run(tmp_path, "old", "random", 0, [0.5, 0.6], config(1.0, 0))
    new = config(1.0, 1).replace("runtime:\n", "runtime:\n  loss_module: eager\n  cuda_graph: false\n")
    write_run(tmp_path, "new", "random", 1, [0.5, 0.7], new)
    fused = config(1.0, 2).replace("runtime:\n", "runtime:\n  loss_module: fused\n  cuda_graph: false\n")
    write_run(tmp_path, "fused", "random", 2, [0.5, 0.8], fused)
    seeds = load_cycles([tmp_path]).cycles.groupby("sampler")["seed"].unique().map(sorted).to_dict()
    assert seeds == {"random [runtime.loss_module=eager]": [0, 1], "random [runtime.loss_module=fused]": [2]}


def with_amp(text: str, amp: str, cpu_models: str | None = None) -> str:
    extra = f"  amp: {amp}\n" + (f"  amp_cpu_models: {cpu_models}\n" if cpu_models is not None else "")
    return text.replace("runtime:\n", "runtime:\n" + extra)


def write_precision(run_dir: Path, precision: str) -> None:
    (run_dir / "platform.json").write_text(f'{{"device": "cpu", "precision": "{precision}"}}')


def test_runs_are_told_apart_by_the_precision_they_ran_in_not_by_how_it_was_asked_for(tmp_path):
    # seed 0: amp auto before platform.json existed; seed 1: auto, recorded fp32; seed 2: amp=false with the newer
    # amp_cpu_models key: one arm (all fp32, or not recorded)
    write_run(tmp_path, "old", "random", 0, [0.5, 0.6], with_amp(config(1.0, 0), "auto"))
    write_precision(write_run(tmp_path, "auto", "random", 1, [0.5, 0.7], with_amp(config(1.0, 1), "auto")), "fp32")
    explicit = with_amp(config(1.0, 2), "false", "[]")
    write_precision(write_run(tmp_path, "false", "random", 2, [0.5, 0.8], explicit), "fp32")
    assert load_cycles([tmp_path]).cycles["sampler"].unique().tolist() == ["random"]
    # seed 3 in bf16: now the precision splits, and the run that recorded none is an arm of its own
    bf16 = with_amp(config(1.0, 3), "true", "[]")
    write_precision(write_run(tmp_path, "true", "random", 3, [0.5, 0.9], bf16), "bf16")
    loaded = load_cycles([tmp_path])
    seeds = loaded.cycles.groupby("sampler")["seed"].unique().map(sorted).to_dict()
    assert seeds == {
        "random [precision=bf16]": [3],
        "random [precision=fp32]": [1, 2],
        "random [precision=not recorded]": [0],
    }
    assert any("runs differ in precision" in note for note in loaded.notes)

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

"""The module-steps pilot (scripts/pilot_module_steps.py) at toy size on a real on-disk ImageFolder tree."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from al_runner.errors import ConfigError
from tests.conftest import load_script

TRAIN_PER_CLASS, TEST_PER_CLASS, SIZE = 16, 4, 16
TINY = ("schedule.batch_size=8", "schedule.eval_batch_size=8")  # 16 training images -> 2 batches per epoch


@pytest.fixture(scope="module")
def pilot():
    return load_script("pilot_module_steps")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """40 PNGs: train/{red,blue}/ 16 each, test/{red,blue}/ 4 each; the class shows in the dominant channel."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for channel, name in ((0, "blue"), (2, "red"))[::-1]:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 120, (SIZE, SIZE, 3), dtype=np.uint8)
                image[..., channel] += 120
                Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


def run(pilot, tree: Path, out: Path, seeds=(0,)):
    return pilot.run_pilot(
        out,
        widths=[8],
        epochs=[2],
        seeds=list(seeds),
        train_size=16,
        heldout_size=8,
        data_root=str(tree),
        threads=1,
        overrides=TINY + (f"paths.cache={tree.parent / 'cache'}",),
    )


def read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_held_out_images_come_from_the_train_split_disjoint_and_fixed_per_seed(pilot, tree):
    cfg = pilot.compose_pilot_config(
        8, 2, 0, "with", data_root=str(tree), overrides=(f"paths.cache={tree.parent / 'c'}",)
    )
    data = pilot.load_pool(cfg)
    train_idx, heldout_idx = pilot.split_pool(data.train_images.shape[0], 0, 16, 8)
    assert set(train_idx.tolist()).isdisjoint(heldout_idx.tolist())
    again = pilot.split_pool(data.train_images.shape[0], 0, 16, 8)
    assert torch.equal(train_idx, again[0]) and torch.equal(heldout_idx, again[1])
    assert not torch.equal(train_idx, pilot.split_pool(data.train_images.shape[0], 1, 16, 8)[0])
    task, on_train = pilot.pilot_tasks(cfg, data, train_idx, heldout_idx)
    # what evaluate() calls "test" is held-out TRAIN-split images, never the tree's test split
    assert torch.equal(task.data.test_images, data.train_images[heldout_idx])
    assert torch.equal(task.data.train_images, data.train_images[train_idx])
    assert torch.equal(on_train.data.test_images, data.train_images[train_idx])
    with pytest.raises(ConfigError, match="must be >= 2 each and fit"):
        pilot.split_pool(32, 0, 30, 8)


def test_rows_resume_and_summary(pilot, tree, tmp_path):
    out = tmp_path / "pilot" / "pilot.csv"
    assert run(pilot, tree, out) == 2
    rows = read(out)
    assert [(r["width"], r["epochs"], r["seed"], r["arm"]) for r in rows] == [
        ("8", "2", "0", "with"),
        ("8", "2", "0", "without"),
    ]
    with_, without = rows
    assert with_["batches_per_epoch"] == "2" and with_["steps"] == "4" and with_["module_steps"] == "4"
    assert without["module_steps"] == "0" and without["heldout_ranking_accuracy"] == ""
    assert with_["detach_epoch"] == "1" and with_["lr_step_epoch"] == "2"  # round(0.6 * 2), round(0.8 * 2)
    assert 0.0 <= float(with_["heldout_ranking_accuracy"]) <= 1.0
    for row in rows:
        assert 0.0 <= float(row["heldout_accuracy"]) <= 1.0 and row["heldout_size"] == "8"
        assert 0.0 <= float(row["train_median_loss"]) < 50.0  # width 8 can fit the two-colour toy set exactly
    # the same rows again: nothing retrained, nothing duplicated
    assert run(pilot, tree, out) == 0
    assert read(out) == rows
    # one more seed: only its two rows are trained and appended
    assert run(pilot, tree, out, seeds=(0, 1)) == 2
    assert [(r["seed"], r["arm"]) for r in read(out)] == [
        ("0", "with"),
        ("0", "without"),
        ("1", "with"),
        ("1", "without"),
    ]
    with pytest.raises(ConfigError, match="train_size 16"):
        pilot.run_pilot(out, [8], [2], [0], train_size=12, heldout_size=8)

    md, png = pilot.summarise(out)
    text = md.read_text()
    assert "| 8 | 2 | 4 | 2 / 2 |" in text  # width, epochs, module steps, n seeds per arm
    assert "±" in text and "never the test split" in text
    assert png.stat().st_size > 10_000


def test_rerun_gives_identical_rows(pilot, tree, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    run(pilot, tree, first)
    run(pilot, tree, second)
    timing = {"seconds", "load_1min"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(read(first)) == strip(read(second))


def test_summary_refuses_an_empty_csv(pilot, tmp_path):
    with pytest.raises(ConfigError, match="no pilot rows"):
        pilot.summarise(tmp_path / "missing.csv")

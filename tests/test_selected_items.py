"""`selected.csv` names what was picked (file, image id, person), and a single run prints its directory;
ImageFolder checks: a class folder without images is refused, named."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from al_runner.errors import DataError
from al_runner.runner import run_experiment
from al_runner.schema import SELECTED_COLUMNS
from al_runner.tasks.classification.augment import CropFlipNormalize
from al_runner.tasks.classification.imagefolder import load_imagefolder
from al_runner.tasks.classification.mnist5k import load_mnist5k
from al_runner.tasks.classification.synthetic import make_synthetic_splits
from al_runner.tasks.classification.task import ClassificationTask
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "mpii-sample"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_tree(root: Path, counts: dict[tuple[str, str], int]) -> Path:
    """counts[(split, class)] images of 8x8 noise; a class with 0 gets an empty folder."""
    rng = np.random.default_rng(0)
    for (split, label), n in counts.items():
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root


def test_selected_csv_names_each_imagefolder_pick_by_its_relative_file(tmp_path):
    root = write_tree(
        tmp_path / "tree", {("train", "cat"): 12, ("train", "dog"): 12, ("test", "cat"): 4, ("test", "dog"): 4}
    )
    cfg = compose_config(
        [
            "task=imagefolder",
            f"task.root={root}",
            "model=small_cnn",
            "model.net.width=8",
            "schedule=smoke",
            "schedule.initial_size=6",
            "schedule.query_size=4",
            "sampler=entropy",
            "progress=false",
            f"paths.cache={tmp_path / 'cache'}",
        ]
    )
    run_experiment(cfg, tmp_path / "run")
    rows = read_csv(tmp_path / "run" / "selected.csv")
    assert tuple(rows[0]) == SELECTED_COLUMNS and len(rows) == 10
    files = sorted(f"train/{label}/{i:04d}.png" for label in ("cat", "dog") for i in range(12))  # the pool's order
    for row in rows:
        assert row["item"] == files[int(row["pool_index"])]
        assert (root / row["item"]).is_file()
    # a second run reads the decoded cache: the same names
    assert load_imagefolder(str(root), cache_dir=str(tmp_path / "cache")).train_names == files


def test_classification_tasks_name_their_pool_points():
    synthetic = ClassificationTask(
        "synthetic", make_synthetic_splits(n_train=5, n_test=2), CropFlipNormalize(padding=0, hflip=False)
    )
    assert synthetic.pool_item_names(torch.tensor([4, 0])) == ["train/4", "train/0"]  # also torchvision CIFAR-10's
    mnist = load_mnist5k(pool_size=4000)
    assert len(set(mnist.train_names)) == 4000 and all(name.startswith("mnist5k/") for name in mnist.train_names)
    assert load_mnist5k(pool_size=4000).train_names == mnist.train_names  # the fixed split: the same digits


def test_voc_picks_are_named_by_year_and_image_id(tmp_path):
    from al_runner.tasks.detection import VOCDetectionTask
    from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit

    tree = generate_vocdevkit(tmp_path / "gen", images=8, seed=3)
    task = VOCDetectionTask(
        "voc_synth", str(tree), list(CLASSES), [[2007, "trainval"], [2012, "trainval"]], [[2007, "test"]], image_size=64
    )
    names = task.pool_item_names(torch.arange(task.pool_size))
    assert len(set(names)) == task.pool_size
    for name, image in zip(names, task.pool.images):
        year, image_id = name.split("/")
        assert (
            year in ("VOC2007", "VOC2012") and Path(image) == Path(image).parents[1] / "JPEGImages" / f"{image_id}.jpg"
        )
        assert Path(image).parents[1].name == year


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real MPII sample not present at {SAMPLE}")
def test_mpii_picks_are_named_by_image_and_person():
    from al_runner.tasks.pose.task import MPIITask

    task = MPIITask(
        root=str(SAMPLE),
        annotation_file="mpii_annotations_sample.json",
        image_folder=".",
        test_annotation_file="test_mpii.json",
        missing_images="skip",
        input_size=64,
        heatmap_size=16,
    )
    names = task.pool_item_names(torch.arange(task.pool_size))
    assert len(set(names)) == task.pool_size  # two people on one image are two items
    assert {"005808361.jpg#0", "005808361.jpg#1"} <= set(names)


def test_an_empty_class_folder_in_train_and_test_is_refused_naming_it(tmp_path):
    root = write_tree(tmp_path, {("train", "cat"): 3, ("train", "dog"): 0, ("test", "cat"): 2, ("test", "dog"): 0})
    with pytest.raises(DataError, match=r"train/dog.*test/dog"):
        load_imagefolder(str(root))


def test_a_class_empty_in_train_but_present_in_test_is_refused_naming_it(tmp_path):
    root = write_tree(tmp_path, {("train", "cat"): 3, ("train", "dog"): 0, ("test", "cat"): 2, ("test", "dog"): 2})
    with pytest.raises(DataError, match=r"train/dog") as refused:
        load_imagefolder(str(root))
    assert "test/dog" not in str(refused.value)


def test_a_single_run_prints_its_directory_at_start_and_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "al_runner",
            "task=synthetic",
            "schedule=smoke",
            "schedule.cycles=1",
            "model.net.width=8",
            "progress=false",
            f"paths.output={tmp_path}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = next(tmp_path.glob("default/*/cycles.csv")).parent
    lines = [line for line in result.stdout.splitlines() if str(run_dir) in line]
    assert lines[0].endswith(f"run directory: {run_dir}")  # before the first cycle
    assert lines[-1].endswith(f"run finished: results in {run_dir}") and len(lines) >= 2

"""scripts/reference_cifar_trainer.py: the independent recipe trainer used for the classification fidelity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_script

pytestmark = pytest.mark.usefixtures("keep_torch_threads")


@pytest.fixture(scope="module")
def trainer():
    return load_script("reference_cifar_trainer")


def test_recipe_resnet18_has_the_public_recipes_parameter_count(trainer):
    """kuangliu/pytorch-cifar's ResNet-18 for 10 classes has 11,173,962 parameters; so must the re-typed one,
    and so does the runner's own ResNet-18 (same layout, independently written)."""
    from al_runner.models import resnet18_cifar

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(trainer.RecipeResNet18(num_classes=10, width=64)) == 11_173_962
    assert count(resnet18_cifar(num_classes=10, width=64)) == 11_173_962
    assert count(trainer.RecipeResNet18(num_classes=10, width=16)) == count(resnet18_cifar(num_classes=10, width=16))


def _image_tree(root: Path, per_class: int = 4) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.random((32, 32, 3)) * 60 + 150 * label).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def _run_dir(path: Path, data_root: Path, indices: list[int], items: list[str] | None) -> Path:
    path.mkdir()
    (path / "config.yaml").write_text(f"seed: 3\ntask:\n  root: {data_root}\n")
    (path / "cycles.csv").write_text("cycle,value\n0,0.625\n")
    header = "cycle,pool_index,score" + (",item" if items else "")
    rows = [f"0,{i}," + (f",{item}" if items else "") for i, item in zip(indices, items or [None] * len(indices))]
    (path / "selected.csv").write_text("\n".join([header, *rows, "1,7,0.5" + (",x" if items else "")]) + "\n")
    return path


def test_trains_on_the_runs_cycle0_images_appends_one_row_and_skips_a_rerun(trainer, tmp_path, capsys):
    _image_tree(tmp_path / "data")
    run = _run_dir(
        tmp_path / "run",
        tmp_path / "data",
        [0, 1, 4, 5],
        ["train/cat/0000.png", "train/cat/0001.png", "train/dog/0000.png", "train/dog/0001.png"],
    )
    out = tmp_path / "rows.csv"
    args = ["--run-dir", str(run), "--width", "4", "--epochs", "1", "--out", str(out)]
    assert trainer.main(args) == 0
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and rows[0].split(",") == trainer.COLUMNS
    row = dict(zip(trainer.COLUMNS, rows[1].split(",")))
    assert row["n_labeled"] == "4" and row["seed"] == "3" and row["runner_accuracy"] == "0.625"
    assert 0.0 <= float(row["reference_accuracy"]) <= 1.0
    assert trainer.main(args) == 0 and "skipped" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2
    assert row["std"] == "recipe"
    table = trainer.summarise(out, tmp_path / "table.md")
    assert "| 3 | 4 | 0.6250 |" in table and "Ablations" not in table
    # an ablation (another normalisation, another init seed) is a new row, listed apart from the recipe's rows
    assert trainer.main(args + ["--std", "cifar", "--torch-seed", "7"]) == 0
    ablation = dict(zip(trainer.COLUMNS, out.read_text().splitlines()[2].split(",")))
    assert ablation["std"] == "cifar" and ablation["torch_seed"] == "7"
    table = trainer.summarise(out, tmp_path / "table.md")
    assert "1 seed(s)" in table and "| 4 | 3 | 7 | cifar |" in table


def test_refuses_when_the_runs_recorded_items_are_other_files(trainer, tmp_path):
    _image_tree(tmp_path / "data")
    run = _run_dir(tmp_path / "run", tmp_path / "data", [0, 4], ["train/dog/0000.png", "train/cat/0000.png"])
    with pytest.raises(SystemExit, match="refusing to compare"):
        trainer.main(["--run-dir", str(run), "--width", "4", "--epochs", "1", "--out", str(tmp_path / "rows.csv")])
    assert not (tmp_path / "rows.csv").exists()


def test_compares_with_another_run_only_if_it_labeled_the_same_cycle0_images(trainer, tmp_path):
    _image_tree(tmp_path / "data")
    run = _run_dir(tmp_path / "run", tmp_path / "data", [0, 1, 4, 5], None)
    same = _run_dir(tmp_path / "same", tmp_path / "data", [0, 1, 4, 5], None)
    (same / "cycles.csv").write_text("cycle,value\n0,0.75\n")
    other = _run_dir(tmp_path / "other", tmp_path / "data", [0, 1, 4, 6], None)
    out = tmp_path / "rows.csv"
    common = ["--run-dir", str(run), "--width", "4", "--epochs", "1", "--out", str(out)]
    assert trainer.main(common + ["--accuracy-run-dir", str(same)]) == 0
    assert out.read_text().splitlines()[1].split(",")[:1] == [str(same)] and ",0.75," in out.read_text()
    with pytest.raises(SystemExit, match="other cycle-0 images"):
        trainer.main(common + ["--accuracy-run-dir", str(other)])

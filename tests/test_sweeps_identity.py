"""Run identity, data identity and refused resumes, in-process on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from al_runner.build import DEFAULT_THREADS
from al_runner.errors import ConfigError, DataError
from al_runner.runner import run_experiment
from tests.conftest import SMOKE, compose_config


def run_dir_for(*overrides: str) -> str:
    cfg = compose_config([*SMOKE, *overrides], return_hydra_config=True)
    return str(OmegaConf.select(cfg, "hydra.run.dir"))


def test_spellings_of_one_config_share_a_directory_and_real_differences_do_not():
    base = run_dir_for()
    same = [
        run_dir_for("seed=0"),  # spelling out a default
        run_dir_for("sampler=learning_loss", "seed=0"),
        run_dir_for("schedule.epochs=2"),  # the smoke schedule's own value
        run_dir_for("schedule.learning_loss.weight=1"),  # int vs float spelling of the same number
        run_dir_for(f"runtime.threads={DEFAULT_THREADS}", "progress=true", "device=auto"),  # how, not what
        run_dir_for("checkpoint_minutes=0"),  # how often progress is saved changes no number
        run_dir_for("checkpoint_minutes=null"),
        run_dir_for("paths.cache=/tmp/a/b/c", "paths.data=/x/y"),
    ]
    assert same == [base] * len(same)
    different = {
        run_dir_for("seed=1"),
        run_dir_for("schedule.epochs=3"),
        run_dir_for("sampler=random"),
        run_dir_for("schedule.learning_loss.weight=0.5"),
        run_dir_for("runtime.channels_last=false"),
    }
    assert len(different) == 5 and base not in different
    name = Path(base).name
    assert name.startswith("synthetic-small_cnn-learning_loss-seed0-") and Path(base).parent.name == "default"


def test_a_path_in_an_override_never_nests_folders():
    cfg = compose_config(
        ["task=imagefolder", "task.root=/data/some/deep/tree", "model=small_cnn"], return_hydra_config=True
    )
    run = Path(str(OmegaConf.select(cfg, "hydra.run.dir")))
    assert run.parent == Path("outputs/default") and "/" not in run.name


def test_sweep_subdir_and_single_run_dir_agree():
    cfg = compose_config([*SMOKE, "sampler=entropy"], return_hydra_config=True)
    assert str(OmegaConf.select(cfg, "hydra.sweep.dir")) + "/" + str(
        OmegaConf.select(cfg, "hydra.sweep.subdir")
    ) == str(OmegaConf.select(cfg, "hydra.run.dir"))


def write_tree(root: Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 4)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def image_cfg(tmp_path: Path, *extra: str):
    return compose_config(
        [
            "task=imagefolder",
            f"task.root={tmp_path / 'tree'}",
            f"paths.cache={tmp_path / 'cache'}",
            "model=small_cnn",
            "model.net.width=8",
            "schedule=smoke",
            "progress=false",
            "schedule.initial_size=10",
            "schedule.query_size=4",
            "schedule.subset_size=8",
            *extra,
        ]
    )


def test_changed_data_under_a_checkpoint_is_refused_and_the_saved_config_kept(tmp_path):
    write_tree(tmp_path / "tree", per_class=12)
    run_dir = tmp_path / "run"
    run_experiment(image_cfg(tmp_path), run_dir)
    saved = (run_dir / "config.yaml").read_bytes(), (run_dir / "config.yaml").stat().st_mtime_ns
    ckpt = (run_dir / "checkpoint.pt").read_bytes()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tree" / "train" / "cat" / "extra.png")
    with pytest.raises(DataError, match=r"data changed.*pool: 24 images, sha1 \w+ then, 25 images, sha1 \w+ now"):
        run_experiment(image_cfg(tmp_path), run_dir)
    assert ((run_dir / "config.yaml").read_bytes(), (run_dir / "config.yaml").stat().st_mtime_ns) == saved
    assert (run_dir / "checkpoint.pt").read_bytes() == ckpt


def test_a_refused_config_leaves_the_saved_config_untouched(tmp_path):
    write_tree(tmp_path / "tree", per_class=12)
    run_dir = tmp_path / "run"
    run_experiment(image_cfg(tmp_path), run_dir)
    saved = (run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="different config.*schedule.epochs"):
        run_experiment(image_cfg(tmp_path, "schedule.epochs=3"), run_dir)
    assert (run_dir / "config.yaml").read_text() == saved and "epochs: 2" in saved


def test_a_data_root_from_the_environment_is_pinned_in_the_saved_config(tmp_path, monkeypatch):
    """A root read from an environment variable (as the cifar10_cpu preset reads $AL_RUNNER_CIFAR10_JPG) is saved as
    its value, so the run's directory name is recomputed from its own config.yaml in a shell without the variable."""
    from al_runner.build import make_runtime
    from al_runner.identity import config_hash
    from al_runner.rundir import comparable_config

    write_tree(tmp_path / "tree", per_class=12)
    monkeypatch.setenv("AL_RUNNER_TEST_ROOT", str(tmp_path / "tree"))
    cfg = root_from_environment(image_cfg(tmp_path))
    expected = config_hash(comparable_config(cfg, make_runtime(cfg).resolved()))
    run_dir = tmp_path / "run"
    run_experiment(cfg, run_dir)
    monkeypatch.delenv("AL_RUNNER_TEST_ROOT")
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.task.root == str(tmp_path / "tree")
    assert OmegaConf.is_interpolation(saved.paths, "data")  # keys that change no number are not pinned
    # interpolations not read from the environment stay
    assert OmegaConf.is_interpolation(saved.task.build.data, "root")
    assert config_hash(comparable_config(saved, make_runtime(saved).resolved())) == expected
    # a rerun in the same environment resumes the saved run (nothing refused, nothing retrained)
    monkeypatch.setenv("AL_RUNNER_TEST_ROOT", str(tmp_path / "tree"))
    run_experiment(root_from_environment(image_cfg(tmp_path)), run_dir)


def root_from_environment(cfg):
    cfg.task.root = "${oc.env:AL_RUNNER_TEST_ROOT,${paths.data}/elsewhere}"  # as conf/experiment/cifar10_cpu.yaml
    return cfg

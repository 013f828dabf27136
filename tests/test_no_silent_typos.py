"""A mistyped key or group is refused naming the closest one that exists, with or without `+` (Hydra's advice to
append it would run with the default and ignore it); `al-run --help` lists only al-run's groups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from al_runner.config_schema import check_overrides
from al_runner.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def al_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "override,suggestion",
    [
        ("+schedule.epoch=3", "did you mean schedule.epochs?"),
        ("schedule.epoch=3", "did you mean schedule.epochs?"),
        ("++schedule.epoch=3", "did you mean schedule.epochs?"),
        ("+schedule.learning_loss.wieght=0.5", "did you mean schedule.learning_loss.weight?"),
        ("runtim.threads=1", "did you mean runtime.threads?"),
        ("schedul=demo", "did you mean schedule?"),
        ("+schedul=demo", "did you mean schedule?"),
        ("sed=3", "did you mean seed?"),
        ("+runtime.fast=true", "runtime has amp, amp_cpu_models, channels_last"),
    ],
)
def test_an_unknown_key_or_group_is_refused_naming_the_closest(override, suggestion):
    with pytest.raises(ConfigError, match=suggestion.replace(".", r"\.").replace("?", r"\?")):
        check_overrides([override])


def test_real_keys_groups_and_arguments_of_built_objects_pass():
    check_overrides(
        [
            "schedule.epochs=3",
            "schedule=demo",
            "+experiment=demo",
            "task.root=/x",
            "~seed",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            "model.net.width=8",
            "+schedule.optimizer.nesterov=true",  # an argument of what `_target_` builds (torch's SGD)
            "task.build.augmentation.hflip=false",
        ]
    )


def test_keys_of_a_users_own_config_folder_are_known(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "my_net.yaml").write_text("name: my_net\ndropout: 0.1\n")
    with pytest.raises(ConfigError, match="model.dropout"):
        check_overrides(["model=my_net", "model.dropout=0.2"])
    check_overrides(["--config-dir", str(tmp_path), "model=my_net", "model.dropout=0.2"])


def test_al_run_refuses_a_plus_typo_before_anything_runs_and_help_lists_only_its_groups(tmp_path):
    result = al_run("+schedule.epoch=3", f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1 and "did you mean schedule.epochs?" in result.stderr
    assert "+schedule" not in result.stderr and not list(tmp_path.iterdir())
    help_text = al_run("--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "schedule: " in help_text.stdout and "sampler: " in help_text.stdout
    assert "label: " not in help_text.stdout

"""Every config key typed, every bad value one line and a non-zero exit; SIGTERM ends like Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from al_runner.build import validate_schedule
from al_runner.config_schema import check_composed, check_overrides, closing_node, schema_node
from al_runner.errors import ConfigError
from tests.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parent.parent
TINY = ["task=synthetic", "model=small_cnn", "schedule=smoke", "model.net.width=8", "progress=false"]


def al_run(*args: str, cwd: Path, **env_extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env_extra}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- typed groups, open to extra keys


@pytest.mark.parametrize(
    "override,expected",
    [
        ("schedule.query_size=abc", "schedule.query_size must be an integer"),
        ("schedule.epochs=1.5", "schedule.epochs must be an integer"),
        ("schedule.subset_size=many", "schedule.subset_size must be an integer, or null"),
        ("schedule.learning_loss.weight=heavy", "schedule.learning_loss.weight must be a number"),
        ("schedule.lr_milestones=0.8", "schedule.lr_milestones must be a list of numbers"),
        ("schedule.optimizer.lr=fast", "schedule.optimizer.lr must be a number"),
        ("schedule.reinit_each_cycle=maybe", "schedule.reinit_each_cycle must be one of true, false"),
        ("runtime.compile=yes", "runtime.compile must be one of true, false"),
    ],
)
def test_a_badly_typed_group_value_is_one_line_naming_key_and_type(override, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        check_overrides([override])


def test_good_group_values_pass():
    check_overrides(
        [
            "schedule.epochs=3",
            "schedule.subset_size=null",
            "schedule.lr_milestones=[0.5,0.75]",
            "schedule.learning_loss.weight=1",
            "sampler.loss_objective=null",
            "task.root=/any/path",
            "+sampler.strategy.my_option=7",
            "schedule.epochs=${oc.env:EPOCHS}",
            "schedule=paper_cifar10",
        ]
    )


def test_the_schema_types_values_from_files_too():
    """A preset or yaml with a badly typed value fails composition (not only the command line)."""
    with pytest.raises(ValidationError):
        OmegaConf.merge(schema_node(), {"schedule": {"epochs": "abc"}})
    with pytest.raises(Exception, match="epochs"):
        compose_config([*SMOKE, "schedule.epochs=abc"])


def test_options_may_add_their_own_keys_but_the_command_line_may_not_invent_them():
    merged = OmegaConf.merge(
        schema_node(),
        {
            "sampler": {"name": "mine", "strategy": {}, "temperature": 0.5},
            "task": {"name": "t", "root": "/x"},
            "runtime": {"new_switch": True},
        },
    )
    assert merged.sampler.temperature == 0.5 and merged.runtime.new_switch is True
    closed = OmegaConf.merge(merged, closing_node())
    with pytest.raises(Exception, match="temperatur"):
        closed.sampler.temperatur = 1.0  # a typo after composition is refused, as before the schema was opened
    with pytest.raises(Exception, match="Could not override 'schedule.epoch'"):
        compose_config([*SMOKE, "schedule.epoch=3"])
    assert compose_config([*SMOKE, "+sampler.my_option=7"]).sampler.my_option == 7  # al-run refuses it first


def test_every_preset_and_option_composes_under_the_typed_schema():
    conf = REPO / "conf"
    for preset in sorted((conf / "experiment").glob("*.yaml")):
        cfg = compose_config([f"experiment={preset.stem}"])
        assert isinstance(cfg.schedule.epochs, int) and isinstance(cfg.schedule.learning_loss.weight, float)
        check_composed(cfg)  # every value a preset sets passes the command line's rules
    for group in ("task", "model", "sampler", "schedule"):
        for option in sorted((conf / group).glob("*.yaml")):
            assert compose_config([f"{group}={option.stem}"])[group].name


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("checkpoint_minutes", -1, "checkpoint_minutes must be a number of minutes >= 0"),
        ("runtime.threads", 0, "runtime.threads must be an integer >= 1, or null"),
        ("device", "gpu", "device must be one of auto, cpu, cuda, cuda:N, mps"),
    ],
)
def test_a_value_the_command_line_refuses_is_refused_from_a_config_file_too(key, value, expected):
    cfg = compose_config(SMOKE)
    check_composed(cfg)
    OmegaConf.update(cfg, key, value)  # as a preset or a --config-dir file would set it
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: .* \(from the composed config.*{re.escape(expected)}"):
        check_composed(cfg)


def test_zero_epochs_is_refused():
    cfg = compose_config([*SMOKE, "schedule.epochs=0"])
    with pytest.raises(ConfigError, match=r"schedule\.epochs must be >= 1, got 0"):
        validate_schedule(cfg, pool_size=200)


def test_one_initial_point_is_refused_when_its_batch_would_be_skipped():
    cfg = compose_config([*SMOKE, "schedule.initial_size=1", "schedule.batch_size=4"])
    with pytest.raises(ConfigError, match=r"schedule\.initial_size=1 with batch_size 4: .* trains? on nothing"):
        validate_schedule(cfg, pool_size=200)
    validate_schedule(compose_config([*SMOKE, "schedule.initial_size=1", "schedule.batch_size=1"]), pool_size=200)


def test_a_run_refused_at_build_time_leaves_no_empty_run_directory(tmp_path):
    from al_runner.runner import run_locked

    cfg = compose_config([*SMOKE, "schedule.epochs=0"])
    fresh = tmp_path / "fresh"
    fresh.mkdir()  # Hydra creates the run directory before the job starts
    with pytest.raises(ConfigError, match="schedule.epochs must be >= 1"):
        run_locked(cfg, fresh)
    assert not fresh.exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("a user's file")
    with pytest.raises(ConfigError, match="schedule.epochs must be >= 1"):
        run_locked(cfg, used)
    assert (used / "notes.txt").read_text() == "a user's file"  # a directory that held anything is left as it was


# ---------------------------------------------------------------- the command line: one line, non-zero exit


@pytest.mark.parametrize(
    "args,expected",
    [
        (["schedule.query_size=abc"], "schedule.query_size must be an integer"),
        (["task=imagefolder"], "task.root is required but not set"),
        ([*TINY, "schedule.epochs=0"], "schedule.epochs must be >= 1, got 0"),
        (["schedule.epoch=3"], "did you mean schedule.epochs?"),
        # raised in a joblib worker's run-directory resolver: still our one line, not the worker's traceback
        (
            ["-m", "hydra/launcher=parallel", "task=imagefolder", "sampler=random,entropy"],
            "task.root is required but not set",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, args, expected):
    result = al_run(*args, f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith("al-run: error: ") and expected in line and "Traceback" not in line
    assert not list(tmp_path.rglob("run.lock"))  # no run directory is left behind by a refused run


def test_a_bad_value_in_a_users_preset_is_one_line_and_leaves_no_run_directory(tmp_path):
    preset = tmp_path / "my_conf" / "experiment" / "hourly.yaml"
    preset.parent.mkdir(parents=True)
    preset.write_text("# @package _global_\ncheckpoint_minutes: -1\n")
    result = al_run("--config-dir", "my_conf", "experiment=hourly", *TINY, f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert (
        line.startswith("al-run: error: checkpoint_minutes: -1.0 (from the composed config") and "minutes >= 0" in line
    )
    assert not list(tmp_path.rglob("run.lock"))


def test_a_sweep_whose_overrides_do_not_compose_writes_no_summary(tmp_path):
    result = al_run("-m", *TINY, "sampler=no_such_sampler,random", f"paths.output={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert "Could not find 'sampler/no_such_sampler'" in line and "Available options in 'sampler': " in line
    assert "sweep:" not in result.stdout and not list(tmp_path.rglob("sweep.csv"))


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_ends_like_ctrl_c_with_one_line_on_how_to_resume(tmp_path):
    args = [*TINY, "schedule.cycles=3", "runtime.threads=1", "name=term", f"paths.output={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AL_RUNNER_STALL_WRITE": "checkpoint.pt:2"}
    env.pop("HYDRA_FULL_ERROR", None)
    victim = subprocess.Popen(
        [sys.executable, "-m", "al_runner", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob("term/*/checkpoint.pt.stalled")):
        assert victim.poll() is None and time.time() < deadline, victim.communicate()[1][-2000:]
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)  # what a cluster sends before a kill
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 143
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert line.startswith("al-run: terminated (SIGTERM); finished cycles are saved, run the same command to resume:")
    assert "al-run task=synthetic" in line
    env.pop("AL_RUNNER_STALL_WRITE")
    again = subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "resuming" in again.stdout and "after cycle 0" in again.stdout

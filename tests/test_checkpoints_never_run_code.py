"""Resuming a run or opening a labeling project reads its checkpoint with torch.load(weights_only=True): a file
whose unpickling would run code is refused in one line naming it, and the code never runs."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch

from al_runner.errors import ConfigError
from al_runner.labeling.project import STATE_FILE, LabelingError, Project
from al_runner.rundir import load_checkpoint
from al_runner.runner import run_experiment
from al_runner.schema import CHECKPOINT
from tests.conftest import SMOKE, compose_config

TINY = [*SMOKE, "schedule.cycles=1", "runtime.threads=1"]


class CreatesAFile:
    """Unpickling this calls pathlib.Path.touch on `target`: what a malicious checkpoint could do."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.target),)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_crafted_file_does_create_a_file_when_fully_unpickled(tmp_path):
    """The control: the payload is real (full pickle runs it), so the refusals below mean something."""
    target = tmp_path / "created"
    torch.save({"rows": [], "payload": CreatesAFile(target)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert target.exists()


def test_resume_refuses_a_checkpoint_that_would_run_code_and_runs_none(tmp_path):
    run_dir, target = tmp_path / "run", tmp_path / "created"
    run_experiment(compose_config(TINY), run_dir)  # a real checkpoint written by the current code ...
    ckpt = load_checkpoint(run_dir / CHECKPOINT)  # ... loads with weights_only=True
    assert ckpt["next_cycle"] == 1 and ckpt["finished"]
    ckpt["selected"].append(CreatesAFile(target))
    torch.save(ckpt, run_dir / CHECKPOINT)
    with pytest.raises(ConfigError) as refused:
        run_experiment(compose_config(TINY), run_dir)
    message = str(refused.value)
    assert "\n" not in message and str(run_dir / CHECKPOINT) in message and "could run code" in message
    assert not target.exists()


def test_a_labeling_project_refuses_a_state_file_that_would_run_code(tmp_path):
    project_dir, target = tmp_path / "project", tmp_path / "created"
    project_dir.mkdir()
    project = Project.__new__(Project)  # only the state file is read here
    project.dir = project_dir
    torch.save({"rounds": [], "learner": {"w": torch.zeros(2)}}, project_dir / STATE_FILE)
    assert torch.equal(project.state()["learner"]["w"], torch.zeros(2))
    torch.save({"rounds": [CreatesAFile(target)], "learner": None}, project_dir / STATE_FILE)
    with pytest.raises(LabelingError, match=str(project_dir / STATE_FILE)):
        project.state()
    assert not target.exists()

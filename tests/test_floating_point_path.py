"""A run records what decides its floating-point path (CPU, instruction sets, builds, threads), and a resume on
another path is refused naming what differs, as a thread change is; run directory names do not change."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from al_runner import platform
from al_runner.build import make_runtime
from al_runner.errors import ConfigError
from al_runner.identity import config_hash
from al_runner.rundir import comparable_config, load_checkpoint
from al_runner.runner import run_experiment
from al_runner.schema import CHECKPOINT
from tests.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parent.parent
TINY = [*SMOKE, "schedule.cycles=1", "runtime.threads=1"]


pytestmark = pytest.mark.usefixtures("keep_torch_threads")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("fp") / "run"
    run_experiment(compose_config(TINY), run_dir)
    return run_dir


def test_a_run_records_its_cpu_instruction_sets_builds_and_threads(finished_run):
    record = json.loads((finished_run / platform.PLATFORM_FILE).read_text())
    assert record["device"] == "cpu" and record["threads"] == 1
    assert record["cpu_model"] == platform.cpu_model() and record["cpu_model"] != "unknown"
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["torch"] == str(torch.__version__) and record["onednn"]
    if torch.backends.mkldnn.is_available():
        assert record["onednn_isa"]  # e.g. "Intel AVX2", read from oneDNN itself
    assert load_checkpoint(finished_run / CHECKPOINT)["platform"] == record


def test_the_record_is_in_the_runs_log(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="al_runner"):
        run_experiment(compose_config(TINY), tmp_path / "run")
    line = next(m for m in caplog.messages if m.startswith("floating-point path:"))
    assert platform.cpu_model() in line and f"cpu_capability {torch.backends.cpu.get_cpu_capability()}" in line


def _rewrite_platform(run_dir: Path, change) -> None:
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    change(ckpt)
    torch.save(ckpt, run_dir / CHECKPOINT)


def test_resuming_on_another_cpu_is_refused_naming_what_differs(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / CHECKPOINT).write_bytes((finished_run / CHECKPOINT).read_bytes())

    def other_cpu(ckpt):
        ckpt["platform"].update(cpu_model="Intel(R) Xeon(R) Platinum 8480+", onednn_isa="Intel AVX-512 with AMX")

    _rewrite_platform(run_dir, other_cpu)
    with pytest.raises(
        ConfigError,
        match=r"another floating-point path \(differs in: cpu_model: Intel\(R\) Xeon.* "
        r"then, .* now; onednn_isa: Intel AVX-512 with AMX then",
    ):
        run_experiment(compose_config(TINY), run_dir)
    assert not (run_dir / "config.yaml").exists()  # refused before anything is written


def test_a_checkpoint_without_the_record_resumes_with_a_warning(finished_run, tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / CHECKPOINT).write_bytes((finished_run / CHECKPOINT).read_bytes())
    _rewrite_platform(run_dir, lambda ckpt: ckpt.pop("platform"))
    with caplog.at_level(logging.WARNING, logger="al_runner"):
        run = run_experiment(compose_config(TINY), run_dir)
    assert len(run) == 1  # skipped as finished, not refused
    assert any("predates the floating-point path record" in m for m in caplog.messages)


def test_differences_compare_only_what_decides_the_path_on_that_device():
    cpu = {"device": "cpu", "cpu_model": "A", "threads": 1, "torch": "2.0"}
    assert platform.differences(cpu, {**cpu, "gpu": "H100"}) == []
    assert platform.differences(cpu, {**cpu, "threads": 2}) == ["threads: 1 then, 2 now"]
    cuda = {"device": "cuda", "cpu_model": "A", "gpu": "H100", "torch": "2.0"}
    assert platform.differences(cuda, {**cuda, "cpu_model": "B"}) == []  # a GPU run's numbers come from the GPU
    assert platform.differences(cuda, {**cuda, "gpu": "H200"}) == ["gpu: H100 then, H200 now"]
    # a key an older record lacks (e.g. a precision recorded later) is not compared
    assert platform.differences(cpu, {**cpu, "precision": "fp32"}) == []


def test_every_committed_run_keeps_its_directory_name():
    """The record is not part of the run's identity: each committed run's name is still the hash of its config
    (as named then: before the thread count counted, or with the one thread its sweep job used)."""
    runs = sorted(path.parent for path in (REPO / "outputs" / "reference").glob("*/*/config.yaml"))
    assert len(runs) >= 60
    for run in runs:
        cfg = OmegaConf.load(run / "config.yaml")
        comparable = comparable_config(cfg, make_runtime(cfg).resolved())
        assert "platform" not in comparable
        comparable["runtime"].pop("threads")
        before_threads = config_hash(comparable)
        comparable["runtime"]["threads"] = 1
        assert run.name.endswith((before_threads, config_hash(comparable))), run


def test_a_committed_reference_keeps_the_record_of_where_it_was_made(finished_run, tmp_path):
    from tests.conftest import load_script

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    run = sweep / finished_run.name
    run.mkdir()
    for name in ("config.yaml", "cycles.csv", "selected.csv", platform.PLATFORM_FILE):
        (run / name).write_bytes((finished_run / name).read_bytes())
    assert load_script("collect_reference").main([str(sweep), str(tmp_path / "reference")]) == 0
    copied = tmp_path / "reference" / run.name / platform.PLATFORM_FILE
    assert json.loads(copied.read_text())["cpu_model"] == platform.cpu_model()


def test_reading_the_isa_draws_nothing_from_torchs_global_generator():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    platform.onednn_isa.__wrapped__()  # uncached: it runs a convolution under oneDNN's verbose mode
    assert torch.equal(torch.rand(3), expected)

"""A run records its resolved precision (fp32 / bf16) and the CPU's bf16 units in its floating-point path; a
resume in another precision is refused; bf16 asked for on a CPU without bf16 units runs, with one warning line."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from al_runner import platform
from al_runner.errors import ConfigError
from al_runner.rundir import load_checkpoint
from al_runner.runner import run_experiment
from al_runner.schema import CHECKPOINT
from tests.conftest import SMOKE, compose_config

TINY = [*SMOKE, "schedule.cycles=1", "runtime.threads=1", "schedule.epochs=1"]


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fp32_run_records_precision_and_bf16_units(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="al_runner"):
        run_experiment(compose_config(TINY), tmp_path / "run")
    record = json.loads((tmp_path / "run" / platform.PLATFORM_FILE).read_text())
    assert record["precision"] == "fp32"
    assert record["bf16_units"] == platform.bf16_units() and record["bf16_units"] in ("amx_bf16", "avx512_bf16", "none")
    assert any(m.startswith("floating-point path:") and "precision fp32" in m for m in caplog.messages)
    assert not any("bf16 is emulated" in m for m in caplog.messages)

    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    ckpt["platform"]["precision"] = "bf16"  # as if written by a bf16 run of the same config
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(ConfigError, match=r"differs in: precision: bf16 then, fp32 now"):
        run_experiment(compose_config(TINY), tmp_path / "run")


def test_bf16_on_a_cpu_without_bf16_units_runs_with_one_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(platform, "cpu_flags", lambda cpuinfo=None: frozenset({"fma", "avx", "avx2"}))
    with caplog.at_level(logging.INFO, logger="al_runner"):
        rows = run_experiment(compose_config([*TINY, "runtime.amp=true"]), tmp_path / "run")
    assert len(rows) == 1  # not refused
    record = json.loads((tmp_path / "run" / platform.PLATFORM_FILE).read_text())
    assert (record["precision"], record["bf16_units"]) == ("bf16", "none")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "emulated" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "~11x slower than fp32" in warnings[0]


def test_the_warning_only_for_bf16_on_a_cpu_without_units():
    base = {"device": "cpu", "precision": "bf16", "bf16_units": "none"}
    assert platform.emulated_bf16_warning(base)
    assert platform.emulated_bf16_warning({**base, "bf16_units": "amx_bf16"}) is None
    assert platform.emulated_bf16_warning({**base, "bf16_units": "avx512_bf16"}) is None
    assert platform.emulated_bf16_warning({**base, "precision": "fp32"}) is None
    assert platform.emulated_bf16_warning({**base, "device": "cuda"}) is None


AMX = frozenset({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})


@pytest.mark.parametrize(
    "flags,amp,listed,device,expected",
    [
        (AMX, "auto", ["small_cnn"], "cpu", True),  # AMX and a listed model: bf16
        (AMX, "auto", ["resnet18_cifar"], "cpu", False),  # a model not listed stays fp32
        (AMX, "auto", [], "cpu", False),
        (frozenset({"avx512f", "avx512_bf16"}), "auto", ["small_cnn"], "cpu", False),  # no AMX: not measured
        (frozenset({"avx2", "fma"}), "auto", ["small_cnn"], "cpu", False),
        (frozenset({"avx2", "fma"}), True, [], "cpu", True),  # an explicit choice is kept
        (AMX, False, ["small_cnn"], "cpu", False),
        (frozenset(), "auto", [], "cuda", True),
    ],
)
def test_auto_precision_is_bf16_only_on_amx_cpus_for_the_listed_models(
    monkeypatch, flags, amp, listed, device, expected
):
    from al_runner.build import resolve_amp

    monkeypatch.setattr(platform, "cpu_flags", lambda cpuinfo=None: flags)
    assert resolve_amp(amp, torch.device(device), "small_cnn", listed) is expected


def test_a_run_auto_switched_to_bf16_says_so_and_gets_its_own_directory(tmp_path, caplog, monkeypatch):
    from al_runner.identity import run_id as run_dir_name  # <task>-<model>-<sampler>-seed<seed>-<config hash>

    monkeypatch.setattr(platform, "cpu_flags", lambda cpuinfo=None: AMX)
    auto = compose_config([*TINY, "runtime.amp_cpu_models=[small_cnn]"])
    with caplog.at_level(logging.INFO, logger="al_runner"):
        run_experiment(auto, tmp_path / "run")
    record = json.loads((tmp_path / "run" / platform.PLATFORM_FILE).read_text())
    assert (record["precision"], record["bf16_units"]) == ("bf16", "amx_bf16")
    notes = [m for m in caplog.messages if m.startswith("runtime.amp=auto: bf16")]
    assert len(notes) == 1 and "small_cnn" in notes[0] and "runtime.amp=false runs fp32" in notes[0]
    # the identity holds the resolved precision: fp32 (amp=false, or auto without the model listed) is another run
    fp32 = compose_config([*TINY, "runtime.amp=false", "runtime.amp_cpu_models=[small_cnn]"])
    assert run_dir_name(auto) == run_dir_name(compose_config([*TINY, "runtime.amp=true"])) != run_dir_name(fp32)
    assert run_dir_name(fp32) == run_dir_name(compose_config(TINY))

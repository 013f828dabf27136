"""Benchmark 8 (fp32 vs bf16 autocast) runs at toy sizes and builds every model as al-run would (no timing
assertions: benchmarks are not unit tests)."""

from __future__ import annotations

import math

import pytest

import benchmarks
from al_runner.build import make_runtime
from benchmarks import cli
from benchmarks.precision import MODELS, Fixture, machine_peaks, model_overrides, model_sizes
from benchmarks.runner_side import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quick_args(tmp_path, *extra):
    return benchmarks.parse_args(
        ["--quick", "--device", "cpu", "--only", "8", "--out", str(tmp_path / "p.csv"), *extra]
    )


def test_precision_benchmark_runs_and_reports_speed_flops_and_peaks(tmp_path):
    args = quick_args(tmp_path, "--models", "small_cnn")
    res = cli.run_benchmarks(args)
    rows = {r["name"]: r for r in res.rows}
    peaks = machine_peaks(1)
    assert rows["fp32 peak, 1 core(s) at %.0f MHz" % peaks.mhz]["value"] == pytest.approx(peaks.fp32_gflops)
    assert f"bf16 peak ({peaks.bf16_units})" in rows
    for kind in ("train plain", "train module", "score", "eval"):
        gflop = rows[f"small_cnn {kind}: FLOPs per image"]["value"]
        assert gflop > 0
        for p in ("fp32", "bf16"):
            ips = rows[f"small_cnn {kind} {p}"]["value"]
            assert ips > 0 and rows[f"small_cnn {kind} {p}: achieved"]["value"] == pytest.approx(gflop * ips)
            assert "% of the fp32 peak" in rows[f"small_cnn {kind} {p}: achieved"]["note"]
        ratio = rows[f"small_cnn {kind}: bf16 / fp32 speed"]
        assert ratio["unit"] == "x" and ratio["value"] > 0 and ratio["note"].startswith("repeats")
    assert {"small_cnn loss-module step time / plain (fp32)", "small_cnn loss-module step time / plain (bf16)"} <= set(
        rows
    )
    assert all(
        isinstance(r["value"], float) and not math.isnan(r["value"])
        for r in res.rows
        if not r["name"].startswith("bf16 peak")
    )


def test_every_model_is_composed_as_al_run_composes_it(tmp_path):
    """Each precision maps to runtime.amp; each model to its config group, task and input size."""
    args = quick_args(tmp_path)
    args.quick = False  # the full-size overrides (composition only: nothing is built or run)
    fixture = Fixture(tmp_path, detection_images=6, pose_people=8)
    expected = {
        "resnet18-w64": ("resnet18_cifar", 64),
        "resnet18-w16": ("resnet18_cifar", 16),
        "small_cnn": ("small_cnn", 32),
        "ssdlite320": ("ssdlite320_mobilenet_v3", 320),
        "ssd300": ("ssd300_vgg16", 300),
        "hourglass": ("hourglass", 256),
        "hourglass_small": ("hourglass_small", 64),
    }
    assert set(expected) == set(MODELS)
    for name, spec in MODELS.items():
        sizes = model_sizes(args, spec)
        for precision, amp in (("fp32", False), ("bf16", True)):
            cfg = compose_config(
                model_overrides(args, spec, fixture, with_module=precision == "bf16", precision=precision, sizes=sizes)
            )
            model, size = expected[name]
            assert cfg.model.name == model and make_runtime(cfg).amp is amp, name
            assert cfg.sampler.name == ("learning_loss" if precision == "bf16" else "random")
            assert cfg.schedule.batch_size == spec.batch
            assert cfg.schedule.optimizer.lr == 1e-5  # repeated steps on one batch stay finite
            if spec.family == "classification":
                assert cfg.model.net.width == size and cfg.task.build.data.size == 32
            elif spec.family == "detection":
                assert cfg.task.image_size == size and cfg.task.name == "voc_synth"
            else:
                assert cfg.task.input_size == size


def test_unknown_models_and_precisions_are_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"--models: resnet50 unknown, choose from resnet18-w64"):
        cli.run_benchmarks(quick_args(tmp_path, "--models", "resnet50"))
    with pytest.raises(SystemExit, match=r"--precisions: fp16 not supported, choose from fp32, bf16"):
        cli.run_benchmarks(quick_args(tmp_path, "--models", "small_cnn", "--precisions", "fp32,fp16"))

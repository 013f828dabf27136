"""The operator breakdown of a training step (benchmarks/op_breakdown.py): operator kinds, the Amdahl bound, and a
profiled step of the runner's own model at toy size (no timing assertions)."""

from __future__ import annotations

import csv
import math

import pytest

from benchmarks import op_breakdown
from benchmarks.op_breakdown import OTHER, amdahl, kind_of, kinds_in_order

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MATRIX = kinds_in_order()[0]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("aten::mkldnn_convolution", MATRIX),
        ("aten::convolution_backward", MATRIX),
        ("aten::addmm", MATRIX),
        ("aten::mm", MATRIX),
        ("aten::native_batch_norm_backward", "batch norm"),
        ("aten::_to_copy", "cast / copy"),
        ("aten::copy_", "cast / copy"),
        ("Optimizer.step#SGD.step", "optimizer"),
        ("aten::_foreach_add_", "optimizer"),
        ("aten::threshold_backward", "elementwise, pooling, loss"),
        ("aten::relu_", "elementwise, pooling, loss"),
        ("aten::adaptive_avg_pool2d", "elementwise, pooling, loss"),
        ("aten::add_", "elementwise, pooling, loss"),
        ("autograd::engine::evaluate_function: ConvolutionBackward0", "autograd and dispatch"),
        ("aten::empty", "autograd and dispatch"),
        ("aten::mmap_something_new", OTHER),
    ],
)
def test_operators_are_sorted_into_kinds(name, kind):
    assert kind_of(name) == kind


def test_amdahl_bound():
    assert amdahl(0.5, math.inf) == pytest.approx(2.0)
    assert amdahl(0.5, 16) == pytest.approx(1 / (0.5 + 0.5 / 16))
    assert amdahl(0.0, 16) == pytest.approx(1.0)
    assert amdahl(0.8, 1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="share"):
        amdahl(1.2, 2)


def test_breakdown_profiles_the_runner_step_with_and_without_the_module(tmp_path, capsys):
    out = tmp_path / "ops.csv"
    rows = op_breakdown.main(
        ["--models", "small_cnn", "--steps", "1", "--warmup", "1", "--batch", "8", "--out", str(out)]
    )
    assert [(r.model, r.case, r.precision) for r in rows] == [
        ("small_cnn", "plain", "fp32"),
        ("small_cnn", "module", "fp32"),
    ]
    for row in rows:
        assert row.seconds_per_step > 0
        assert sum(row.share(kind) for kind in kinds_in_order()) == pytest.approx(1.0)
        # a CNN step is mostly convolutions, batch norm and activations; the rest is small
        assert row.share(MATRIX) > 0.1 and row.share("batch norm") > 0
        assert row.share(OTHER) < 0.2
    table = capsys.readouterr().out
    assert "| small_cnn | module | fp32 |" in table and "bound if matrix ops 16x faster" in table
    written = list(csv.DictReader(out.open()))
    assert len(written) == 2 * len(kinds_in_order())
    assert sum(float(r["share"]) for r in written if r["step"] == "plain") == pytest.approx(1.0, abs=1e-3)


def test_unknown_or_unsupported_models_are_refused():
    with pytest.raises(SystemExit, match="not supported, choose from resnet18-w64, resnet18-w16, small_cnn"):
        op_breakdown.breakdown("vgg", False, 1, 0)
    with pytest.raises(SystemExit, match="classification models only"):
        op_breakdown.breakdown("ssdlite320", False, 1, 0)
    with pytest.raises(SystemExit, match="precision fp16 not supported"):
        op_breakdown.breakdown("small_cnn", False, 1, 0, precision="fp16")

"""The benchmark package runs at toy sizes (no timing assertions: benchmarks are not unit tests)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import benchmarks
from benchmarks import cli
from benchmarks.harness import interleaved
from benchmarks.kcenter import kcenter_child
from benchmarks.ranking import ranking_chunked, ranking_python_loop
from benchmarks.runner_side import (
    BenchTask,
    build_bench_task,
    build_side,
    compose_config,
    side_overrides,
    task_overrides,
)

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_args(tmp_path, *extra):
    args = benchmarks.parse_args(
        [
            "--quick",
            "--device",
            "cpu",
            "--synthetic",
            "96,40",
            "--out",
            str(tmp_path / "b.csv"),
            "--override",
            "model.net.width=8",
            "--override",
            "schedule.initial_size=16",
            "--override",
            "schedule.query_size=8",
            "--override",
            "schedule.subset_size=32",
            *extra,
        ]
    )
    args.widths, args.batch, args.eval_batch, args.alt_eval_batch = [8], 8, 32, 16
    args.epoch_images, args.score_m, args.eval_n = 32, 48, 40
    args.step_warmup = args.step_repeats = 1
    args.rank_n, args.rank_naive_n = 300, 40
    return args


def test_benchmarks_run_at_toy_sizes_and_write_csv(tmp_path):
    args = toy_args(tmp_path, "--only", "1,2,3,5,6", "--gap-ablation")
    res = cli.run_benchmarks(args)
    names = {r["name"] for r in res.rows}
    assert "w8 loss-module step time / plain (channels_last), autograd-mean GAP" in names
    assert "w8 loss-module step time / plain (NCHW)" in names
    assert "w8 loss-module step time / plain (channels_last)" in names
    assert "w8 epoch throughput runner NCHW / reference" in names
    assert "w8 scoring runner NCHW / reference" in names
    assert "w8 evaluation runner channels_last / reference" in names
    assert "train seconds per epoch" in names  # bench 6: one cycle through ActiveLearningRun
    assert {f"bench {n}: CPU used by other processes meanwhile" for n in (1, 2, 3, 5, 6)} <= names
    assert all(isinstance(r["value"], float) and not math.isnan(r["value"]) for r in res.rows)
    same = next(r for r in res.rows if r["name"].startswith("same value as the pair loop"))
    assert same["value"] == 1.0
    benchmarks.write_outputs(args.out, res, {"cpu": "test"}, [])
    assert (tmp_path / "b.csv").read_text().startswith("bench,name,value")
    assert "| 1 train step w8 |" in (tmp_path / "b.md").read_text()


def test_runner_side_is_the_configured_learner(tmp_path):
    """Taps, module, memory format and AMP come from conf/ and the overrides, through al_runner.build."""
    args = toy_args(tmp_path)
    cfg = compose_config(task_overrides(args, True) + side_overrides(args, 2, channels_last=True))
    task = build_bench_task(cfg)
    side = build_side(cfg, task)
    assert side.learner.tap_names == list(compose_config(["model=resnet18_cifar"]).model.taps)
    assert side.learner.loss_module is not None and side.runtime.channels_last and not side.runtime.amp
    assert side.learner.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert side.learner.model.conv1.out_channels == 2
    assert task.task.augmentation.mean.flatten().tolist() == pytest.approx([0.4914, 0.4822, 0.4465])  # the preset's
    plain = build_side(
        compose_config(task_overrides(args, True) + side_overrides(args, 2, loss_module=False, channels_last=False)),
        task,
    )
    assert plain.learner.loss_module is None and not plain.runtime.channels_last
    assert torch.equal(plain.learner.model.conv1.weight, side.learner.model.conv1.weight)  # same seed, same weights


def test_bench_task_fixed_batch_and_test_limit(tmp_path):
    args = toy_args(tmp_path)
    base = build_bench_task(compose_config(task_overrides(args, True) + side_overrides(args, 2)))
    assert isinstance(base, BenchTask) and base.pool_size == 96 and base.test_size == 40
    inputs, targets = base.first_batch(8, torch.Generator().manual_seed(1))
    fixed = base.variant(fixed_batch=(inputs, targets))
    batches = list(fixed.labeled_batches(torch.arange(96), 8, torch.Generator()))
    assert len(batches) == 1 and batches[0][0] is inputs
    limited = base.variant(test_limit=21)
    got = list(limited.test_batches(8))
    assert sum(len(i) for _, _, i in got) == 21 and limited.test_size == 21
    assert torch.equal(torch.cat([i for _, _, i in got]), torch.arange(21))


def test_main_entry_point_runs_and_spawns_children(tmp_path):
    """`python -m benchmarks` from the repository root; benchmark 4 runs its fresh-process children."""
    out = tmp_path / "m.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "4,5",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--kc-repeats",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "picks identical to the naive implementation,1," in text
    assert out.with_suffix(".md").read_text().startswith("# al_runner benchmark")


def test_gap_ablation_restores_the_nchw_gradient_and_then_the_pooling():
    """--gap-ablation reproduces the pooling before 408f17d (NCHW gradient into channels_last maps), temporarily."""
    import al_runner.learning_loss as learning_loss
    from benchmarks.training import autograd_mean_gap

    def grad_of_pool(pool):
        # the gradient arriving at a non-leaf channels_last map (a leaf's .grad is re-laid out by AccumulateGrad)
        x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
        feature, seen = (2 * x).contiguous(memory_format=torch.channels_last), {}
        feature.register_hook(lambda g: seen.setdefault("grad", g))
        out = pool(feature)
        out.sum().backward()
        return out.detach(), seen["grad"]

    current = learning_loss.global_average_pool
    new_out, new_grad = grad_of_pool(learning_loss.global_average_pool)
    with autograd_mean_gap():
        assert learning_loss.global_average_pool is not current
        old_out, old_grad = grad_of_pool(learning_loss.global_average_pool)
    assert learning_loss.global_average_pool is current
    assert torch.allclose(new_out, old_out) and torch.allclose(new_grad, old_grad)
    # autograd adds the pooling's gradient to the map's other (channels_last) gradient, the pooling's first: the
    # current one (a broadcast view in channels_last order) keeps the sum channels_last, the old one made it NCHW
    other = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert new_grad.stride()[1] == 1 and (new_grad + other).is_contiguous(memory_format=torch.channels_last)
    assert old_grad.is_contiguous() and not (old_grad + other).is_contiguous(memory_format=torch.channels_last)


def test_interleaved_alternates_order():
    calls = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, 1, torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len(t["a"]) == len(t["b"]) == 3


def test_kcenter_child_matches_naive_full_matrix():
    fast = kcenter_child("al_runner", 300, 200, 16, 20, "cpu")
    naive = kcenter_child("naive", 300, 200, 16, 20, "cpu")
    assert fast["picks"] == naive["picks"]
    assert fast["cold_s"] >= 0 and naive["peak_extra_bytes"] >= 0


def test_python_pair_loop_agrees_with_ranking_accuracy():
    from al_runner.learning_loss import ranking_accuracy

    g = torch.Generator().manual_seed(0)
    real, pred = torch.randint(0, 8, (60,), generator=g).float(), torch.randint(0, 5, (60,), generator=g).float()
    assert ranking_python_loop(pred.tolist(), real.tolist()) == pytest.approx(ranking_accuracy(pred, real))
    assert ranking_chunked(pred, real) == pytest.approx(ranking_accuracy(pred, real))


def test_the_benchmarks_find_the_cifar10_tree_where_the_presets_do():
    from benchmarks.cli import default_cifar10_jpg
    from benchmarks.harness import REPO

    assert default_cifar10_jpg({"AL_RUNNER_CIFAR10_JPG": "/x/jpg", "AL_RUNNER_DATA": "/d"}) == Path("/x/jpg")
    assert default_cifar10_jpg({"AL_RUNNER_DATA": "/d"}) == Path("/d/cifar10-jpg")
    assert default_cifar10_jpg({}) == REPO / "data" / "cifar10-jpg"

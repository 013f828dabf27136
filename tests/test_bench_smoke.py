"""scripts/bench.py runs at toy sizes (no timing assertions: benchmarks are not unit tests)."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    # One intra-op thread: at toy sizes it is fastest, and a 2-thread pool next to concurrent tests can
    # be slower by orders of magnitude (threads wait at every op's barrier for a descheduled peer).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("al_runner_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
    torch.set_num_threads(threads)


def toy_args(bench, tmp_path, *extra):
    args = bench.parse_args(["--quick", "--device", "cpu", "--synthetic", "96,40", "--out", str(tmp_path / "b.csv"), *extra])
    args.widths, args.batch, args.eval_batch = [2], 8, 32
    args.epoch_images, args.score_m, args.eval_n = 32, 48, 40
    args.step_warmup = args.step_repeats = 1
    return args


def test_benchmarks_run_at_toy_sizes_and_write_csv(bench, tmp_path):
    args = toy_args(bench, tmp_path, "--only", "1,2,3,5")
    args.rank_n, args.rank_naive_n = 300, 40
    res = bench.Results()
    splits = bench.load_splits(args)
    bench.bench_train_step(args, res)
    bench.bench_epoch(args, res, splits)
    bench.bench_scoring(args, res, splits)
    bench.bench_ranking(args, res)
    names = {r["name"] for r in res.rows}
    assert "w2 loss-module step time / plain (NCHW)" in names
    assert "w2 epoch throughput runner NCHW / reference" in names
    assert "w2 scoring runner NCHW / reference" in names
    assert all(isinstance(r["value"], float) and not math.isnan(r["value"]) for r in res.rows)
    same = next(r for r in res.rows if r["name"].startswith("same value as the pair loop"))
    assert same["value"] == 1.0
    bench.write_outputs(args, res, {"cpu": "test"}, [])
    assert (tmp_path / "b.csv").read_text().startswith("bench,name,value")
    assert (tmp_path / "b.md").is_file()


def test_interleaved_alternates_order(bench):
    calls = []
    t = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, 1, torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len(t["a"]) == len(t["b"]) == 3


def test_kcenter_child_matches_naive_full_matrix(bench):
    fast = bench.kcenter_child("al_runner", 300, 200, 16, 20, "cpu")
    naive = bench.kcenter_child("naive", 300, 200, 16, 20, "cpu")
    assert fast["picks"] == naive["picks"]
    assert fast["cold_s"] >= 0 and naive["peak_extra_bytes"] >= 0


def test_python_pair_loop_agrees_with_ranking_accuracy(bench):
    from al_runner.losses import ranking_accuracy

    g = torch.Generator().manual_seed(0)
    real, pred = torch.randint(0, 8, (60,), generator=g).float(), torch.randint(0, 5, (60,), generator=g).float()
    assert bench.ranking_python_loop(pred.tolist(), real.tolist()) == pytest.approx(ranking_accuracy(pred, real))
    assert bench.ranking_chunked(pred, real) == pytest.approx(ranking_accuracy(pred, real))

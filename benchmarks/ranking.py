"""Benchmark 5: ranking accuracy over 10,000 test points vs the chunked O(n²) count and the O(n²) Python pair loop."""

from __future__ import annotations

import math
import time

import torch

from al_runner.learning_loss import ranking_accuracy
from benchmarks.harness import Results, interleaved, median


def ranking_python_loop(predicted: list[float], real: list[float]) -> float:
    """The O(n²) Python pair loop of a typical reimplementation."""
    valid = matching = 0
    n = len(real)
    for i in range(n):
        for j in range(i + 1, n):
            if real[i] == real[j]:
                continue
            valid += 1
            if (real[i] > real[j]) == (predicted[i] > predicted[j]) and predicted[i] != predicted[j]:
                matching += 1
    return matching / valid if valid else math.nan


def ranking_chunked(predicted: torch.Tensor, real: torch.Tensor, chunk: int = 2048) -> float:
    """The earlier al_runner implementation: all n² pairs, chunk rows at a time, as tensor ops."""
    predicted, real = predicted.flatten().double(), real.flatten().double()
    valid_total = matching_total = 0
    for start in range(0, real.numel(), chunk):
        r_rows, p_rows = real[start : start + chunk, None], predicted[start : start + chunk, None]
        valid = r_rows > real[None, :]
        valid_total += int(valid.sum())
        matching_total += int((valid & (p_rows > predicted[None, :])).sum())
    return math.nan if valid_total == 0 else matching_total / valid_total


def bench_ranking(args, res: Results) -> None:
    device, n, sub = args.device, args.rank_n, args.rank_naive_n
    g = torch.Generator().manual_seed(0)
    real = torch.empty(n).exponential_(generator=g)  # cross-entropy-like: many small, few large losses
    predicted = (real.log() + torch.randn(n, generator=g)).float()
    real, predicted = real.to(device), predicted.to(device)
    b = "5 ranking accuracy"
    print(
        f"\n[5] ranking accuracy over n={n} points; Python pair loop on the first {sub} points, "
        f"extrapolated by (n/{sub})²",
        flush=True,
    )
    t = interleaved(
        {"al_runner": lambda: ranking_accuracy(predicted, real), "chunked": lambda: ranking_chunked(predicted, real)},
        args.rank_repeats,
        1,
        device,
    )
    fast = median(t["al_runner"])
    res.add(b, f"al_runner ranking_accuracy, n={n}", fast, "s", "<= 0.5", met=fast <= 0.5)
    res.add(b, f"chunked O(n²) tensor count (previous al_runner), n={n}", median(t["chunked"]), "s")
    p_sub, r_sub = predicted[:sub].tolist(), real[:sub].tolist()
    t0 = time.perf_counter()
    loop_value = ranking_python_loop(p_sub, r_sub)
    loop_s = time.perf_counter() - t0
    scale = (n / sub) ** 2
    res.add(b, f"Python pair loop, n={sub} (measured)", loop_s, "s")
    res.add(
        b, f"Python pair loop, n={n} (extrapolated x{scale:.0f})", loop_s * scale, "s", note="extrapolated, not run"
    )
    res.add(b, "speed-up vs Python pair loop (extrapolated)", loop_s * scale / fast, "x")
    fast_sub = ranking_accuracy(predicted[:sub], real[:sub])
    res.add(
        b,
        f"same value as the pair loop on n={sub}",
        float(fast_sub == loop_value),
        "bool",
        note=f"{fast_sub:.6f} vs {loop_value:.6f}",
    )

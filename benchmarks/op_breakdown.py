"""Where a training step's time goes, by kind of operator, and what faster matrix units could gain at most.

A bf16 matrix unit (AMX) speeds up only the operators that are matrix products: convolutions and linear
layers, forward and backward. Batch norm, activations, adds, pooling, casts and the optimizer are bound by
memory traffic and stay about as fast (or pay for casts). So the share `f` of a step spent in matrix
operators bounds the speed-up of the whole step (Amdahl): 1 / ((1 - f) + f / k) when matrix operators
become k times faster, and 1 / (1 - f) however fast they become.

The step is the runner's own (`train_one_epoch` on one fixed batch, the model built from conf/ through
`al_runner.build`, with or without the loss-prediction module), profiled with `torch.profiler`; each
operator's *self* time is counted once, so nested calls are not counted twice. Each step is profiled on its own
and every figure is the median over the steps.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.op_breakdown --models resnet18-w16,resnet18-w64 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.harness import machine_info
from benchmarks.precision import MODELS, ModelSpec, model_overrides, train_step
from benchmarks.runner_side import build_bench_task, build_side, compose_config

# Operator kinds, first match wins; patterns are matched against the profiler's event names (aten::…).
KINDS: tuple[tuple[str, re.Pattern], ...] = (
    ("matrix (conv, linear)", re.compile(r"convolution|conv\d?d|mkldnn_conv|addmm|^aten::(mm|bmm|matmul|linear)$")),
    ("batch norm", re.compile(r"batch_norm")),
    ("cast / copy", re.compile(r"^aten::(to|_to_copy|copy_|clone|contiguous|empty_like)$")),
    ("optimizer", re.compile(r"_foreach_|Optimizer|sgd|adam", re.IGNORECASE)),
    (
        "elementwise, pooling, loss",
        re.compile(
            r"relu|threshold|^aten::(add|add_|sub|mul|mul_|div|div_|neg|clamp|clamp_min|sum|mean|pow|sqrt|exp|"
            r"log|where|fill_|zero_|zeros|ones|abs|sign|sigmoid|tanh|rsub|ne|eq|gt|lt|ge|le|max|min|amax)$|pool|"
            r"softmax|nll_loss|cross_entropy|mse_loss|gather|scatter|index|cat|stack|flip|pad"
        ),
    ),
    (
        "autograd and dispatch",
        re.compile(r"^autograd::|^aten::(view|reshape|expand|t|transpose|permute|as_strided|empty)"),
    ),
)
OTHER = "other"


def kind_of(name: str) -> str:
    """The kind an operator event belongs to (`KINDS`), or `other`."""
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return OTHER


def amdahl(share: float, k: float) -> float:
    """Whole-step speed-up when a `share` of the time becomes `k` times faster (k = inf: that share vanishes)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    rest = 1.0 - share
    return 1.0 / (rest + (0.0 if k == float("inf") else share / k))


@dataclass
class Breakdown:
    model: str
    case: str  # plain | module
    precision: str  # fp32 | bf16 (runtime.amp=true: bf16 autocast of the target model)
    seconds_per_step: float
    by_kind: dict[str, float]  # seconds per step
    top: list[tuple[str, float]]  # the largest operators, seconds per step

    def share(self, kind: str) -> float:
        total = sum(self.by_kind.values())
        return self.by_kind.get(kind, 0.0) / total if total else 0.0


def profile_steps(step, steps: int, warmup: int) -> tuple[float, dict[str, float], list[tuple[str, float]]]:
    """(seconds per step, self seconds per step by operator kind, top operators): each of `steps` steps is profiled
    on its own and every figure is the median over them, so a step slowed by the machine (a busy VM's hiccup)
    does not move the shares."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        step()
    per_step: list[dict[str, float]] = []  # operator -> self seconds, one dict per step
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        per_step.append({e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages() if e.self_cpu_time_total > 0})
    ops = sorted({op for seconds in per_step for op in seconds})
    per_op = {op: statistics.median(seconds.get(op, 0.0) for seconds in per_step) for op in ops}
    by_kind: dict[str, float] = {}
    for kind in kinds_in_order():
        totals = [sum(t for op, t in seconds.items() if kind_of(op) == kind) for seconds in per_step]
        if any(totals):
            by_kind[kind] = statistics.median(totals)
    total = statistics.median(sum(seconds.values()) for seconds in per_step)
    top = sorted(per_op.items(), key=lambda item: -item[1])[:8]
    return total, by_kind, top


def build_step(spec: ModelSpec, with_module: bool, batch: int, precision: str = "fp32"):
    """The runner's training step on one fixed batch of the `synthetic` stand-in (CIFAR-shaped; only pixels differ)."""
    if spec.family != "classification":
        raise SystemExit(f"op breakdown supports the classification models only, choose from {classification()}")
    # bench 8's overrides for this model, path and precision (its learning rate included), on a stand-in
    # of `batch` training and 2 test images: the breakdown decomposes exactly the step bench 8 times
    bench8 = argparse.Namespace(quick=False, device="cpu")
    overrides = model_overrides(
        bench8, spec, None, with_module=with_module, precision=precision, sizes=(batch, batch, batch, 2)
    )
    cfg = compose_config(overrides)
    base = build_bench_task(cfg)
    task = base.variant(fixed_batch=base.first_batch(batch, torch.Generator().manual_seed(1)))
    return train_step(build_side(cfg, task), task, batch)


def classification() -> str:
    return ", ".join(name for name, spec in MODELS.items() if spec.family == "classification")


def breakdown(
    name: str, with_module: bool, steps: int, warmup: int, batch: int | None = None, precision: str = "fp32"
) -> Breakdown:
    if name not in MODELS:
        raise SystemExit(f"model {name} not supported, choose from {classification()}")
    spec = MODELS[name]
    if precision not in ("fp32", "bf16"):
        raise SystemExit(f"precision {precision} not supported, choose from fp32, bf16")
    step = build_step(spec, with_module, batch or spec.batch, precision)
    seconds, by_kind, top = profile_steps(step, steps, warmup)
    return Breakdown(name, "module" if with_module else "plain", precision, seconds, by_kind, top)


def kinds_in_order() -> list[str]:
    return [kind for kind, _ in KINDS] + [OTHER]


def markdown(rows: list[Breakdown], k: float) -> str:
    matrix = KINDS[0][0]
    head = ["model", "step", "precision", "ms / step (profiled)"] + [f"{kind} %" for kind in kinds_in_order()]
    head += [f"bound if matrix ops {k:g}x faster", "bound if matrix ops free"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        f = row.share(matrix)
        cells = [row.model, row.case, row.precision, f"{1000 * row.seconds_per_step:.1f}"]
        cells += [f"{100 * row.share(kind):.1f}" for kind in kinds_in_order()]
        cells += [f"{amdahl(f, k):.2f}x", f"{amdahl(f, float('inf')):.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[Breakdown], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "step", "precision", "kind", "seconds_per_step", "share"])
        for row in rows:
            for kind in kinds_in_order():
                writer.writerow(
                    [
                        row.model,
                        row.case,
                        row.precision,
                        kind,
                        f"{row.by_kind.get(kind, 0.0):.6f}",
                        f"{row.share(kind):.4f}",
                    ]
                )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.op_breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18-w16,resnet18-w64,small_cnn", help=f"from: {classification()}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precisions",
        default="fp32",
        help="fp32 and/or bf16 (bf16 autocast, runtime.amp=true; emulated and not meaningful on a CPU without bf16 "
        "units)",
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="profiled training steps per case, each on its own (default 10)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="unprofiled steps first (default 3)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the model's, 128)")
    parser.add_argument(
        "--matrix-speedup",
        type=float,
        default=16.0,
        help="k in the Amdahl bound: how much faster matrix ops become (default 16 = AMX bf16 peak / AVX-512 fp32 "
        "peak per core, 1,024 / 64 FLOP per cycle; docs/benchmarks.md 'fp32 vs bf16 on CPU')",
    )
    parser.add_argument("--top", action="store_true", help="also print each case's largest operators")
    parser.add_argument("--out", type=Path, default=None, help="CSV of seconds and shares per kind")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Breakdown]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info(torch.device("cpu"))
    print(f"{info['cpu']}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
            for with_module in (False, True):
                row = breakdown(name, with_module, args.steps, args.warmup, args.batch, precision)
                rows.append(row)
                print(f"  {name} {row.case} {precision}: {1000 * row.seconds_per_step:.1f} ms per step", flush=True)
                if args.top:
                    for op, seconds in row.top:
                        print(f"    {1000 * seconds:8.2f} ms  {op}  ({kind_of(op)})")
    print(markdown(rows, args.matrix_speedup))
    if args.out:
        write_csv(rows, args.out)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

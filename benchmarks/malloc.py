"""Benchmark 7: glibc malloc default vs M_MMAP_MAX=0 (`--malloc no-mmap`), in alternating fresh processes."""

from __future__ import annotations

import torch

from al_runner.loop import score_inputs
from benchmarks.harness import Results, interleaved, median, peak_rss_bytes, tune_glibc_malloc
from benchmarks.kcenter import run_child
from benchmarks.runner_side import (
    build_bench_task,
    build_side,
    compose_config,
    default_format,
    side_overrides,
    task_overrides,
)
from benchmarks.training import one_step


def malloc_child(args, mode: str, width: int, n: int, steps: int) -> dict:
    """Fresh process: the allocator mode is set before any tensor exists, as the runner would do.

    Training steps on one fixed batch, then scoring n pool images at the eval batch and the alternative batch.
    """
    tuned = tune_glibc_malloc() if mode == "no-mmap" else False
    device, batch = args.device, args.batch
    cfg = compose_config(task_overrides(args, False, max(n, batch), 2) + side_overrides(args, width))
    base = build_bench_task(cfg)
    task = base.variant(fixed_batch=base.first_batch(batch, torch.Generator().manual_seed(1)))
    side = build_side(cfg, task)
    needs = frozenset({"predicted_loss"})
    t = interleaved({"train": one_step(side, task, batch)}, steps, 2, device)
    cases, warm = {}, {}
    for bs in (args.alt_eval_batch, args.eval_batch):
        cases[f"batch {bs}"] = lambda bs=bs: score_inputs(side.learner, task, torch.arange(n), bs, needs)
        warm[f"batch {bs}"] = lambda bs=bs: score_inputs(side.learner, task, torch.arange(min(n, bs)), bs, needs)
    t.update(interleaved(cases, 1, 1, device, warmup_cases=warm))
    out = {"tuned": tuned, "train": batch / median(t["train"])}
    out.update({k: n / median(v) for k, v in t.items() if k != "train"})
    out["max_rss_mib"] = peak_rss_bytes() / 2**20
    return out


def child_argv(args, mode: str, width: int) -> list[str]:
    """The options the child process needs to rebuild the same runner side (it parses them like main)."""
    return [
        mode,
        width,
        args.malloc_n,
        args.malloc_steps,
        str(args.device),
        args.batch,
        args.eval_batch,
        args.alt_eval_batch,
    ]


def bench_malloc(args, res: Results) -> None:
    width = max(args.widths)
    b = "7 malloc"
    n, steps = args.malloc_n, args.malloc_steps
    print(
        f"\n[7] glibc malloc default vs M_MMAP_MAX=0 (--malloc no-mmap), ResNet-18 width {width} + loss module, "
        f"{default_format(args)}: {steps} training steps of {args.batch}, scoring {n} images at batch "
        f"{args.alt_eval_batch} and {args.eval_batch}; {args.malloc_repeats} fresh processes per mode, alternating",
        flush=True,
    )
    runs: dict[str, list[dict]] = {"default": [], "no-mmap": []}
    for r in range(args.malloc_repeats):
        for mode in ["default", "no-mmap"] if r % 2 == 0 else ["no-mmap", "default"]:
            runs[mode].append(run_child("--malloc-child", child_argv(args, mode, width)))
    if not runs["no-mmap"][0]["tuned"]:
        print("  (mallopt unavailable here: not glibc/Linux)")
    for key in runs["default"][0]:
        if key == "tuned":
            continue
        unit = "MiB" if key == "max_rss_mib" else "img/s"
        d, t = median([x[key] for x in runs["default"]]), median([x[key] for x in runs["no-mmap"]])
        label = {"train": "training step", "max_rss_mib": "max RSS of the process"}.get(key, f"scoring, {key}")
        res.add(b, f"w{width} {label}: default malloc", d, unit)
        res.add(b, f"w{width} {label}: no-mmap", t, unit, note=f"x{t / d:.2f}")

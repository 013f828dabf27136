"""Benchmarks 1 and 2: a training step with vs without the loss module; one epoch, runner vs reference.

1  training step, ResNet-18 (CIFAR stem) at each width, one fixed batch: plain target model (sampler=random)
   vs with the loss-prediction module (sampler=learning_loss), NCHW vs channels_last; FLOPs per image
2  one training epoch over N real images: the runner's pipeline (uint8 tensor, batched augmentation, Learner,
   loop.train_one_epoch) vs the reference's DataLoader + PIL loop, same network and optimiser
"""

from __future__ import annotations

import contextlib
import time

import torch

from al_runner.loop import train_one_epoch
from benchmarks.harness import Results, interleaved, median, median_interval, paired_ratio, paired_spread, sync
from benchmarks.reference import reference_loader, reference_train_epoch
from benchmarks.runner_side import (
    BenchTask,
    Side,
    build_bench_task,
    build_side,
    compose_config,
    default_format,
    formats,
    side_overrides,
    task_overrides,
)


def one_step(side: Side, task: BenchTask, batch: int):
    """loop.train_one_epoch over the task's fixed batch: one optimiser step per `task.fixed_repeats`, and one host
    sync at the end."""
    return lambda: train_one_epoch(
        side.learner, task, torch.arange(batch), side.optimizer, batch, torch.Generator(), 0, 0
    )


@contextlib.contextmanager
def autograd_mean_gap():
    """The module's pooling as it was before the channels_last backward (commit 408f17d): autograd's mean,
    whose gradient is NCHW whatever the feature map's format. For `--gap-ablation` only."""
    import al_runner.learning_loss as learning_loss

    saved = learning_loss.global_average_pool
    learning_loss.global_average_pool = lambda f: f.flatten(2).mean(dim=2) if f.dim() > 2 else f.reshape(f.shape[0], -1)
    try:
        yield
    finally:
        learning_loss.global_average_pool = saved


def with_autograd_mean_gap(step):
    def run():
        with autograd_mean_gap():
            return step()

    return run


def step_sides(args, width: int, task: BenchTask) -> dict[str, tuple[Side, str, bool]]:
    """name -> (side, format label, with loss module), for every format of the device (+ the old-GAP ablation)."""
    sides = {}
    for label, cl in formats(args):
        for with_module in (False, True):
            cfg = compose_config(
                task_overrides(args, False, args.batch, 2)
                + side_overrides(args, width, loss_module=with_module, channels_last=cl)
            )
            sides[f"{'loss module' if with_module else 'plain'} {label}"] = (build_side(cfg, task), label, with_module)
            if with_module and args.gap_ablation:
                sides[f"loss module {label} old GAP"] = (build_side(cfg, task), label, with_module)
    return sides


def flops_per_image(args, width: int, task: BenchTask) -> float:
    """GFLOP of one plain NCHW training step per image (counted once, outside the timed runs)."""
    from benchmarks.flops import flop_counter

    cfg = compose_config(
        task_overrides(args, False, args.batch, 2) + side_overrides(args, width, loss_module=False, channels_last=False)
    )
    side = build_side(cfg, task)
    counter = flop_counter()
    with counter:
        one_step(side, task, args.batch)()
    return counter.get_total_flops() / args.batch / 1e9


def bench_train_step(args, res: Results) -> None:
    device, batch = args.device, args.batch
    fmts = formats(args)
    for width in args.widths:
        full = width == 64
        warmup, repeats = (
            (args.step_warmup_full, args.step_repeats_full) if full else (args.step_warmup, args.step_repeats)
        )
        base = build_bench_task(compose_config(task_overrides(args, False, batch, 2) + side_overrides(args, width)))
        task = base.variant(fixed_batch=base.first_batch(batch, torch.Generator().manual_seed(1)))
        sides = step_sides(args, width, task)
        gflop = flops_per_image(args, width, task)
        print(
            f"\n[1] training step, ResNet-18 width {width}, batch {batch}, {device.type}: "
            f"{warmup} warm-up + {repeats} timed steps per case, interleaved",
            flush=True,
        )
        cases = {name: one_step(side, task, batch) for name, (side, _, _) in sides.items()}
        cases = {
            name: with_autograd_mean_gap(step) if name.endswith("old GAP") else step for name, step in cases.items()
        }
        t = interleaved(cases, repeats, warmup, device)
        b = f"1 train step w{width}"
        for name, (_, label, with_module) in sides.items():
            ips = batch / median(t[name])
            res.add(
                b,
                f"w{width} train {name}",
                ips,
                "img/s",
                note="autograd-mean GAP (before 408f17d)" if "old" in name else "",
            )
            if not name.endswith("old GAP"):
                res.facts[f"train_ips/w{width}/{label}/{'ll' if with_module else 'plain'}"] = ips
        for label, _ in fmts:
            ll, plain = t[f"loss module {label}"], t[f"plain {label}"]
            ratio = paired_ratio(ll, plain)
            lo, hi = paired_spread(ll, plain)
            res.add(
                b,
                f"w{width} loss-module step time / plain ({label})",
                ratio,
                "x",
                "<= 1.03",
                f"overhead {100 * (ratio - 1):+.1f} % (repeats {100 * (lo - 1):+.1f} … {100 * (hi - 1):+.1f} %)",
                met=ratio <= 1.03,
            )
            if args.gap_ablation:
                old = t[f"loss module {label} old GAP"]
                ratio, (lo, hi) = paired_ratio(old, plain), paired_spread(old, plain)
                res.add(
                    b,
                    f"w{width} loss-module step time / plain ({label}), autograd-mean GAP",
                    ratio,
                    "x",
                    note=f"overhead {100 * (ratio - 1):+.1f} % (repeats {100 * (lo - 1):+.1f} … "
                    f"{100 * (hi - 1):+.1f} %)",
                )
                res.add(
                    b,
                    f"w{width} GAP with channels_last backward: speed-up of the loss-module step ({label})",
                    paired_ratio(old, ll),
                    "x",
                )
        res.add(
            b,
            f"w{width} channels_last speed-up (plain, NCHW time / CL time)",
            paired_ratio(t["plain NCHW"], t["plain channels_last"]),
            "x",
        )
        res.add(
            b,
            f"w{width} channels_last speed-up (loss module)",
            paired_ratio(t["loss module NCHW"], t["loss module channels_last"]),
            "x",
        )
        res.add(b, f"w{width} FLOPs per training image (fwd+bwd, plain)", gflop, "GFLOP")
        best = max(res.facts[f"train_ips/w{width}/{lab}/plain"] for lab, _ in fmts)
        res.add(b, f"w{width} achieved (best format, plain)", gflop * best, "GFLOP/s")
        res.facts[f"gflop/w{width}"] = gflop
        if args.compile:
            bench_compile_step(args, res, width, task, warmup, repeats)
        if args.loss_modules:
            bench_module_options(args, res, width, task)


def bench_compile_step(args, res: Results, width: int, task: BenchTask, warmup: int, repeats: int) -> None:
    """runtime.compile=true vs eager, loss-module step, the device's default format (or channels_last)."""
    device, batch = args.device, args.batch
    cl = default_format(args) == "channels_last" or args.cl_for_compile
    sides = {}
    for name, compile in (("eager", False), ("compiled", True)):
        cfg = compose_config(
            task_overrides(args, False, batch, 2) + side_overrides(args, width, channels_last=cl, compile=compile)
        )
        sides[name] = build_side(cfg, task)
    t0 = time.perf_counter()
    one_step(sides["compiled"], task, batch)()
    sync(device)
    compile_s = time.perf_counter() - t0
    t = interleaved({k: one_step(s, task, batch) for k, s in sides.items()}, repeats, warmup, device)
    b = f"1 train step w{width}"
    res.add(b, f"w{width} torch.compile first step (compilation)", compile_s, "s")
    res.add(
        b,
        f"w{width} torch.compile speed-up, loss module ({'channels_last' if cl else 'NCHW'})",
        paired_ratio(t["eager"], t["compiled"]),
        "x",
    )


def bench_module_options(args, res: Results, width: int, task: BenchTask) -> None:
    """Benchmark 1 for runtime.loss_module (each of --loss-modules) and runtime.cuda_graph (--cuda-graph), in the
    device's default memory format: each module step against the plain step with the same graph setting, and
    against the plain eager step; medians of paired ratios with a 95 % interval (order statistics)."""
    device, batch, steps = args.device, args.batch, args.steps_per_sample
    kinds = [k.strip() for k in args.loss_modules.split(",") if k.strip()]
    cl = default_format(args) == "channels_last"
    graphs = (False, True) if args.cuda_graph else (False,)
    sides = {}
    for graph in graphs:
        suffix = " graph" if graph else ""
        for name, with_module, kind in [("plain", False, None)] + [(f"module {k}", True, k) for k in kinds]:
            cfg = compose_config(
                task_overrides(args, False, batch, 2)
                + side_overrides(
                    args, width, loss_module=with_module, channels_last=cl, module_kind=kind, cuda_graph=graph
                )
            )
            sides[name + suffix] = build_side(cfg, task)
    # warm-up covers the graph's eager steps and capture (CudaGraphStep: 3 + 1) and torch.compile's first calls
    warmup = max(args.option_warmup, 5 if args.cuda_graph else 1)
    print(
        f"\n[1] module options, ResNet-18 width {width}, batch {batch}, {device.type}, "
        f"{'channels_last' if cl else 'NCHW'}: {warmup} warm-up + {args.option_repeats} timed samples of {steps} "
        f"step(s) per case, interleaved",
        flush=True,
    )
    repeated = task.variant(fixed_repeats=steps)
    t = interleaved({k: one_step(s, repeated, batch) for k, s in sides.items()}, args.option_repeats, warmup, device)
    b = f"1 module options w{width}"
    for name in sides:
        res.add(b, f"w{width} train {name}", batch * steps / median(t[name]), "img/s")
    for graph in graphs:
        suffix = " graph" if graph else ""
        for kind in kinds:
            ratios = [m / p for m, p in zip(t[f"module {kind}{suffix}"], t[f"plain{suffix}"])]
            lo, hi = median_interval(ratios)
            ratio = median(ratios)
            res.add(
                b,
                f"w{width} module {kind}{suffix} step time / plain{suffix}",
                ratio,
                "x",
                "<= 1.05",
                f"overhead {100 * (ratio - 1):+.1f} % (95 % CI {100 * (lo - 1):+.1f} … {100 * (hi - 1):+.1f} %)",
                met=ratio <= 1.05,
            )
            if graph:
                res.add(
                    b,
                    f"w{width} module {kind} graph step time / plain eager",
                    paired_ratio(t[f"module {kind} graph"], t["plain"]),
                    "x",
                )
        if graph:
            res.add(b, f"w{width} CUDA graph speed-up, plain step", paired_ratio(t["plain"], t["plain graph"]), "x")
    for name, side in sides.items():
        graph_step = getattr(side.learner, "_graph_step", None)
        if graph_step is not None:  # how many steps really replayed (the rest ran eagerly)
            print(f"  {name}: CUDA graph steps {graph_step.counts}", flush=True)


def bench_epoch(args, res: Results) -> None:
    device, batch = args.device, args.batch
    fmts, dflt = formats(args), default_format(args)
    data_cfg = task_overrides(args, True)
    task = build_bench_task(compose_config(data_cfg + side_overrides(args, args.widths[0])))
    pool = task.pool_size
    step = max(1, pool // args.epoch_images)
    subset = torch.arange(0, pool, step)[: args.epoch_images]
    n = subset.numel()
    images, labels = task.pool_images(subset)
    augmentation = task.task.augmentation
    loader = reference_loader(images, labels, True, batch, args.ref_workers, device, augmentation)
    gen = torch.Generator().manual_seed(0)
    b = "2 epoch"
    print(f"\n[2] pipelines alone over {n} real images (every {step}th of the pool), batch {batch}", flush=True)

    def runner_pipeline():
        for _ in task.labeled_batches(subset, batch, gen, augment=True):
            pass

    def reference_pipeline():
        for inputs, _ in loader:
            inputs.to(device)

    t = interleaved({"runner": runner_pipeline, "reference": reference_pipeline}, args.pipe_repeats, 1, device)
    res.add(b, "data pipeline alone: runner (uint8 tensor, batched augmentation)", n / median(t["runner"]), "img/s")
    res.add(
        b,
        f"data pipeline alone: reference (DataLoader, PIL, workers={args.ref_workers})",
        n / median(t["reference"]),
        "img/s",
    )
    res.facts["pipe_ips/runner"], res.facts["pipe_ips/ref"] = n / median(t["runner"]), n / median(t["reference"])

    for width in args.widths:
        repeats = args.epoch_repeats_full if width == 64 else args.epoch_repeats
        sides = {
            f"runner {label}": build_side(
                compose_config(data_cfg + side_overrides(args, width, channels_last=cl)), task
            )
            for label, cl in fmts
        }
        reference = build_side(
            compose_config(data_cfg + side_overrides(args, width, channels_last=False, amp=False)), task
        )
        timed = {k: task.variant(timed=True) for k in sides}
        ref_timing: dict[str, float] = {}
        cases = {
            k: (lambda k=k: train_one_epoch(sides[k].learner, timed[k], subset, sides[k].optimizer, batch, gen, 0, 0))
            for k in sides
        }
        cases["reference"] = lambda: reference_train_epoch(
            reference.learner, loader, reference.optimizer, device, ref_timing
        )
        # warm-up: two batches through each side (allocator, thread pool, loader), not a full epoch
        small = subset[: 2 * batch]
        small_loader = reference_loader(*task.pool_images(small), True, batch, 0, device, augmentation)
        warm = {
            k: (lambda k=k: train_one_epoch(sides[k].learner, task, small, sides[k].optimizer, batch, gen, 0, 0))
            for k in sides
        }
        warm["reference"] = lambda: reference_train_epoch(
            reference.learner, small_loader, reference.optimizer, device, {}
        )
        print(
            f"\n[2] one training epoch, ResNet-18 width {width} + loss module, {n} images, batch {batch}: "
            f"warm-up 2 batches, {repeats} timed epochs per case, interleaved",
            flush=True,
        )
        ref_timing.clear()
        t = interleaved(cases, repeats, 1, device, warmup_cases=warm)
        ref_ips = n / median(t["reference"])
        res.add(b, f"w{width} epoch: reference (DataLoader + PIL, NCHW fp32)", ref_ips, "img/s")
        res.facts[f"epoch_ips/w{width}/ref"] = ref_ips
        target = 1.0 if width == 64 else 1.3
        for label, _ in fmts:
            k = f"runner {label}"
            ips = n / median(t[k])
            res.facts[f"epoch_ips/w{width}/{label}"] = ips
            res.add(b, f"w{width} epoch: runner {label}{' (default)' if label == dflt else ''}", ips, "img/s")
            ratio = paired_ratio(t["reference"], t[k])
            res.add(
                b,
                f"w{width} epoch throughput runner {label} / reference",
                ratio,
                "x",
                f">= {target}",
                met=ratio >= target,
            )
            res.add(
                b,
                f"w{width} runner {label}: step time outside the model (batch+augment)",
                100 * timed[k].data_seconds / sum(t[k]),
                "%",
            )
        res.add(
            b,
            f"w{width} reference: step time waiting on the DataLoader",
            100 * ref_timing.get("data", 0.0) / sum(t["reference"]),
            "%",
        )

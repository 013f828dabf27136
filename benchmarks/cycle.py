"""Benchmark 6: per-phase seconds (train / eval / select) of one cycle of experiment=reduced_cifar10_jpg,
run by the runner itself (`ActiveLearningRun`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from al_runner.runner import ActiveLearningRun
from benchmarks.harness import Results
from benchmarks.runner_side import compose_config, task_overrides


def cycle_overrides(args) -> list[str]:
    overrides = task_overrides(args, True) + [
        f"sampler={args.cycle_sampler}",
        f"device={args.device}",
        "progress=false",
        "schedule.cycles=2",
    ]
    if args.cycle_epochs is not None:
        overrides.append(f"schedule.epochs={args.cycle_epochs}")
    if args.quick:
        overrides += ["schedule.initial_size=128", "schedule.query_size=128", "schedule.subset_size=512"]
    return overrides + list(args.override)


def bench_cycle(args, res: Results) -> None:
    overrides = cycle_overrides(args)
    cfg = compose_config(overrides)
    s = cfg.schedule
    preset_epochs = int(compose_config(task_overrides(args, True)).schedule.epochs)  # extrapolate to it
    b = "6 reduced cycle"
    print(
        f"\n[6] one cycle (cycle 0: train, evaluate, select) of: python -m al_runner {' '.join(overrides)}\n"
        f"    {s.initial_size} labeled, {s.epochs} epochs (preset: {preset_epochs}), M={s.subset_size}, "
        f"K={s.query_size}, {cfg.model.name} width {cfg.model.net.width}, runtime {dict(cfg.runtime)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = ActiveLearningRun(cfg, Path(tmp))
        build_s = time.perf_counter() - t0
        run.run_dir.mkdir(parents=True, exist_ok=True)
        run.pool.label_initial(int(s.initial_size), run.init_generator)
        run._run_cycle(0, last=False)
        row = run.state.rows[0]
    total = row["train_s"] + row["eval_s"] + row["select_s"]
    res.add(b, "build (load cached images, model)", build_s, "s")
    for phase in ("train", "eval", "select"):
        v = row[f"{phase}_s"]
        res.add(b, f"{phase} ({100 * v / total:.0f} % of the cycle)", v, "s")
    epochs = int(s.epochs)
    per_epoch = row["train_s"] / max(epochs, 1)
    res.add(b, "train seconds per epoch", per_epoch, "s", note=f"{int(s.initial_size) / per_epoch:.0f} img/s")
    res.add(
        b,
        f"cycle 0 at the preset's {preset_epochs} epochs (extrapolated)",
        per_epoch * preset_epochs + row["eval_s"] + row["select_s"],
        "s",
        note="extrapolated" if epochs != preset_epochs else "measured",
    )
    res.facts["cycle/epoch_s"], res.facts["cycle/eval_s"], res.facts["cycle/select_s"] = (
        per_epoch,
        row["eval_s"],
        row["select_s"],
    )

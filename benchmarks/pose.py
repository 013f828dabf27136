"""Pose benchmark: training step of the stacked hourglass on this CPU, with and without the loss module,
and a FLOP-count projection of one fig7_mpii trial on one GPU.

    OMP_NUM_THREADS=1 python -m benchmarks.pose [--steps 3] [--gpu-tflops 400] [--utilisation 0.3]

A step = forward, heatmap MSE (+ the loss-prediction module on the taps and the margin ranking loss,
lambda 1e-4), backward, RMSprop step; batch 6 (Sec. 4.3). Timings are medians over `--steps` steps
after one warm-up step. The CPU is shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from al_runner.learning_loss import LossPredictionModule, MarginRankingLoss
from al_runner.models.taps import FeatureTaps
from al_runner.tasks.pose.hourglass import hourglass
from benchmarks.flops import flop_counter

SETTINGS = {  # name: (model kwargs, input size)
    "paper hg2x256 @256": (dict(stacks=2, features=256, blocks=1, depth=4), 256),
    "small hg2x32 @64 (mpii_cpu)": (dict(stacks=2, features=32, blocks=1, depth=3), 64),
}
TAPS = ["stacks.0.head", "stacks.1.head"]
BATCH = 6


def make_step(model_kwargs: dict, size: int, with_module: bool):
    torch.manual_seed(0)
    model = hourglass(**model_kwargs)
    taps = FeatureTaps(model, TAPS)
    module = LossPredictionModule(len(TAPS)) if with_module else None
    x = torch.randn(BATCH, 3, size, size)
    target = torch.rand(BATCH, 16, size // 4, size // 4)
    ranking = MarginRankingLoss(1.0)
    if module is not None:
        with torch.no_grad():
            model(x)
            module(taps.features(TAPS))
    params = list(model.parameters()) + (list(module.parameters()) if module is not None else [])
    optimizer = torch.optim.RMSprop(params, lr=2.5e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        outputs = model(x)
        per_sample = sum(((o - target) ** 2).mean((-2, -1)) for o in outputs).mean(1)
        loss = per_sample.mean()
        if module is not None:
            predicted = module(taps.features(TAPS))
            loss = loss + 1e-4 * ranking(predicted, per_sample.detach())
        loss.backward()
        optimizer.step()

    return step, model


def time_step(step, steps: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def count_flops(fn) -> int:
    with flop_counter() as counter:
        fn()
    return counter.get_total_flops()


def trial_flops(train_step_flops: float, forward_flops_per_image: float) -> dict[str, float]:
    """fig7_mpii, one trial (one seed x one sampler): 10 cycles, 1k..10k labeled, 125 epochs, batch 6;
    each cycle evaluates the 2,958 validation people; 9 cycles score M = 5,000 people."""
    steps = sum(125 * math.ceil(1000 * c / BATCH) for c in range(1, 11))
    return {
        "train steps": steps,
        "train": steps * train_step_flops,
        "eval+score": (10 * 2958 + 9 * 5000) * forward_flops_per_image,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pose", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--gpu-tflops",
        type=float,
        default=400.0,
        help="assumed dense bf16 throughput of the GPU, TFLOP/s (H100 SXM peak ~990)",
    )
    parser.add_argument(
        "--utilisation",
        type=float,
        default=0.3,
        help="assumed fraction of that throughput a batch-6 hourglass step reaches",
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, loadavg before {os.getloadavg()}")
    print(f"{'setting':32s} {'module':>6s} {'step s':>8s} {'GFLOP/step':>11s}")
    flops = {}
    for name, (kwargs, size) in SETTINGS.items():
        for with_module in (False, True):
            step, model = make_step(kwargs, size, with_module)
            seconds = time_step(step, args.steps)
            step_flops = count_flops(step)
            flops[(name, with_module)] = step_flops
            print(f"{name:32s} {'yes' if with_module else 'no':>6s} {seconds:8.3f} {step_flops / 1e9:11.1f}")
        model.eval()
        with torch.no_grad():
            forward = count_flops(lambda: model(torch.randn(1, 3, size, size)))
        flops[(name, "forward")] = forward
        print(f"{name:32s} forward, 1 image: {forward / 1e9:.2f} GFLOP")
    paper = "paper hg2x256 @256"
    trial = trial_flops(flops[(paper, True)], flops[(paper, "forward")])
    total = trial["train"] + trial["eval+score"]
    rate = args.gpu_tflops * 1e12 * args.utilisation
    print(
        f"\nfig7_mpii trial (learning_loss, one seed): {trial['train steps']:,} train steps, "
        f"{trial['train'] / 1e15:.1f} PFLOP train + {trial['eval+score'] / 1e15:.2f} PFLOP eval/scoring"
    )
    print(
        f"assumed GPU: {args.gpu_tflops:.0f} TFLOP/s x {args.utilisation:.0%} utilisation = {rate / 1e12:.0f} TFLOP/s "
        f"-> {total / rate / 3600:.1f} GPU-hours per trial, x15 trials (3 seeds x 5 samplers) = "
        f"{15 * total / rate / 3600:.0f} GPU-hours (compute only, data loading assumed hidden)"
    )
    print(f"loadavg after {os.getloadavg()}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Detection benchmarks on this machine (CPU by default), and a FLOP-based projection of one fig6_voc trial.

  1  training step (forward, per-image MultiBox loss, backward, SGD step) through the real Learner:
     SSD300-VGG16 at batch 2 (300 px) and SSDlite320 at batch 8 (320 px and voc_cpu's 128 px), each
     plain and with the loss-prediction module on the six source maps + margin ranking loss
  2  per-image MultiBox loss (ours) vs torchvision's own matching + SSD.compute_loss, batch 32 at SSD300's
     8,732 anchors / 21 classes, loss + backward to the head outputs
  3  data pipeline, per image per core, on VOC-sized (375-500 px) generated JPEGs: decode; SSD augmentation
     by torchvision's v2 reference recipe and by the fast pipeline (augmentation.pipeline, same boxes); the
     whole training item (decode + fast augmentation, as a DataLoader worker makes it); eval resize. Repeats
     interleaved; the CPU time other processes used meanwhile is printed (the machine may be shared)
  4  FLOPs (torch.utils.flop_counter.FlopCounterMode) of SSD300 per image: train step (fwd + bwd) and
     inference, and the projected GPU time of one fig6_voc trial under a stated throughput assumption
  5  (for a GPU: --device cuda) SSD300 + loss module training throughput fed by the task's own data pipeline
     (decode + fast augmentation in N persistent DataLoader workers, --workers-list), against the data
     pipeline alone and the model alone on one fixed batch: does the pipeline keep the device busy?

Timings: A/B repeats interleaved, medians after one warm-up. The CPU may be shared: the load average is
printed at start and end.

  OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.detection --threads 1 [--sections 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models.detection import ssd300_vgg16 as tv_ssd300

from al_runner.learner import Learner
from al_runner.learning_loss import LearningLoss, MarginRankingLoss
from al_runner.loop import train_one_epoch
from al_runner.runtime import Runtime
from al_runner.tasks.detection import (
    VOCDetectionTask,
    samples,
    ssd300_vgg16,
    ssdlite320_mobilenet_v3_large,
)
from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit
from al_runner.tasks.detection.multibox import MultiBoxLoss
from benchmarks.harness import ForeignLoad

TAPS = [f"backbone[{i}]" for i in range(6)]
VOC_CLASSES = 20
# fig6_voc (paper Sec. 4.2): 10 cycles of 1k..10k labeled, 300 epochs each, the whole pool scored, VOC07 test.
POOL, TEST, K, CYCLES, EPOCHS = 16_551, 4_952, 1_000, 10, 300
H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM, bf16 dense tensor-core peak (data sheet)


def median_ms(samples):
    return 1000 * statistics.median(samples)


def make_tree(tmp: Path, images: int = 60) -> Path:
    """VOC-sized generated images (375-500 px sides, like VOC's 500x375 typical)."""
    return generate_vocdevkit(tmp, images=images, seed=0, size_range=(375, 500))


def task_for(root: Path, image_size: int, classes=CLASSES) -> VOCDetectionTask:
    return VOCDetectionTask(
        "bench",
        str(root),
        list(classes),
        [[2007, "trainval"], [2012, "trainval"]],
        [[2007, "test"]],
        image_size=image_size,
    )


def learner_for(build, num_classes, with_module: bool, example) -> Learner:
    torch.manual_seed(0)
    method = LearningLoss(MarginRankingLoss(1.0), weight=1.0, detach_epoch=10**9) if with_module else None
    learner = Learner(
        build(num_classes=num_classes),
        TAPS,
        "backbone[1]",
        Runtime(torch.device("cpu"), amp=False, channels_last=True),
        method,
    )
    learner.materialize(example)
    return learner


def bench_training_steps(root: Path, repeats: int) -> list[str]:
    rows = []
    for name, build, size, batch in (
        ("SSD300-VGG16", ssd300_vgg16, 300, 2),
        ("SSDlite320-MobileNetV3", ssdlite320_mobilenet_v3_large, 320, 8),
        ("SSDlite320-MobileNetV3 @128 (voc_cpu)", ssdlite320_mobilenet_v3_large, 128, 8),
    ):
        task = task_for(root, size)
        inputs, targets, _ = next(
            iter(task.labeled_batches(torch.arange(batch), batch, torch.Generator().manual_seed(0)))
        )
        learners = {m: learner_for(build, len(CLASSES) + 1, m, inputs[:2]) for m in (False, True)}
        optimizers = {m: torch.optim.SGD(l.parameters(), lr=1e-3, momentum=0.9) for m, l in learners.items()}
        times = {False: [], True: []}
        for r in range(repeats + 1):
            for m in (False, True) if r % 2 == 0 else (True, False):
                learner, optimizer = learners[m], optimizers[m]
                learner.train()
                start = time.perf_counter()
                loss = learner.training_loss(task, inputs, targets, epoch=0)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if r > 0:
                    times[m].append(time.perf_counter() - start)
        ratios = [w / p for p, w in zip(times[False], times[True])]
        rows.append(
            f"| {name} | {batch} | {size} | {median_ms(times[False]):.0f} | {median_ms(times[True]):.0f} "
            f"| {100 * (statistics.median(ratios) - 1):+.1f} % |"
        )
    return [
        "| model | batch | input px | plain step (ms) | with module (ms) | module overhead |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def bench_pipeline_throughput(
    root: Path, device: torch.device, workers_list: list[int], epochs: int, batch: int = 32
) -> list[str]:
    """img/s of paper_voc's training (SSD300, batch 32, the module on the six source maps, bf16 + channels_last on
    CUDA) with the data pipeline at each worker count; the pipeline alone and the model alone for comparison."""
    cuda = device.type == "cuda"
    rows = []
    model_alone = None
    for workers in workers_list:
        task = VOCDetectionTask(
            "bench",
            str(root),
            list(CLASSES),
            [[2007, "trainval"], [2012, "trainval"]],
            [[2007, "test"]],
            image_size=300,
            num_workers=workers,
        ).to(device)
        pool = torch.arange(task.pool_size)
        inputs, targets, _ = next(iter(task.labeled_batches(pool[:batch], batch, torch.Generator().manual_seed(0))))
        torch.manual_seed(0)
        method = LearningLoss(MarginRankingLoss(1.0), weight=1.0, detach_epoch=10**9)
        learner = Learner(
            ssd300_vgg16(num_classes=len(CLASSES) + 1),
            TAPS,
            "backbone[1]",
            Runtime(device, amp=cuda, channels_last=cuda),
            method,
        )
        learner.materialize(inputs[:2])
        optimizer = torch.optim.SGD(learner.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        generator = torch.Generator().manual_seed(1)

        def timed(run) -> float:
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            return time.perf_counter() - start

        first = timed(lambda: train_one_epoch(learner, task, pool, optimizer, batch, generator, 0, 0))  # workers start
        data = min(timed(lambda: [None for _ in task.labeled_batches(pool, batch, generator)]) for _ in range(2))
        train = (
            timed(
                lambda: [train_one_epoch(learner, task, pool, optimizer, batch, generator, 0, 0) for _ in range(epochs)]
            )
            / epochs
        )
        if model_alone is None:
            steps = max(4, task.pool_size // batch)
            learner.train()
            for _ in range(3):
                learner.train_step(task, inputs, targets, optimizer, 0)
            model_alone = (
                steps
                * batch
                / timed(lambda: [learner.train_step(task, inputs, targets, optimizer, 0) for _ in range(steps)])
            )
        n = task.pool_size
        rate = lambda x: f"{x:,.0f}" if x >= 100 else f"{x:.2f}"
        rows.append(f"| {workers} | {rate(n / data)} | {rate(n / train)} | {rate(model_alone)} | {first:.1f} |")
        task = None  # its persistent workers end with it
    return [
        f"SSD300-VGG16 + loss module, batch {batch}, {device}, {os.cpu_count()} CPU cores; "
        f"{epochs} timed epochs over the generated pool (after one that starts the workers):",
        "",
        "| DataLoader workers | data pipeline alone (img/s) | training with the pipeline (img/s) | "
        "model alone, one fixed batch (img/s) | first epoch incl. worker start (s) |",
        "|---|---|---|---|---|",
        *rows,
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_loss(root: Path, repeats: int) -> list[str]:
    """Batch 32 at SSD300's anchors; targets from the generated tree's annotations, scaled to 300 px."""
    torch.manual_seed(0)
    task = task_for(root, 300)
    targets = [t for _, batch, _ in task.test_batches(16) for t in batch]
    targets = (targets * 4)[:32]
    model = tv_ssd300(weights=None, weights_backbone=None, num_classes=VOC_CLASSES + 1)
    wrapper = ssd300_vgg16(num_classes=VOC_CLASSES + 1)
    anchor_boxes = wrapper.default_boxes(
        torch.zeros(1, 3, 300, 300), [torch.zeros(s, s) for s in (38, 19, 10, 5, 3, 1)]
    )
    n = anchor_boxes.shape[0]
    targets = [{"boxes": t["boxes"], "labels": t["labels"].clamp(max=VOC_CLASSES)} for t in targets]
    ours = MultiBoxLoss()

    def outputs():
        return {
            "cls_logits": torch.randn(32, n, VOC_CLASSES + 1, requires_grad=True),
            "bbox_regression": torch.randn(32, n, 4, requires_grad=True),
            "anchors": anchor_boxes.expand(32, -1, -1),
        }

    def torchvision_step(out):
        matched = ours.match(targets, out["anchors"])  # = SSD.forward's matching loop
        sum(model.compute_loss(targets, out, list(out["anchors"]), matched).values()).backward()

    def our_step(out):
        ours(out, targets)[1].backward()

    times = {"tv": [], "ours": []}
    for r in range(repeats + 1):
        for key in ("tv", "ours") if r % 2 == 0 else ("ours", "tv"):
            out = outputs()
            start = time.perf_counter()
            (torchvision_step if key == "tv" else our_step)(out)
            if r > 0:
                times[key].append(time.perf_counter() - start)
    ratios = [o / t for t, o in zip(times["tv"], times["ours"])]
    return [
        f"anchors {n}, batch 32, 21 classes: torchvision match + compute_loss + backward "
        f"{median_ms(times['tv']):.1f} ms; ours (per-image + batch loss) + backward {median_ms(times['ours']):.1f} ms "
        f"({100 * (statistics.median(ratios) - 1):+.1f} %)"
    ]


def bench_data(root: Path, repeats: int, limit: int = 60) -> tuple[list[str], float, float]:
    """ms per image per core of each data-pipeline stage on (at most `limit` of) the pool, at one torch thread as in
    a DataLoader worker; returns the lines, the training item and eval costs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _bench_data(root, repeats, limit)
    finally:
        torch.set_num_threads(threads)


def _bench_data(root: Path, repeats: int, limit: int) -> tuple[list[str], float, float]:
    task = task_for(root, 300)
    dataset = task._pool_with_targets
    n = min(len(dataset), limit)
    pipelines = {
        "reference": samples.ssd_train_transform(300, pipeline="reference"),
        "fast": samples.ssd_train_transform(300, pipeline="fast"),
    }
    decoded = [dataset._decode(i) for i in range(n)]

    def augment(pipeline, r):
        def run():
            for i in range(n):
                a = dataset.split.annotations[i]
                keep = ~a.difficult
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(1000 * r + i)
                    pipeline(decoded[i], {"boxes": dataset._boxes(i, decoded[i], keep), "labels": a.labels[keep]})

        return run

    cases = {
        "decode": lambda r: lambda: [dataset._decode(i) for i in range(n)],
        "reference augmentation": lambda r: augment(pipelines["reference"], r),
        "fast augmentation": lambda r: augment(pipelines["fast"], r),
        "training item (decode + fast augmentation)": lambda r: lambda: [dataset[(i, 1000 * r + i)] for i in range(n)],
        "eval item (decode + resize)": lambda r: lambda: [task._pool_inputs[(i, None)] for i in range(n)],
    }
    dataset.train_transform = pipelines["fast"]
    # wall time, and this process's CPU time: on a shared machine the scheduler gives a one-thread process less
    # than a core, which stretches wall time but not the CPU time the work itself needs
    wall, cpu = {name: [] for name in cases}, {name: [] for name in cases}
    load = ForeignLoad()
    for r in range(repeats + 1):  # the first round warms up
        for name in list(cases) if r % 2 == 0 else list(cases)[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            cases[name](r)()
            if r > 0:
                wall[name].append((time.perf_counter() - start) / n)
                cpu[name].append((time.process_time() - start_cpu) / n)
    wall_ms, cpu_ms = ({name: median_ms(t) for name, t in times.items()} for times in (wall, cpu))
    ratio = statistics.median(a / b for a, b in zip(cpu["reference augmentation"], cpu["fast augmentation"]))
    lines = [
        f"{n} VOC-sized JPEGs (375-500 px), {repeats} interleaved rounds, medians per image, one thread:",
        "",
        "| stage | CPU ms / image | wall ms / image |",
        "|---|---|---|",
        *(f"| {name} | {cpu_ms[name]:.2f} | {wall_ms[name]:.2f} |" for name in cases),
        "",
        f"fast augmentation needs {ratio:.1f}x less CPU than the reference (median of paired rounds); "
        f"CPU used by other processes meanwhile: {load.cores():.2f} cores of {os.cpu_count()}",
    ]
    return lines, cpu_ms["training item (decode + fast augmentation)"], cpu_ms["eval item (decode + resize)"]


def flops_per_image() -> tuple[float, float]:
    from benchmarks.flops import flop_counter

    model = ssd300_vgg16(num_classes=VOC_CLASSES + 1)
    x = torch.rand(1, 3, 300, 300)
    model.eval()
    with flop_counter() as counter, torch.no_grad():
        model(x)
    inference = counter.get_total_flops()
    model.train()
    with flop_counter() as counter:
        out = model(torch.rand(2, 3, 300, 300))
        (out["cls_logits"].float().mean() + out["bbox_regression"].mean()).backward()
    return inference, counter.get_total_flops() / 2


def projection(
    inference: float, train: float, data_train_ms: float, data_eval_ms: float, utilisation: float, workers: int
) -> list[str]:
    train_images = EPOCHS * sum(K * (c + 1) for c in range(CYCLES))  # 300 x (1k + ... + 10k)
    scored_images = sum(POOL - K * (c + 1) for c in range(CYCLES - 1))  # whole unlabeled pool, 9 selections
    test_images = CYCLES * TEST
    flops = train * train_images + inference * (scored_images + test_images)
    effective = H100_BF16_DENSE_TFLOPS * 1e12 * utilisation
    gpu_h = flops / effective / 3600
    data_h = (train_images * data_train_ms + (scored_images + test_images) * data_eval_ms) / 1000 / workers / 3600
    return [
        f"SSD300 per image: inference {inference / 1e9:.1f} GFLOP, train step (fwd + bwd) {train / 1e9:.1f} GFLOP",
        f"one fig6_voc trial: {train_images / 1e6:.1f} M training image-steps, {scored_images:,} scored + "
        f"{test_images:,} test forward passes = {flops / 1e15:.0f} PFLOP",
        f"assumed GPU: H100 SXM bf16 dense peak {H100_BF16_DENSE_TFLOPS:.0f} TFLOP/s at {utilisation:.0%} utilisation "
        f"-> {gpu_h:.1f} h of GPU compute per trial ({15 * gpu_h:.0f} h for the 15 runs of Fig. 6)",
        f"data pipeline at the measured per-core cost with {workers} DataLoader workers: {data_h:.1f} h per trial "
        f"-> a trial takes about max({gpu_h:.1f}, {data_h:.1f}) = {max(gpu_h, data_h):.1f} h",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.detection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--utilisation", type=float, default=0.35, help="assumed fraction of the GPU's peak")
    parser.add_argument("--workers", type=int, default=12, help="DataLoader workers assumed on the GPU machine")
    parser.add_argument("--sections", default="1,2,3,4", help="which sections to run (comma-separated)")
    parser.add_argument("--device", default="cpu", help="section 5: cpu | cuda")
    parser.add_argument("--workers-list", default="8,16", help="section 5: DataLoader worker counts")
    parser.add_argument("--epochs", type=int, default=3, help="section 5: timed epochs per worker count")
    parser.add_argument("--batch", type=int, default=32, help="section 5: batch size (paper_voc: 32)")
    parser.add_argument("--images", type=int, default=60, help="generated VOC-sized images (pool = 70 %%)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), loadavg at start {os.getloadavg()}")
    sections = {int(x) for x in args.sections.split(",")}
    data_train = data_eval = None
    with tempfile.TemporaryDirectory() as tmp:
        root = make_tree(Path(tmp), args.images)
        if 1 in sections:
            print("\n## 1 Training step (CPU)\n")
            print("\n".join(bench_training_steps(root, args.repeats)))
        if 2 in sections:
            print("\n## 2 Per-image MultiBox loss vs torchvision's compute_loss (CPU)\n")
            print("\n".join(bench_loss(root, 3 * args.repeats)))
        if 3 in sections or 4 in sections:
            print("\n## 3 Data pipeline (CPU)\n")
            lines, data_train, data_eval = bench_data(root, args.repeats)
            print("\n".join(lines))
        if 5 in sections:
            print(f"\n## 5 Training throughput with the data pipeline ({args.device})\n", flush=True)
            workers = [int(w) for w in args.workers_list.split(",")]
            print(
                "\n".join(bench_pipeline_throughput(root, torch.device(args.device), workers, args.epochs, args.batch))
            )
    if 4 in sections:
        print("\n## 4 FLOPs and projected fig6_voc trial\n")
        inference, train = flops_per_image()
        print("\n".join(projection(inference, train, data_train, data_eval, args.utilisation, args.workers)))
    print(f"\nloadavg at end {os.getloadavg()}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Performance benchmarks: al_runner side by side with a typical public LL4AL reimplementation.

Every comparison is measured in one process run with the A/B repeats interleaved (the order
alternates every repeat), so machine noise hits both sides; each figure is the median of the
repeats after warm-up, and each ratio is the median of the per-repeat paired ratios.

  1  training step, ResNet-18 (CIFAR stem) at full width and width 16, batch 128: plain target model
     vs with the loss-prediction module (overhead), NCHW vs channels_last
  2  one training epoch over 1,000 real CIFAR-10 images: the runner's pipeline (uint8 tensor, batched
     augmentation, Learner, loop.train_one_epoch) vs DataLoader + PIL transforms, same model/optimiser
  3  scoring M unlabeled images per sampler (loop.score_inputs) and test evaluation (loop.evaluate)
     vs the reference's DataLoader loops; vs training throughput
  4  K-Center-Greedy at paper scale (10,000 candidates, 9,000 centers, 512-d, K=1,000), fresh
     subprocesses: seconds and peak RSS, vs a full-distance-matrix implementation
  5  ranking accuracy over 10,000 test points vs the chunked O(n²) count and the O(n²) Python pair loop
  6  per-phase seconds (train / eval / select) of one cycle of experiment=reduced_cifar10_jpg

  .venv/bin/python scripts/bench.py                       # everything (about 15 min on 2 CPU cores)
  .venv/bin/python scripts/bench.py --only 4,5 --quick    # seconds
  .venv/bin/python scripts/bench.py --device cuda --out outputs/bench/h100.csv

Writes the table to stdout, the rows to --out (CSV) and a markdown copy next to it (.md).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TAPS, EMBEDDING = ["layer1", "layer2", "layer3", "layer4"], "layer4"
# Paper protocol of Fig. 4 (DESIGN §2): 10 cycles of 1k..10k labeled, 200 epochs, M = 10k, 10k test.
PAPER_CYCLES, PAPER_K, PAPER_EPOCHS, PAPER_M, PAPER_TEST = 10, 1000, 200, 10_000, 10_000


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(cases: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device,
                warmup_cases: dict[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each case; repeat r runs the cases in forward order if r is even, else reversed."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            (warmup_cases or cases)[name]()
            sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            cases[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def tune_glibc_malloc() -> bool:
    """Serve large tensors from the heap and keep freed memory (glibc mallopt), process-wide.

    By default glibc hands every block above its mmap threshold (dynamic, at most 32 MiB) to
    mmap and gives it back with munmap when freed, so a ResNet-18 activation of a 128-image batch
    at full width (128·64·32·32·4 B = 32 MiB, just over) is page-faulted in again on every forward.
    M_MMAP_MAX=0 keeps all blocks on the heap; a 2 GiB M_TRIM_THRESHOLD keeps freed memory for reuse.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "mallopt"):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


class ForeignLoad:
    """CPU time used by *other* processes while a benchmark runs, in cores (Linux /proc/stat).

    This machine is shared: a figure taken while someone else's job ran is flagged, not trusted.
    """

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        with contextlib.suppress(OSError, ValueError):
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        return math.nan

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float:
        wall = time.perf_counter() - self.t0
        return max(0.0, ((self._busy() - self.busy0) - (self._own() - self.own0)) / wall) if wall > 0 else math.nan


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def paired_ratio(numer: list[float], denom: list[float]) -> float:
    """Median over repeats of numer[r] / denom[r] (both timed back to back in repeat r)."""
    return median([a / b for a, b in zip(numer, denom)])


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass
class Results:
    rows: list[dict] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)  # cross-benchmark numbers (e.g. training img/s)

    def add(self, bench: str, name: str, value: float, unit: str, target: str = "", note: str = "",
            met: bool | None = None) -> None:
        status = "" if met is None else ("met" if met else "MISSED")
        self.rows.append({"bench": bench, "name": name, "value": value, "unit": unit, "target": target,
                          "status": status, "note": note})
        print(f"  {name:<58} {fmt(value):>10} {unit:<8} {target:<8} {status:<7} {note}", flush=True)


def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


# ------------------------------------------------------------------------------------------------
# models, data
# ------------------------------------------------------------------------------------------------
def make_learner(width: int, with_module: bool, channels_last: bool, device: torch.device, amp: bool,
                 compile: bool = False, seed: int = 0):
    """ResNet-18 (CIFAR stem) in a Learner, with or without the loss module; same seed → same weights."""
    from al_runner.learner import Learner, Runtime
    from al_runner.models import LossPredictionModule, resnet18_cifar

    runtime = Runtime(device=device, amp=amp, channels_last=channels_last, compile=compile)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet18_cifar(width=width)
        module = LossPredictionModule(len(TAPS), 128) if with_module else None
        learner = Learner(model, TAPS, EMBEDDING, module, runtime)
        learner.materialize(torch.zeros(2, 3, 32, 32, device=device))
    return learner


def sgd(learner) -> torch.optim.Optimizer:  # the paper's optimiser (Sec. 4.1)
    return torch.optim.SGD(learner.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def module_training():
    from al_runner.loop import LossModuleTraining
    from al_runner.losses import MarginRankingLoss

    return LossModuleTraining(objective=MarginRankingLoss(1.0), weight=1.0, detach_epoch=120)


class FixedBatches:
    """A task stand-in for loop.train_one_epoch that yields one fixed, already-augmented batch."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        self.inputs, self.targets = inputs, targets

    def labeled_batches(self, indices, batch_size, generator, augment=True):
        yield self.inputs, self.targets, torch.arange(self.targets.numel())

    def per_sample_loss(self, outputs, targets):
        return F.cross_entropy(outputs.float(), targets, reduction="none")


class TimedTask:
    """Wraps a task so the time spent producing each training batch (incl. augmentation) is recorded."""

    def __init__(self, task, device: torch.device):
        self.task, self.device, self.data_seconds = task, device, 0.0

    def labeled_batches(self, *args, **kwargs):
        it = iter(self.task.labeled_batches(*args, **kwargs))
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            sync(self.device)
            self.data_seconds += time.perf_counter() - t0
            yield item

    def per_sample_loss(self, outputs, targets):
        return self.task.per_sample_loss(outputs, targets)


def load_splits(args):
    """The JPEG CIFAR-10 tree decoded once into uint8 tensors (al_runner's cache), or synthetic images."""
    from al_runner.data.splits import ImageSplits

    if args.synthetic:
        g = torch.Generator().manual_seed(0)
        n_train, n_test = args.synthetic
        return ImageSplits(torch.randint(0, 256, (n_train, 3, 32, 32), generator=g, dtype=torch.uint8),
                           torch.randint(0, 10, (n_train,), generator=g),
                           torch.randint(0, 256, (n_test, 3, 32, 32), generator=g, dtype=torch.uint8),
                           torch.randint(0, 10, (n_test,), generator=g), [str(i) for i in range(10)])
    from al_runner.data.imagefolder import load_imagefolder

    t0 = time.perf_counter()
    splits = load_imagefolder(str(args.data), channels=3, cache_dir=str(args.cache))
    print(f"  (loaded {splits.train_images.shape[0]} + {splits.test_images.shape[0]} images from {args.data} "
          f"in {time.perf_counter() - t0:.1f}s, decoded-tensor cache {args.cache})", flush=True)
    return splits


def runner_task(train_images, train_labels, test_images, test_labels, device):
    from al_runner.data import CropFlipNormalize, ImageSplits
    from al_runner.tasks import ClassificationTask

    splits = ImageSplits(train_images, train_labels, test_images, test_labels, [str(i) for i in range(10)])
    return ClassificationTask("cifar10-jpg", splits, CropFlipNormalize(4, True, CIFAR_MEAN, CIFAR_STD)).to(device)


# --- the reference: a typical public reimplementation (torchvision CIFAR10-style dataset + DataLoader)
class PILDataset(torch.utils.data.Dataset):
    """In-memory HWC uint8 array → PIL image → torchvision transforms, per item (torchvision.datasets.CIFAR10)."""

    def __init__(self, images_nchw: torch.Tensor, labels: torch.Tensor, transform):
        self.data = images_nchw.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def reference_transforms(train: bool):
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    return T.Compose(([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []) + tail)


def reference_loader(images, labels, train: bool, batch_size: int, workers: int, device, seed: int = 0):
    ds = PILDataset(images, labels, reference_transforms(train))
    sampler = torch.utils.data.SubsetRandomSampler(range(len(ds)), generator=torch.Generator().manual_seed(seed)) if train else None
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                                       pin_memory=device.type == "cuda")


def reference_train_epoch(learner, loader, optimizer, criterion, device, timing: dict) -> float:
    """The reference's training loop (fp32, NCHW): forward, per-sample CE, module, joint loss, step."""
    learner.train()
    total, it = 0.0, iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            inputs, labels = next(it)
        except StopIteration:
            break
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        sync(device)
        timing["data"] = timing.get("data", 0.0) + time.perf_counter() - t0
        learner.taps.clear()
        scores = learner.model(inputs)
        target_loss = F.cross_entropy(scores, labels, reduction="none")
        loss = target_loss.mean()
        if learner.loss_module is not None:
            predicted = learner.loss_module(learner.taps.features(TAPS))
            loss = loss + 1.0 * criterion(predicted, target_loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


@torch.no_grad()
def reference_score(learner, loader, device) -> torch.Tensor:
    """The reference's get_uncertainty: eval mode, no_grad, batch 128, predicted loss per image."""
    learner.eval()
    out = []
    for inputs, _ in loader:
        inputs = inputs.to(device)
        learner.taps.clear()
        learner.model(inputs)
        out.append(learner.loss_module(learner.taps.features(TAPS)).cpu())
    return torch.cat(out)


@torch.no_grad()
def reference_test(learner, loader, device) -> float:
    """The reference's test(): eval mode, no_grad, batch 128, accuracy."""
    learner.eval()
    correct = total = 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        learner.taps.clear()
        preds = learner.model(inputs).argmax(1)
        correct += (preds == labels).sum().item()
        total += labels.size(0)
    return correct / max(total, 1)


def runner_channels_last(device: torch.device) -> bool:
    """runtime.channels_last of conf/config.yaml on this device (auto = CUDA only), as make_runtime resolves it."""
    from omegaconf import OmegaConf

    value = OmegaConf.load(REPO / "conf" / "config.yaml").runtime.channels_last
    return device.type == "cuda" if value in (None, "auto") else bool(value)


def formats(device: torch.device) -> list[tuple[str, bool]]:
    """(label, channels_last) pairs; the runner's default for the device comes first."""
    default_cl = runner_channels_last(device)
    both = [("NCHW", False), ("channels_last", True)]
    return sorted(both, key=lambda f: f[1] != default_cl)


def default_format(device: torch.device) -> str:
    return "channels_last" if runner_channels_last(device) else "NCHW"


# ------------------------------------------------------------------------------------------------
# 1. training step: plain vs with loss module
# ------------------------------------------------------------------------------------------------
def bench_train_step(args, res: Results) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from al_runner.loop import train_one_epoch

    device, amp, batch = args.device, args.device.type == "cuda", args.batch
    for width in args.widths:
        full = width == 64
        warmup, repeats = (args.step_warmup_full, args.step_repeats_full) if full else (args.step_warmup, args.step_repeats)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        data = FixedBatches(x, y)
        cases, variants = {}, []
        for label, cl in formats(device):
            for with_module in (False, True):
                learner = make_learner(width, with_module, cl, device, amp)
                opt = sgd(learner)
                mt = module_training() if with_module else None
                name = f"{'loss module' if with_module else 'plain'} {label}"
                cases[name] = (lambda l=learner, o=opt, m=mt: train_one_epoch(l, data, torch.arange(batch), o, batch,
                                                                               torch.Generator(), m, 0, 0))
                variants.append((name, label, with_module))
        # FLOPs of one plain training step (counted once, outside the timed runs)
        first_plain = make_learner(width, False, False, device, amp)
        counter = FlopCounterMode(display=False)
        with counter:
            train_one_epoch(first_plain, data, torch.arange(batch), sgd(first_plain), batch, torch.Generator(), None, 0, 0)
        gflop_per_image = counter.get_total_flops() / batch / 1e9
        del first_plain
        print(f"\n[1] training step, ResNet-18 width {width}, batch {batch}, {device.type}: "
              f"{warmup} warm-up + {repeats} timed steps per case, interleaved", flush=True)
        t = interleaved(cases, repeats, warmup, device)
        b = f"1 train step w{width}"
        for name, label, with_module in variants:
            ips = batch / median(t[name])
            res.add(b, f"w{width} train {name}", ips, "img/s")
            res.facts[f"train_ips/w{width}/{label}/{'ll' if with_module else 'plain'}"] = ips
        for label, _ in formats(device):
            ratio = paired_ratio(t[f"loss module {label}"], t[f"plain {label}"])
            res.add(b, f"w{width} loss-module step time / plain ({label})", ratio, "x", "<= 1.03",
                    f"overhead {100 * (ratio - 1):+.1f} %", met=ratio <= 1.03)
        cl_speedup = paired_ratio(t["plain NCHW"], t["plain channels_last"])
        res.add(b, f"w{width} channels_last speed-up (plain, NCHW time / CL time)", cl_speedup, "x")
        cl_speedup_ll = paired_ratio(t["loss module NCHW"], t["loss module channels_last"])
        res.add(b, f"w{width} channels_last speed-up (loss module)", cl_speedup_ll, "x")
        res.add(b, f"w{width} FLOPs per training image (fwd+bwd, plain)", gflop_per_image, "GFLOP")
        best = max(res.facts[f"train_ips/w{width}/{lab}/plain"] for lab, _ in formats(device))
        res.add(b, f"w{width} achieved (best format, plain)", gflop_per_image * best, "GFLOP/s")
        res.facts[f"gflop/w{width}"] = gflop_per_image
        if args.compile:
            bench_compile_step(args, res, width, data, warmup, repeats)


def bench_compile_step(args, res: Results, width: int, data: FixedBatches, warmup: int, repeats: int) -> None:
    """runtime.compile=true vs eager, loss-module step, best format of the device."""
    from al_runner.loop import train_one_epoch

    device, batch = args.device, args.batch
    cl = runner_channels_last(device) or args.cl_for_compile
    eager = make_learner(width, True, cl, device, device.type == "cuda")
    compiled = make_learner(width, True, cl, device, device.type == "cuda", compile=True)
    opts = {"eager": (eager, sgd(eager)), "compiled": (compiled, sgd(compiled))}
    mt = module_training()
    t0 = time.perf_counter()
    train_one_epoch(compiled, data, torch.arange(batch), opts["compiled"][1], batch, torch.Generator(), mt, 0, 0)
    sync(device)
    compile_s = time.perf_counter() - t0
    cases = {k: (lambda l=l, o=o: train_one_epoch(l, data, torch.arange(batch), o, batch, torch.Generator(), mt, 0, 0))
             for k, (l, o) in opts.items()}
    t = interleaved(cases, repeats, warmup, device)
    b = f"1 train step w{width}"
    fmt_label = "channels_last" if cl else "NCHW"
    res.add(b, f"w{width} torch.compile first step (compilation)", compile_s, "s")
    res.add(b, f"w{width} torch.compile speed-up, loss module ({fmt_label})", paired_ratio(t["eager"], t["compiled"]), "x")


# ------------------------------------------------------------------------------------------------
# 2. one training epoch over 1,000 real images: runner pipeline vs DataLoader + PIL
# ------------------------------------------------------------------------------------------------
def bench_epoch(args, res: Results, splits) -> None:
    from al_runner.loop import train_one_epoch
    from al_runner.losses import MarginRankingLoss

    device, amp, batch, n = args.device, args.device.type == "cuda", args.batch, args.epoch_images
    step = max(1, splits.train_images.shape[0] // n)
    images, labels = splits.train_images[::step][:n].contiguous(), splits.train_labels[::step][:n].contiguous()
    n = images.shape[0]
    task = runner_task(images, labels, images[:2], labels[:2], device)
    loader = reference_loader(images, labels, True, batch, args.ref_workers, device)
    b = "2 epoch"
    print(f"\n[2] pipelines alone over {n} real images (every {step}th of the pool), batch {batch}", flush=True)

    def runner_pipeline():
        for inputs, _, _ in task.labeled_batches(torch.arange(n), batch, gen, augment=True):
            pass

    def reference_pipeline():
        for inputs, _ in loader:
            inputs.to(device)

    gen = torch.Generator().manual_seed(0)
    t = interleaved({"runner": runner_pipeline, "reference": reference_pipeline}, args.pipe_repeats, 1, device)
    res.add(b, "data pipeline alone: runner (uint8 tensor, batched augmentation)", n / median(t["runner"]), "img/s")
    res.add(b, f"data pipeline alone: reference (DataLoader, PIL, workers={args.ref_workers})", n / median(t["reference"]), "img/s")
    res.facts["pipe_ips/runner"], res.facts["pipe_ips/ref"] = n / median(t["runner"]), n / median(t["reference"])

    for width in args.widths:
        full = width == 64
        repeats = args.epoch_repeats_full if full else args.epoch_repeats
        learners = {}
        for label, cl in formats(device):
            learners[f"runner {label}"] = make_learner(width, True, cl, device, amp)
        learners["reference"] = make_learner(width, True, False, device, False)
        opts = {k: sgd(v) for k, v in learners.items()}
        timing: dict[str, dict] = {k: {} for k in learners}
        mt, criterion = module_training(), MarginRankingLoss(1.0)
        timed = {k: TimedTask(task, device) for k in learners if k != "reference"}

        def runner_epoch(k):
            train_one_epoch(learners[k], timed[k], torch.arange(n), opts[k], batch, gen, mt, 0, 0)

        cases = {k: (lambda k=k: runner_epoch(k)) for k in timed}
        cases["reference"] = lambda: reference_train_epoch(learners["reference"], loader, opts["reference"], criterion,
                                                            device, timing["reference"])
        # warm-up: two batches through each side (allocator, thread pool, loader) — not a full epoch
        small = torch.arange(min(n, 2 * batch))
        small_loader = reference_loader(images[:2 * batch], labels[:2 * batch], True, batch, 0, device)
        warm = {k: (lambda k=k: train_one_epoch(learners[k], task, small, opts[k], batch, gen, mt, 0, 0)) for k in timed}
        warm["reference"] = lambda: reference_train_epoch(learners["reference"], small_loader, opts["reference"], criterion, device, {})
        print(f"\n[2] one training epoch, ResNet-18 width {width} + loss module, {n} images, batch {batch}: "
              f"warm-up 2 batches, {repeats} timed epochs per case, interleaved", flush=True)
        t = interleaved(cases, repeats, 1, device, warmup_cases=warm)
        ref_ips = n / median(t["reference"])
        res.add(b, f"w{width} epoch: reference (DataLoader + PIL, NCHW fp32)", ref_ips, "img/s")
        res.facts[f"epoch_ips/w{width}/ref"] = ref_ips
        target = 1.0 if full else 1.3
        for label, _ in formats(device):
            k = f"runner {label}"
            ips = n / median(t[k])
            res.facts[f"epoch_ips/w{width}/{label}"] = ips
            default = " (default)" if label == default_format(device) else ""
            res.add(b, f"w{width} epoch: runner {label}{default}", ips, "img/s")
            ratio = paired_ratio(t["reference"], t[k])
            res.add(b, f"w{width} epoch throughput runner {label} / reference", ratio, "x", f">= {target}", met=ratio >= target)
            frac = timed[k].data_seconds / sum(t[k])
            res.add(b, f"w{width} runner {label}: step time outside the model (batch+augment)", 100 * frac, "%")
        frac_ref = timing["reference"].get("data", 0.0) / sum(t["reference"])
        res.add(b, f"w{width} reference: step time waiting on the DataLoader", 100 * frac_ref, "%")


# ------------------------------------------------------------------------------------------------
# 3. scoring M unlabeled points per sampler, and test evaluation
# ------------------------------------------------------------------------------------------------
def bench_scoring(args, res: Results, splits) -> None:
    from al_runner.loop import evaluate, score_inputs

    device, amp = args.device, args.device.type == "cuda"
    pool_perm = torch.randperm(splits.train_images.shape[0], generator=torch.Generator().manual_seed(0))
    b = "3 scoring"
    needs = {"entropy": frozenset({"uncertainty"}), "core-set": frozenset({"embedding"}),
             "learning loss": frozenset({"predicted_loss"})}
    for width in args.widths:
        full = width == 64
        m = min(args.score_m_full if full else args.score_m, splits.train_images.shape[0])
        n_eval = min(args.eval_n_full if full else args.eval_n, splits.test_images.shape[0])
        repeats = args.score_repeats_full if full else args.score_repeats
        idx = pool_perm[:m]
        task = runner_task(splits.train_images, splits.train_labels, splits.test_images[:n_eval], splits.test_labels[:n_eval], device)
        learners = {label: make_learner(width, True, cl, device, amp) for label, cl in formats(device)}
        learners["reference"] = make_learner(width, True, False, device, False)
        dflt = default_format(device)
        cases, warm = {}, {}
        samplers = list(needs) if not full else ["learning loss"]
        for sampler in samplers:
            for label, _ in formats(device):
                if sampler != "learning loss" and label != dflt:
                    continue
                k = f"score {sampler} runner {label}"
                cases[k] = lambda l=learners[label], s=sampler, i=idx: score_inputs(l, task, i, args.eval_batch, needs[s])
                warm[k] = lambda l=learners[label], s=sampler: score_inputs(l, task, idx[:args.batch], args.eval_batch, needs[s])
        alt = args.alt_eval_batch
        if alt != args.eval_batch:  # the effect of the eval batch size alone
            k = f"score learning loss runner {dflt} batch {alt}"
            cases[k] = lambda: score_inputs(learners[dflt], task, idx, alt, needs["learning loss"])
            warm[k] = lambda: score_inputs(learners[dflt], task, idx[:alt], alt, needs["learning loss"])
        if args.compile:  # runtime.compile=true; its compilation happens in the warm-up
            cfmt = "channels_last" if (runner_channels_last(device) or args.cl_for_compile) else "NCHW"
            compiled = make_learner(width, True, cfmt == "channels_last", device, amp, compile=True)
            k = f"score learning loss runner {cfmt} compiled"
            cases[k] = lambda: score_inputs(compiled, task, idx, args.eval_batch, needs["learning loss"])
            warm[k] = lambda: score_inputs(compiled, task, idx[:args.eval_batch], args.eval_batch, needs["learning loss"])
        pool_loader = reference_loader(splits.train_images[idx], splits.train_labels[idx], False, args.batch, args.ref_workers, device)
        warm_loader = reference_loader(splits.train_images[idx[:args.batch]], splits.train_labels[idx[:args.batch]], False, args.batch, 0, device)
        cases["score learning loss reference"] = lambda: reference_score(learners["reference"], pool_loader, device)
        warm["score learning loss reference"] = lambda: reference_score(learners["reference"], warm_loader, device)
        for label, _ in formats(device):
            cases[f"eval runner {label}"] = lambda l=learners[label]: evaluate(l, task, args.eval_batch)
            warm[f"eval runner {label}"] = lambda l=learners[label]: score_inputs(l, task, idx[:args.batch], args.eval_batch, needs["learning loss"])
        test_loader = reference_loader(splits.test_images[:n_eval], splits.test_labels[:n_eval], False, args.batch, args.ref_workers, device)
        cases["eval reference"] = lambda: reference_test(learners["reference"], test_loader, device)
        warm["eval reference"] = lambda: reference_test(learners["reference"], warm_loader, device)
        print(f"\n[3] scoring M={m} unlabeled pool images and evaluating {n_eval} test images, ResNet-18 width {width} "
              f"+ loss module; runner eval batch {args.eval_batch}, reference batch {args.batch}; "
              f"{repeats} timed runs per case after a one-batch warm-up, interleaved", flush=True)
        t = interleaved(cases, repeats, 1, device, warmup_cases=warm)
        ref_score = m / median(t["score learning loss reference"])
        ref_eval = n_eval / median(t["eval reference"])
        res.add(b, f"w{width} scoring: reference (DataLoader, no_grad, batch {args.batch})", ref_score, "img/s",
                note=f"M=10k: {PAPER_M / ref_score:.0f} s")
        for k in cases:
            if not k.startswith("score") or "reference" in k:
                continue
            ips = m / median(t[k])
            res.add(b, f"w{width} {k}", ips, "img/s", note=f"M=10k: {PAPER_M / ips:.1f} s")
            if k.startswith("score learning loss runner") and "batch" not in k and "compiled" not in k:
                label = k.split()[-1]
                train = res.facts.get(f"train_ips/w{width}/{label}/ll")
                res.facts[f"score_ips/w{width}/{label}"] = ips
                ratio = paired_ratio(t["score learning loss reference"], t[k])
                res.add(b, f"w{width} scoring runner {label} / reference", ratio, "x", ">= 1.25", met=ratio >= 1.25)
                if train:
                    res.add(b, f"w{width} scoring / training throughput (runner {label})", ips / train, "x")
        for k in [k for k in t if k.endswith("compiled")]:
            eager = f"score learning loss runner {k.split()[-2]}"
            res.add(b, f"w{width} torch.compile speed-up, scoring ({k.split()[-2]})", paired_ratio(t[eager], t[k]), "x")
        if f"score learning loss runner {dflt} batch {alt}" in t:
            r = paired_ratio(t[f"score learning loss runner {dflt} batch {alt}"], t[f"score learning loss runner {dflt}"])
            res.add(b, f"w{width} eval batch {args.eval_batch} vs {alt} (runner {dflt}, speed-up)", r, "x")
        res.add(b, f"w{width} evaluation: reference (accuracy only, batch {args.batch})", ref_eval, "img/s")
        for label, _ in formats(device):
            ips = n_eval / median(t[f"eval runner {label}"])
            res.facts[f"eval_ips/w{width}/{label}"] = ips
            res.add(b, f"w{width} evaluation: runner {label} (metric, losses, entropy, ranking acc.)", ips, "img/s")
            ratio = paired_ratio(t["eval reference"], t[f"eval runner {label}"])
            res.add(b, f"w{width} evaluation runner {label} / reference", ratio, "x", ">= 1.25", met=ratio >= 1.25)


# ------------------------------------------------------------------------------------------------
# 4. K-Center-Greedy at paper scale, in fresh subprocesses (peak RSS)
# ------------------------------------------------------------------------------------------------
def kcenter_naive(points: torch.Tensor, centers: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Typical public core-set code: one full distance matrix over labeled + candidate points."""
    m = centers.shape[0]
    everything = torch.cat([centers, points])
    dist = torch.cdist(everything, everything)  # (m + n)² floats
    min_dist = dist[m:, :m].min(dim=1).values
    picks, dists = [], []
    for _ in range(k):
        j = int(torch.argmax(min_dist))
        picks.append(j)
        dists.append(float(min_dist[j]))
        min_dist = torch.minimum(min_dist, dist[m:, m + j])
        min_dist[j] = -1.0
    return torch.tensor(picks), torch.tensor(dists)


def kcenter_features(n: int, m: int, d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative (post-ReLU GAP-like) features, generated in place so no temporary inflates the peak."""
    g = torch.Generator().manual_seed(0)
    points, centers = torch.empty(n, d), torch.empty(m, d)
    points.normal_(generator=g).relu_()
    centers.normal_(generator=g).relu_()
    return points.to(device), centers.to(device)


def peak_rss_bytes(reset: bool = False) -> int:
    """This process's peak RSS (VmHWM; `reset` first sets it to the current RSS via clear_refs).

    ru_maxrss would not do: Linux carries it over fork and exec, so a child inherits its parent's peak.
    """
    with contextlib.suppress(OSError):
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def kcenter_child(impl: str, n: int, m: int, d: int, k: int, device_name: str) -> dict:
    """Runs in a fresh process: first (cold) call and a second (warm) call, with peak-memory deltas."""
    from al_runner.samplers import k_center_greedy

    device = torch.device(device_name)
    points, centers = kcenter_features(n, m, d, device)
    fn = k_center_greedy if impl == "al_runner" else kcenter_naive
    sync(device)
    rss0 = peak_rss_bytes(reset=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda0 = torch.cuda.memory_allocated(device)
    out = {}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        picks, _ = fn(points, centers, k)
        sync(device)
        out[f"{run}_s"] = time.perf_counter() - t0
        if run == "cold":
            out["peak_extra_bytes"] = peak_rss_bytes() - rss0
            if device.type == "cuda":
                out["peak_extra_bytes"] = torch.cuda.max_memory_allocated(device) - cuda0
    out["picks"] = picks.tolist()
    return out


def bench_kcenter(args, res: Results) -> None:
    n, m, d, k = args.kc_n, args.kc_m, args.kc_d, args.kc_k
    b = "4 k-center"
    print(f"\n[4] K-Center-Greedy: {n} candidates, {m} labeled centers, {d}-d, K={k}; "
          f"{args.kc_repeats} fresh processes per implementation, alternating", flush=True)
    runs: dict[str, list[dict]] = {"al_runner": [], "naive": []}
    for r in range(args.kc_repeats):
        for impl in (["al_runner", "naive"] if r % 2 == 0 else ["naive", "al_runner"]):
            if impl == "naive" and args.kc_skip_naive:
                continue
            cmd = [sys.executable, __file__, "--kcenter-child", json.dumps([impl, n, m, d, k, args.device.type])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[impl].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    block = None
    with contextlib.suppress(ImportError, AttributeError):
        from al_runner.samplers import DISTANCE_BLOCK_ELEMENTS as block
    # al_runner: one distance block + the largest temporary (squared norms of the n x d points) + O(n) vectors
    analytic = {"al_runner": ((block or min(4096, m) * n) + n * d + 6 * n + 2 * k) * 4,
                "naive": (n + m) ** 2 * 4}
    for impl, rs in runs.items():
        if not rs:
            continue
        label = "al_runner (blocked, running min-distance)" if impl == "al_runner" else "naive full distance matrix"
        cold, warm = median([x["cold_s"] for x in rs]), median([x["warm_s"] for x in rs])
        peak = median([x["peak_extra_bytes"] for x in rs]) / 2**20
        ok = cold <= 2.0 if impl == "al_runner" else None
        res.add(b, f"{label}: seconds, first call in a fresh process", cold, "s", "<= 2" if impl == "al_runner" else "", met=ok)
        res.add(b, f"{label}: seconds, second call", warm, "s")
        what = "max-RSS delta" if args.device.type == "cpu" else "CUDA max_memory_allocated delta"
        res.add(b, f"{label}: peak extra memory ({what})", peak, "MiB", note=f"analytic {analytic[impl] / 2**20:.0f} MiB")
        res.facts[f"kc/{impl}/cold"] = cold
    if runs["al_runner"] and runs["naive"]:
        a, z = runs["al_runner"][0]["picks"], runs["naive"][0]["picks"]
        same = next((i for i, (p, q) in enumerate(zip(a, z)) if p != q), None)
        res.add(b, "picks identical to the naive implementation", float(same is None), "bool",
                note="all K" if same is None else f"first difference at pick {same} (fp rounding near a tie)")
        res.add(b, "speed-up vs naive (first call)", median([x["cold_s"] for x in runs["naive"]]) / median([x["cold_s"] for x in runs["al_runner"]]), "x")


# ------------------------------------------------------------------------------------------------
# 5. ranking accuracy over 10,000 test points
# ------------------------------------------------------------------------------------------------
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
    """The previous al_runner implementation: all n² pairs, chunk rows at a time, as tensor ops."""
    predicted, real = predicted.flatten().double(), real.flatten().double()
    valid_total = matching_total = 0
    for start in range(0, real.numel(), chunk):
        r_rows, p_rows = real[start : start + chunk, None], predicted[start : start + chunk, None]
        valid = r_rows > real[None, :]
        valid_total += int(valid.sum())
        matching_total += int((valid & (p_rows > predicted[None, :])).sum())
    return math.nan if valid_total == 0 else matching_total / valid_total


def bench_ranking(args, res: Results) -> None:
    from al_runner.losses import ranking_accuracy

    device, n, sub = args.device, args.rank_n, args.rank_naive_n
    g = torch.Generator().manual_seed(0)
    real = torch.empty(n).exponential_(generator=g)  # cross-entropy-like: many small, few large losses
    predicted = (real.log() + torch.randn(n, generator=g)).float()
    real, predicted = real.to(device), predicted.to(device)
    b = "5 ranking accuracy"
    print(f"\n[5] ranking accuracy over n={n} points; Python pair loop on the first {sub} points, "
          f"extrapolated by (n/{sub})²", flush=True)
    t = interleaved({"al_runner": lambda: ranking_accuracy(predicted, real),
                     "chunked": lambda: ranking_chunked(predicted, real)}, args.rank_repeats, 1, device)
    fast = median(t["al_runner"])
    res.add(b, f"al_runner ranking_accuracy, n={n}", fast, "s", "<= 0.5", met=fast <= 0.5)
    res.add(b, f"chunked O(n²) tensor count (previous al_runner), n={n}", median(t["chunked"]), "s")
    p_sub, r_sub = predicted[:sub].tolist(), real[:sub].tolist()
    t0 = time.perf_counter()
    loop_value = ranking_python_loop(p_sub, r_sub)
    loop_s = time.perf_counter() - t0
    scale = (n / sub) ** 2
    res.add(b, f"Python pair loop, n={sub} (measured)", loop_s, "s")
    res.add(b, f"Python pair loop, n={n} (extrapolated x{scale:.0f})", loop_s * scale, "s", note="extrapolated, not run")
    res.add(b, "speed-up vs Python pair loop (extrapolated)", loop_s * scale / fast, "x")
    fast_sub = ranking_accuracy(predicted[:sub], real[:sub])
    res.add(b, f"same value as the pair loop on n={sub}", float(fast_sub == loop_value), "bool",
            note=f"{fast_sub:.6f} vs {loop_value:.6f}")


# ------------------------------------------------------------------------------------------------
# 6. one cycle of the reduced CIFAR preset, per phase
# ------------------------------------------------------------------------------------------------
def bench_cycle(args, res: Results) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from al_runner.runner import ActiveLearningRun

    overrides = ["experiment=reduced_cifar10_jpg", f"task.root={args.data}", f"paths.cache={args.cache}",
                 f"sampler={args.cycle_sampler}", f"device={args.device}", "progress=false", "schedule.cycles=2"]
    if args.cycle_epochs is not None:
        overrides.append(f"schedule.epochs={args.cycle_epochs}")
    if args.quick:
        overrides += ["schedule.initial_size=128", "schedule.query_size=128", "schedule.subset_size=512"]
    overrides += args.override
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    s = cfg.schedule
    b = "6 reduced cycle"
    print(f"\n[6] one cycle (cycle 0: train, evaluate, select) of: al-run {' '.join(overrides)}\n"
          f"    {s.initial_size} labeled, {s.epochs} epochs (preset: 30), M={s.subset_size}, K={s.query_size}, "
          f"{cfg.model.name} width {cfg.model.net.width}, runtime {dict(cfg.runtime)}", flush=True)
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
    res.add(b, "cycle 0 at the preset's 30 epochs (extrapolated)", per_epoch * 30 + row["eval_s"] + row["select_s"], "s",
            note="extrapolated" if epochs != 30 else "measured")
    res.facts["cycle/epoch_s"], res.facts["cycle/eval_s"], res.facts["cycle/select_s"] = per_epoch, row["eval_s"], row["select_s"]


# ------------------------------------------------------------------------------------------------
# 7. glibc malloc: default vs no-mmap, in alternating fresh processes
# ------------------------------------------------------------------------------------------------
def malloc_child(mode: str, width: int, batch: int, eval_batch: int, alt_eval_batch: int, n: int, steps: int,
                 device_name: str) -> dict:
    """Fresh process: the allocator mode is set before any tensor exists, as the runner would do."""
    tuned = tune_glibc_malloc() if mode == "no-mmap" else False
    from al_runner.loop import score_inputs, train_one_epoch

    device = torch.device(device_name)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (batch,), generator=g).to(device)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    task = runner_task(images, torch.zeros(n, dtype=torch.long), images[:2], torch.zeros(2, dtype=torch.long), device)
    learner = make_learner(width, True, runner_channels_last(device), device, device.type == "cuda")
    opt, mt, data = sgd(learner), module_training(), FixedBatches(x, y)
    step = lambda: train_one_epoch(learner, data, torch.arange(batch), opt, batch, torch.Generator(), mt, 0, 0)
    needs = frozenset({"predicted_loss"})
    cases = {"train": step}
    warm = {"train": step}
    for bs in (alt_eval_batch, eval_batch):
        cases[f"batch {bs}"] = lambda bs=bs: score_inputs(learner, task, torch.arange(n), bs, needs)
        warm[f"batch {bs}"] = lambda bs=bs: score_inputs(learner, task, torch.arange(min(n, bs)), bs, needs)
    t = interleaved({"train": step}, steps, 2, device)
    t.update(interleaved({k: v for k, v in cases.items() if k != "train"}, 1, 1, device,
                         warmup_cases={k: v for k, v in warm.items() if k != "train"}))
    out = {"tuned": tuned, "train": batch / median(t["train"])}
    out.update({k: n / median(v) for k, v in t.items() if k != "train"})
    out["max_rss_mib"] = peak_rss_bytes() / 2**20
    return out


def bench_malloc(args, res: Results) -> None:
    width = max(args.widths)
    b = "7 malloc"
    n, steps = args.malloc_n, args.malloc_steps
    print(f"\n[7] glibc malloc default vs M_MMAP_MAX=0 (scripts/bench.py --malloc no-mmap), ResNet-18 width {width} + "
          f"loss module, {default_format(args.device)}: {steps} training steps of {args.batch}, scoring {n} images at batch {args.alt_eval_batch} and "
          f"{args.eval_batch}; {args.malloc_repeats} fresh processes per mode, alternating", flush=True)
    runs: dict[str, list[dict]] = {"default": [], "no-mmap": []}
    for r in range(args.malloc_repeats):
        for mode in (["default", "no-mmap"] if r % 2 == 0 else ["no-mmap", "default"]):
            spec = json.dumps([mode, width, args.batch, args.eval_batch, args.alt_eval_batch, n, steps, args.device.type])
            proc = subprocess.run([sys.executable, __file__, "--malloc-child", spec], capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
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


# ------------------------------------------------------------------------------------------------
# projection of one paper trial (Fig. 4)
# ------------------------------------------------------------------------------------------------
def projection(args, res: Results) -> None:
    f = res.facts
    fmt_ = default_format(args.device)
    sides = {}
    train = f.get(f"epoch_ips/w64/{fmt_}") or f.get(f"train_ips/w64/{fmt_}/ll")
    score, evl = f.get(f"score_ips/w64/{fmt_}"), f.get(f"eval_ips/w64/{fmt_}")
    if train and score and evl:
        sides["runner (default runtime)"] = (train, score, evl)
    best = max(formats(args.device), key=lambda x: f.get(f"epoch_ips/w64/{x[0]}", 0))[0]
    if best != fmt_ and f.get(f"epoch_ips/w64/{best}") and f.get(f"score_ips/w64/{best}"):
        sides[f"runner ({best})"] = (f[f"epoch_ips/w64/{best}"], f[f"score_ips/w64/{best}"], f[f"eval_ips/w64/{best}"])
    if not sides:
        return
    b = "projection"
    labeled = [PAPER_K * (c + 1) for c in range(PAPER_CYCLES)]
    train_images = PAPER_EPOCHS * sum(labeled)
    print(f"\nProjection: one paper trial of Fig. 4 (learning loss, ResNet-18 full width): "
          f"{PAPER_EPOCHS} epochs x (1k+...+10k) = {train_images:,} training images, "
          f"{PAPER_CYCLES} x {PAPER_TEST:,} test images, {PAPER_CYCLES - 1} x M={PAPER_M:,} scored, "
          f"from the measured throughputs on {args.device.type}", flush=True)
    for name, (tr, sc, ev) in sides.items():
        hours = (train_images / tr + PAPER_CYCLES * PAPER_TEST / ev + (PAPER_CYCLES - 1) * PAPER_M / sc) / 3600
        res.add(b, f"one Fig. 4 trial, {name}", hours, "h", note=f"train {train_images / tr / 3600:.1f} h")
    ref = f.get("epoch_ips/w64/ref")
    if ref:
        hours = train_images / ref / 3600
        res.add(b, "one Fig. 4 trial, reference pipeline (training only)", hours, "h")
    n_runs = 5 * 5
    first = next(iter(sides.values()))
    hours = (train_images / first[0] + PAPER_CYCLES * PAPER_TEST / first[2] + (PAPER_CYCLES - 1) * PAPER_M / first[1]) / 3600
    res.add(b, "whole Fig. 4 sweep (5 samplers x 5 trials), one device", hours * n_runs / 24, "days")


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated benchmark numbers (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs, numbers are not meaningful")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "bench.csv", help="CSV to write (a .md copy goes next to it)")
    p.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "cifar10-jpg"),
                   help="CIFAR-10 JPEG tree (train/<class>/*.jpg, test/<class>/*.jpg)")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("AL_RUNNER_CACHE", Path.home() / ".cache" / "al_runner")),
                   help="al_runner's decoded-image cache directory")
    p.add_argument("--widths", default="64,16", help="ResNet-18 widths (64 = full width)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=None,
                   help="runner's eval/scoring batch (default: schedule.eval_batch_size of conf/schedule/paper_cifar10.yaml)")
    p.add_argument("--alt-eval-batch", type=int, default=1000, help="a second eval batch size, to show its effect (bench 3, 7)")
    p.add_argument("--step-warmup-full", type=int, default=2)
    p.add_argument("--step-repeats-full", type=int, default=8)
    p.add_argument("--step-warmup", type=int, default=3)
    p.add_argument("--step-repeats", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="also time runtime.compile=true (torch.compile) in bench 1")
    p.add_argument("--cl-for-compile", action="store_true", help="compile comparison in channels_last on CPU too")
    p.add_argument("--epoch-images", type=int, default=1000)
    p.add_argument("--epoch-repeats-full", type=int, default=2)
    p.add_argument("--epoch-repeats", type=int, default=3)
    p.add_argument("--pipe-repeats", type=int, default=5)
    p.add_argument("--ref-workers", type=int, default=0, help="reference DataLoader num_workers (popular code: 0)")
    p.add_argument("--score-m", type=int, default=10_000, help="unlabeled images scored at width < 64")
    p.add_argument("--score-m-full", type=int, default=1000, help="unlabeled images scored at full width (img/s is reported, M=10k seconds projected)")
    p.add_argument("--eval-n", type=int, default=10_000)
    p.add_argument("--eval-n-full", type=int, default=1000)
    p.add_argument("--score-repeats", type=int, default=3)
    p.add_argument("--score-repeats-full", type=int, default=3)
    p.add_argument("--kc-n", type=int, default=10_000)
    p.add_argument("--kc-m", type=int, default=9_000)
    p.add_argument("--kc-d", type=int, default=512)
    p.add_argument("--kc-k", type=int, default=1_000)
    p.add_argument("--kc-repeats", type=int, default=3)
    p.add_argument("--kc-skip-naive", action="store_true")
    p.add_argument("--rank-n", type=int, default=10_000)
    p.add_argument("--rank-naive-n", type=int, default=1_000)
    p.add_argument("--rank-repeats", type=int, default=5)
    p.add_argument("--cycle-epochs", type=int, default=None, help="shrink the preset's 30 epochs (said so in the output)")
    p.add_argument("--cycle-sampler", default="learning_loss")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for bench 6 (repeatable)")
    p.add_argument("--synthetic", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                   help="N_TRAIN,N_TEST random images instead of the JPEG tree (benches 2-3; for tests)")
    p.add_argument("--malloc", choices=["default", "no-mmap"], default="default",
                   help="no-mmap: glibc mallopt(M_MMAP_MAX=0) before anything is allocated (see bench 7)")
    p.add_argument("--malloc-n", type=int, default=1000)
    p.add_argument("--malloc-steps", type=int, default=4)
    p.add_argument("--malloc-repeats", type=int, default=2)
    p.add_argument("--kcenter-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--malloc-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.widths = "16,8" if args.widths == "64,16" else args.widths
        args.batch, args.eval_batch, args.alt_eval_batch = 32, 128, 64
        args.step_warmup_full = args.step_warmup = 1
        args.step_repeats_full = args.step_repeats = 2
        args.epoch_images, args.epoch_repeats, args.epoch_repeats_full, args.pipe_repeats = 128, 1, 1, 1
        args.score_m = args.score_m_full = args.eval_n = args.eval_n_full = 256
        args.score_repeats = args.score_repeats_full = 1
        args.kc_n, args.kc_m, args.kc_d, args.kc_k, args.kc_repeats = 2000, 1000, 64, 100, 1
        args.rank_n, args.rank_naive_n, args.rank_repeats = 2000, 200, 2
        args.cycle_epochs = 1 if args.cycle_epochs is None else args.cycle_epochs
        args.malloc_n, args.malloc_steps, args.malloc_repeats = 256, 1, 1
    if args.eval_batch is None:
        from omegaconf import OmegaConf

        args.eval_batch = int(OmegaConf.load(REPO / "conf" / "schedule" / "paper_cifar10.yaml").eval_batch_size)
    args.only = {int(x) for x in args.only.split(",") if x.strip()}
    args.widths = [int(w) for w in str(args.widths).split(",")]
    args.data = args.data.resolve()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(args.device)
    return args


def write_outputs(args, res: Results, info: dict, argv: list[str]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["bench", "name", "value", "unit", "target", "status", "note"])
        w.writeheader()
        for row in res.rows:
            w.writerow({**row, "value": f"{row['value']:.6g}" if isinstance(row["value"], float) else row["value"]})
    md = args.out.with_suffix(".md")
    lines = ["# al_runner benchmark", "", f"Command: `python scripts/bench.py {' '.join(argv)}`", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()] + [""]
    lines += ["| benchmark | measurement | value | unit | target | status | note |", "|---|---|---:|---|---|---|---|"]
    for row in res.rows:
        lines.append(f"| {row['bench']} | {row['name']} | {fmt(row['value'])} | {row['unit']} | {row['target']} | "
                     f"{row['status']} | {row['note']} |")
    md.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out} and {md}")


def main(argv=None) -> Results:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.kcenter_child:
        impl, n, m, d, k, dev = json.loads(args.kcenter_child)
        print(json.dumps(kcenter_child(impl, n, m, d, k, dev)))
        return Results()
    if args.malloc_child:
        print(json.dumps(malloc_child(*json.loads(args.malloc_child))))
        return Results()
    tuned = tune_glibc_malloc() if args.malloc == "no-mmap" else False
    info = machine_info(args.device)
    info["malloc"] = args.malloc + ("" if args.malloc == "default" or tuned else " (mallopt unavailable: default)")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    if args.quick:
        print("--quick: tiny sizes, the numbers only show that the benchmarks run", flush=True)
    res = Results()
    t0 = time.perf_counter()
    splits = load_splits(args) if args.only & {2, 3} else None
    for number, fn in [(1, bench_train_step), (2, bench_epoch), (3, bench_scoring), (4, bench_kcenter),
                       (5, bench_ranking), (6, bench_cycle), (7, bench_malloc)]:
        if number in args.only:
            load = ForeignLoad()
            fn(args, res, splits) if number in (2, 3) else fn(args, res)
            other = round(load.cores(), 2)
            warn = other > 0.2
            res.add(f"{number} {'load' if not warn else 'LOAD'}", f"bench {number}: CPU used by other processes meanwhile", other,
                    "cores", note="numbers above disturbed: rerun" if warn else "")
    if 64 in args.widths:
        projection(args, res)
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["wall_s"] = f"{time.perf_counter() - t0:.0f}"
    print(f"\nload average at start {info['loadavg_start']}, at end {info['loadavg_end']}; {info['wall_s']} s")
    write_outputs(args, res, info, argv)
    return res


if __name__ == "__main__":
    main()

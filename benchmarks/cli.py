"""`python -m benchmarks`: options, the run of the selected benchmarks, the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks import __doc__ as PACKAGE_DOC
from benchmarks.harness import REPO, ForeignLoad, Results, machine_info, tune_glibc_malloc, write_outputs


def default_cifar10_jpg(environ=os.environ) -> Path:
    """Where the presets look for the CIFAR-10 JPEG tree (conf/experiment/cifar10_cpu.yaml's task.root, with
    `paths.data` = $AL_RUNNER_DATA), so a user who moved the data for al-run needs no --data here."""
    if environ.get("AL_RUNNER_CIFAR10_JPG"):
        return Path(environ["AL_RUNNER_CIFAR10_JPG"])
    return Path(environ.get("AL_RUNNER_DATA") or REPO / "data") / "cifar10-jpg"


def cases():
    """number -> benchmark function(args, res); imported here so a child process loads only what it runs."""
    from benchmarks.cycle import bench_cycle
    from benchmarks.kcenter import bench_kcenter
    from benchmarks.malloc import bench_malloc
    from benchmarks.precision import bench_precision
    from benchmarks.ranking import bench_ranking
    from benchmarks.scoring import bench_scoring
    from benchmarks.training import bench_epoch, bench_train_step

    return {
        1: bench_train_step,
        2: bench_epoch,
        3: bench_scoring,
        4: bench_kcenter,
        5: bench_ranking,
        6: bench_cycle,
        7: bench_malloc,
        8: bench_precision,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=PACKAGE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        default="1,2,3,4,5,6,7",
        help="comma-separated benchmark numbers (default: 1-7; 8, fp32 vs bf16, only when named)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that everything runs, numbers are not meaningful"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, all cores)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "outputs" / "bench" / "bench.csv",
        help="CSV to write (a .md copy goes next to it)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=default_cifar10_jpg(),
        help="CIFAR-10 JPEG tree (train/<class>/*.jpg, test/<class>/*.jpg); default as the presets' task.root: "
        "$AL_RUNNER_CIFAR10_JPG, else $AL_RUNNER_DATA/cifar10-jpg, else data/cifar10-jpg in the repository",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("AL_RUNNER_CACHE", Path.home() / ".cache" / "al_runner")),
        help="al_runner's decoded-image cache directory",
    )
    p.add_argument("--widths", default="64,16", help="ResNet-18 widths (64 = full width)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help="runner's eval/scoring batch (default: schedule.eval_batch_size of conf/schedule/paper_cifar10.yaml)",
    )
    p.add_argument(
        "--alt-eval-batch", type=int, default=1000, help="a second eval batch size, to show its effect (bench 3, 7)"
    )
    p.add_argument("--step-warmup-full", type=int, default=2)
    p.add_argument("--step-repeats-full", type=int, default=8)
    p.add_argument("--step-warmup", type=int, default=3)
    p.add_argument("--step-repeats", type=int, default=20)
    p.add_argument(
        "--gap-ablation",
        action="store_true",
        help="bench 1: also time the loss module with its earlier pooling (autograd mean, NCHW gradient)",
    )
    p.add_argument(
        "--compile", action="store_true", help="also time runtime.compile=true (torch.compile) in bench 1 and 3"
    )
    p.add_argument(
        "--cl-for-compile",
        action="store_true",
        help="compile comparison in channels_last even where it is not the default",
    )
    p.add_argument(
        "--loss-modules",
        default=None,
        help="bench 1: also compare runtime.loss_module options, e.g. eager,fused,compiled "
        "(default memory format only)",
    )
    p.add_argument(
        "--cuda-graph", action="store_true", help="bench 1 module options: also with runtime.cuda_graph=true (CUDA)"
    )
    p.add_argument("--option-repeats", type=int, default=30, help="bench 1 module options: timed samples per case")
    p.add_argument("--option-warmup", type=int, default=6, help="bench 1 module options: warm-up samples per case")
    p.add_argument(
        "--steps-per-sample",
        type=int,
        default=1,
        help="bench 1 module options: training steps per timed sample, with no host sync between them",
    )
    p.add_argument("--epoch-images", type=int, default=1000)
    p.add_argument("--epoch-repeats-full", type=int, default=2)
    p.add_argument("--epoch-repeats", type=int, default=3)
    p.add_argument("--pipe-repeats", type=int, default=5)
    p.add_argument("--ref-workers", type=int, default=0, help="reference DataLoader num_workers (popular code: 0)")
    p.add_argument("--score-m", type=int, default=10_000, help="unlabeled images scored at width < 64")
    p.add_argument(
        "--score-m-full",
        type=int,
        default=1000,
        help="unlabeled images scored at full width (img/s is reported, M=10k seconds projected)",
    )
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
    p.add_argument("--cycle-epochs", type=int, default=None, help="shrink the preset's epochs (said so in the output)")
    p.add_argument("--cycle-sampler", default="learning_loss")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for bench 6 (repeatable)")
    p.add_argument(
        "--synthetic",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=None,
        help="N_TRAIN,N_TEST generated images (task=synthetic) instead of the JPEG tree (benches 2, 3, 6; for tests)",
    )
    p.add_argument(
        "--malloc",
        choices=["default", "no-mmap"],
        default="default",
        help="no-mmap: glibc mallopt(M_MMAP_MAX=0) before anything is allocated (see bench 7)",
    )
    p.add_argument("--malloc-n", type=int, default=1000)
    p.add_argument("--malloc-steps", type=int, default=4)
    p.add_argument("--malloc-repeats", type=int, default=2)
    p.add_argument(
        "--models",
        default=None,
        help="bench 8: models, from resnet18-w64, resnet18-w16, small_cnn, ssdlite320, ssd300, hourglass, "
        "hourglass_small (default: all but hourglass_small; --quick: resnet18-w16, small_cnn, "
        "ssdlite320 at 128 px, hourglass_small)",
    )
    p.add_argument("--precisions", default="fp32,bf16", help="bench 8: fp32, bf16 (bf16 = runtime.amp=true)")
    p.add_argument("--precision-paths", default="train,score,eval", help="bench 8: train, score, eval")
    p.add_argument("--precision-warmup", type=int, default=2, help="bench 8: warm-up training steps per case")
    p.add_argument("--precision-repeats", type=int, default=10, help="bench 8: timed training steps per case")
    p.add_argument("--precision-score-repeats", type=int, default=3, help="bench 8: timed scoring / evaluation passes")
    p.add_argument(
        "--precision-detection-images",
        type=int,
        default=48,
        help="bench 8: generated VOC images for SSDlite / SSD300 (pool + test)",
    )
    p.add_argument(
        "--precision-pose-people",
        type=int,
        default=48,
        help="bench 8: generated MPII people for the hourglass (pool + test)",
    )
    p.add_argument("--kcenter-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--malloc-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        apply_quick(args)
    if args.models is None:
        from benchmarks.precision import DEFAULT_MODELS, QUICK_MODELS

        args.models = QUICK_MODELS if args.quick else DEFAULT_MODELS
    if args.eval_batch is None:
        args.eval_batch = int(OmegaConf.load(REPO / "conf" / "schedule" / "paper_cifar10.yaml").eval_batch_size)
    args.only = {int(x) for x in args.only.split(",") if x.strip()}
    args.widths = [int(w) for w in str(args.widths).split(",")]
    args.data = args.data.resolve()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(args.device)
    return args


def apply_quick(args: argparse.Namespace) -> None:
    """Tiny sizes everywhere: only shows that every benchmark runs."""
    args.widths = "16,8" if args.widths == "64,16" else args.widths
    args.batch, args.eval_batch, args.alt_eval_batch = 32, 128, 64
    args.step_warmup_full = args.step_warmup = 1
    args.step_repeats_full = args.step_repeats = 2
    args.option_repeats, args.option_warmup = 3, 5
    args.epoch_images, args.epoch_repeats, args.epoch_repeats_full, args.pipe_repeats = 128, 1, 1, 1
    args.score_m = args.score_m_full = args.eval_n = args.eval_n_full = 256
    args.score_repeats = args.score_repeats_full = 1
    args.kc_n, args.kc_m, args.kc_d, args.kc_k, args.kc_repeats = 2000, 1000, 64, 100, 1
    args.rank_n, args.rank_naive_n, args.rank_repeats = 2000, 200, 2
    args.cycle_epochs = 1 if args.cycle_epochs is None else args.cycle_epochs
    args.malloc_n, args.malloc_steps, args.malloc_repeats = 256, 1, 1
    args.precision_warmup, args.precision_repeats, args.precision_score_repeats = 1, 2, 1
    args.precision_detection_images = min(args.precision_detection_images, 16)
    args.precision_pose_people = min(args.precision_pose_people, 24)


def run_child(args: argparse.Namespace) -> None:
    """A fresh-process measurement (benchmarks 4 and 7); prints its result as one JSON line."""
    if args.kcenter_child:
        from benchmarks.kcenter import kcenter_child

        print(json.dumps(kcenter_child(*json.loads(args.kcenter_child))))
    else:
        from benchmarks.malloc import malloc_child

        mode, width, n, steps, device, batch, eval_batch, alt = json.loads(args.malloc_child)
        args.device, args.batch, args.eval_batch, args.alt_eval_batch = torch.device(device), batch, eval_batch, alt
        print(json.dumps(malloc_child(args, mode, width, n, steps)))


def run_benchmarks(args: argparse.Namespace) -> Results:
    """The selected benchmarks in order, each followed by the CPU time other processes used meanwhile."""
    res = Results()
    for number, fn in cases().items():
        if number not in args.only:
            continue
        load = ForeignLoad()
        fn(args, res)
        other = round(load.cores(), 2)
        warn = other > 0.2
        res.add(
            f"{number} {'LOAD' if warn else 'load'}",
            f"bench {number}: CPU used by other processes meanwhile",
            other,
            "cores",
            note="numbers above disturbed: rerun" if warn else "",
        )
    if 64 in args.widths:
        from benchmarks.projection import projection

        projection(args, res)
    return res


def main(argv: list[str] | None = None) -> Results:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.kcenter_child or args.malloc_child:
        run_child(args)
        return Results()
    tuned = tune_glibc_malloc() if args.malloc == "no-mmap" else False
    info = machine_info(args.device)
    info["malloc"] = args.malloc + ("" if args.malloc == "default" or tuned else " (mallopt unavailable: default)")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    if args.quick:
        print("--quick: tiny sizes, the numbers only show that the benchmarks run", flush=True)
    t0 = time.perf_counter()
    res = run_benchmarks(args)
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["wall_s"] = f"{time.perf_counter() - t0:.0f}"
    print(f"\nload average at start {info['loadavg_start']}, at end {info['loadavg_end']}; {info['wall_s']} s")
    write_outputs(args.out, res, info, argv)
    return res

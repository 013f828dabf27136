"""Performance benchmarks: al_runner side by side with a typical public LL4AL reimplementation.

Every comparison is measured in one process run with the A/B repeats interleaved (the order
alternates every repeat), so machine noise hits both sides; each figure is the median of the
repeats after warm-up, and each ratio is the median of the per-repeat paired ratios. The runner's
side is composed from conf/ (experiment=reduced_cifar10_jpg + overrides) and built by al_runner.build.

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
  7  glibc malloc: default vs M_MMAP_MAX=0, fresh processes
  8  fp32 vs bf16 autocast (runtime.amp=true), interleaved, per model (--models: ResNet-18 width 64 / 16, small
     CNN, SSDlite320, SSD300, hourglass) and path (training step plain / with the module, scoring, evaluation):
     img/s, bf16/fp32 speed ratio, FLOPs per image, achieved GFLOP/s against the CPU's fp32 and bf16 peaks
     derived from its flags and clock. Only with --only 8 (not in the default run)

  .venv/bin/python -m benchmarks                       # everything (about 8-15 min on 2 CPU cores)
  .venv/bin/python -m benchmarks --only 4,5 --quick    # seconds
  .venv/bin/python -m benchmarks --device cuda --out outputs/bench/gpu.csv
  .venv/bin/python -m benchmarks --only 8 --threads 1  # fp32 vs bf16 (docs/benchmarks.md "fp32 vs bf16 on CPU")

Writes the table to stdout, the rows to --out (CSV) and a markdown copy next to it (.md).

Four more benchmarks are modules of this package with their own options (docs/benchmarks.md):
`python -m benchmarks.detection` (SSD training step, MultiBox loss, data pipeline, FLOPs, GPU throughput),
`python -m benchmarks.pose` (hourglass training step, FLOPs), `python -m benchmarks.samplers` (each sampler's
selection step at paper scale) and `python -m benchmarks.launchers` (parallel jobs vs threads for a sweep).
"""

from benchmarks.cli import main, parse_args
from benchmarks.harness import Results, interleaved, paired_ratio, write_outputs

__all__ = ["Results", "interleaved", "main", "paired_ratio", "parse_args", "write_outputs"]

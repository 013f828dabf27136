"""Is a sweep faster as N parallel jobs x 1 thread, or one job at a time x N threads?

Runs the same jobs of an experiment preset twice into fresh directories:
  sequential: the basic launcher, runtime.threads=N (each run uses all N cores)
  parallel:   hydra/launcher=parallel, n_jobs=N (each run gets 1 thread)
and prints the wall-clock of each, with the load averages before and after (the CPU may be shared:
a measurement taken while other work runs says little; repeat it on an idle machine).

  python -m benchmarks.launchers                                     # demo, seed 0, 2 samplers, 2 cores
  python -m benchmarks.launchers --experiment reduced_cifar10_jpg --extra schedule.cycles=1 \
      --extra task.root=<CIFAR-10 JPEG tree>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_sweep(args: argparse.Namespace, out: Path, parallel: bool) -> float:
    mode = (
        ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={args.cores}", "runtime.threads=1"]
        if parallel
        else [f"runtime.threads={args.cores}"]
    )
    command = [
        sys.executable,
        "-m",
        "al_runner",
        "-m",
        f"experiment={args.experiment}",
        f"seed={args.seeds}",
        f"sampler={args.samplers}",
        "progress=false",
        f"paths.output={out}",
        *mode,
        *args.extra,
    ]
    # no thread caps inherited from the caller: runtime.threads decides
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(command)}):\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.launchers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--samplers", default="random,learning_loss")
    parser.add_argument("--cores", type=int, default=2, help="N: jobs in parallel, or threads of one job")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--extra", action="append", default=[], help="more overrides (repeatable)")
    args = parser.parse_args()
    print(
        f"cpu_count={os.cpu_count()} experiment={args.experiment} seeds={args.seeds} samplers={args.samplers} "
        f"extra={args.extra}"
    )
    for repeat in range(args.repeats):
        for parallel in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                load_before = os.getloadavg()
                seconds = run_sweep(args, Path(tmp), parallel)
                load_after = os.getloadavg()
            name = f"{args.cores} jobs x 1 thread " if parallel else f"1 job x {args.cores} threads"
            print(
                f"repeat {repeat}: {name}: {seconds:7.1f} s   load avg before "
                f"{load_before[0]:.2f}/{load_before[1]:.2f}/"
                f"{load_before[2]:.2f} after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

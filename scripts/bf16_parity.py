#!/usr/bin/env python
"""Accuracy parity of bf16 autocast vs fp32 on CPU: `cifar10_cpu` cycle 0, the same images and initial weights
in both precisions, for each seed x sampler; paired differences with 95 % intervals.

    .venv/bin/python scripts/bf16_parity.py                       # runs the sweep, then prints the table
    .venv/bin/python scripts/bf16_parity.py --dry-run             # prints the al-run command only
    .venv/bin/python scripts/bf16_parity.py --analyse-only        # the table from runs already made

The sweep is one `al-run -m` (resumable: rerunning the script skips finished runs):
experiment=cifar10_cpu schedule.cycles=1 seed=0,1,2,3,4 sampler=random,learning_loss runtime.amp=false,true
runtime.threads=1 name=bf16_parity. Cycle 0 trains on the initial 1,000 labeled images, which depend on the seed
only (seed_data), from initial weights that depend on the seed only (seed_model): fp32 and bf16 runs of a seed
see the same images from the same start, so their difference is the precision's. `learning_loss` also trains the
module (which stays fp32 under autocast); its held-out ranking accuracy is compared too.

Refuses to start on a CPU without native bf16 units (no amx_bf16 / avx512_bf16 flag): there bf16 is emulated,
about 11x slower than fp32, so a sweep would take days and say nothing about the machines that have the units.
`--force` runs anyway. `--analyse-only` only reads runs, on any CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's al_runner, not an installed one

METRICS = {"accuracy": "value", "ranking accuracy": "ranking_accuracy"}  # label -> cycles.csv column


def sweep_command(
    seeds: list[int], samplers: list[str], threads: int, name: str, output: Path, launcher: str, extra: list[str]
) -> list[str]:
    """The al-run multirun: every seed x sampler x precision, cycle 0 only, as its own resumable run."""
    return [
        sys.executable,
        "-m",
        "al_runner",
        "-m",
        "experiment=cifar10_cpu",
        "schedule.cycles=1",
        f"seed={','.join(str(s) for s in seeds)}",
        f"sampler={','.join(samplers)}",
        "runtime.amp=false,true",
        f"runtime.threads={threads}",
        f"name={name}",
        f"paths.output={output}",
        f"hydra/launcher={launcher}",
        "hydra.callbacks.sweep_summary.statistics=false",
        "progress=false",
        *extra,
    ]


def collect(sweep_dir: Path) -> list[dict]:
    """One row per run directory of the sweep: sampler, seed, precision, CPU, and the cycle-0 metrics."""
    from omegaconf import OmegaConf

    rows = []
    for config in sorted(sweep_dir.glob("*/config.yaml")):
        run = config.parent
        cycles = run / "cycles.csv"
        if not cycles.exists():
            continue
        cfg = OmegaConf.load(config)
        amp = cfg.runtime.amp
        if amp not in (True, False):  # "auto": not one of this script's runs
            continue
        with open(cycles, newline="") as f:
            cycle0 = next((r for r in csv.DictReader(f) if int(r["cycle"]) == 0), None)
        if cycle0 is None:
            continue
        record = json.loads((run / "platform.json").read_text()) if (run / "platform.json").exists() else {}
        row = {
            "run": run.name,
            "sampler": str(cfg.sampler.name),
            "seed": int(cfg.seed),
            "precision": "bf16" if amp else "fp32",
            "cpu_model": record.get("cpu_model", "unknown"),
            "bf16_units": record.get("bf16_units", "unknown"),
        }
        for label, column in METRICS.items():
            value = cycle0.get(column, "")
            row[label] = float(value) if value not in ("", None) else math.nan
        rows.append(row)
    return rows


def paired_differences(rows: list[dict], level: float = 0.95) -> list[dict]:
    """Per sampler and metric: bf16 - fp32 paired by seed, its mean with a t interval, a paired t-test, and each
    precision's mean and seed standard deviation (the "fp32 seed spread" bf16 is judged against)."""
    from scipy import stats

    out = []
    for sampler in sorted({r["sampler"] for r in rows}):
        by = {(r["seed"], r["precision"]): r for r in rows if r["sampler"] == sampler}
        seeds = sorted({seed for seed, _ in by if (seed, "fp32") in by and (seed, "bf16") in by})
        for metric in METRICS:
            pairs = [(by[(s, "fp32")][metric], by[(s, "bf16")][metric]) for s in seeds]
            pairs = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
            if not pairs:
                continue
            fp32, bf16 = [a for a, _ in pairs], [b for _, b in pairs]
            diffs = [b - a for a, b in pairs]
            n = len(diffs)
            mean = statistics.fmean(diffs)
            sd = statistics.stdev(diffs) if n > 1 else math.nan
            if n > 1 and sd > 0:
                half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
                p = float(stats.ttest_rel(bf16, fp32).pvalue)
            else:
                half, p = (0.0, math.nan) if n > 1 else (math.nan, math.nan)
            fp32_sd = statistics.stdev(fp32) if n > 1 else math.nan
            out.append(
                {
                    "sampler": sampler,
                    "metric": metric,
                    "n": n,
                    "fp32_mean": statistics.fmean(fp32),
                    "fp32_sd": fp32_sd,
                    "bf16_mean": statistics.fmean(bf16),
                    "bf16_sd": statistics.stdev(bf16) if n > 1 else math.nan,
                    "diff_mean": mean,
                    "diff_sd": sd,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "p": p,
                    "ci_within_fp32_spread": bool(n > 1 and -fp32_sd <= mean - half and mean + half <= fp32_sd),
                }
            )
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| sampler | metric | seeds | fp32 mean ± sd | bf16 mean ± sd | bf16 − fp32 (95 % CI) | paired t p | "
        "CI within ± fp32 sd |",
        "|---|---|---:|---|---|---|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['sampler']} | {r['metric']} | {r['n']} | {r['fp32_mean']:.4f} ± {r['fp32_sd']:.4f} | "
            f"{r['bf16_mean']:.4f} ± {r['bf16_sd']:.4f} | {r['diff_mean']:+.4f} ({r['ci_low']:+.4f} … "
            f"{r['ci_high']:+.4f}) | {r['p']:.3f} | {'yes' if r['ci_within_fp32_spread'] else 'no'} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Arguments after -- go to al-run as extra overrides."
    )
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--samplers", default="random,learning_loss")
    p.add_argument("--threads", type=int, default=1, help="runtime.threads of every run")
    p.add_argument("--name", default="bf16_parity", help="the sweep's name: runs go to <output>/<name>/")
    p.add_argument("--output", type=Path, default=REPO / "outputs")
    p.add_argument("--launcher", default="parallel", help="hydra/launcher (parallel: jobs side by side)")
    p.add_argument("--analyse-only", action="store_true", help="only read the runs already in <output>/<name>")
    p.add_argument("--dry-run", action="store_true", help="print the al-run command and stop")
    p.add_argument("--force", action="store_true", help="run even on a CPU without native bf16 units")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    return args


def main(argv=None) -> int:
    from al_runner import platform

    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    command = sweep_command(seeds, samplers, args.threads, args.name, args.output, args.launcher, args.extra)
    if args.dry_run:
        print(" ".join(command))
        return 0
    if not args.analyse_only:
        units = platform.bf16_units()
        if units == "none" and not args.force:
            print(
                f"refused: this CPU ({platform.cpu_model()}) has no native bf16 units (no amx_bf16 or avx512_bf16 "
                f"flag), so bf16 is emulated here (~11x slower than fp32) and says nothing about parity on a CPU "
                f"that has them; run on such a CPU, or pass --force",
                file=sys.stderr,
            )
            return 2
        print(" ".join(command), flush=True)
        done = subprocess.run(command, cwd=REPO)
        if done.returncode != 0:
            print(
                f"al-run exited with {done.returncode}; the table below covers the runs that finished", file=sys.stderr
            )
    rows = collect(args.output / args.name)
    if not rows:
        print(f"no finished runs in {args.output / args.name}", file=sys.stderr)
        return 1
    cpus = sorted({r["cpu_model"] for r in rows})
    if len(cpus) > 1:
        print(
            f"refused: the runs were made on {len(cpus)} CPU types ({'; '.join(cpus)}); a paired difference must "
            f"not mix CPU types: keep one type's runs in {args.output / args.name}",
            file=sys.stderr,
        )
        return 1
    results = paired_differences(rows)
    text = (
        f"cifar10_cpu cycle 0, bf16 autocast vs fp32, {cpus[0]} (bf16 units: "
        f"{', '.join(sorted({r['bf16_units'] for r in rows}))}); {len(rows)} runs\n\n{table(results)}\n"
    )
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: each sampler's selection step at paper scale, in fresh processes (seconds and peak extra memory).

What is timed is `sampler.select` on precomputed candidates: M = 10,000 candidates with 512-d embeddings,
class probabilities over 10 classes, T = 20 MC-dropout passes, factored gradient embeddings (10 + 512 per
point), 9,000 labeled embeddings as core-set centres, K = 1,000 picks. The forward passes that produce
these inputs are benchmark 3 of `python -m benchmarks` (scoring); they cost the same for every sampler that
needs one pass (BALD adds T passes of the last layer only).

    python -m benchmarks.samplers --out outputs/reference/bench/samplers_cpu.csv

Each sampler runs in its own process (peak RSS would otherwise carry over), `--repeats` times; the table
gives medians: the first call in a fresh process (cold) and a second call (warm), and the peak memory added
by the first call over what the inputs already hold (max-RSS delta on CPU, max_memory_allocated on CUDA).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from al_runner.samplers import Candidates, GradientEmbedding
from benchmarks.harness import REPO, ForeignLoad, machine_info, peak_rss_bytes, sync

SAMPLERS = [
    "random",
    "entropy",
    "margin",
    "least_confidence",
    "bald",
    "coreset",
    "badge",
    "learning_loss",
    "hybrid",
    "oracle_true_loss",
]


def build_sampler(name: str):
    """The sampler exactly as conf/sampler/<name>.yaml builds it."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return instantiate(compose("config", overrides=[f"sampler={name}"]).sampler.strategy)


def candidates(sampler, m: int, d: int, classes: int, passes: int, labeled: int, device: torch.device):
    """Seeded synthetic inputs for exactly what `sampler` needs (nothing else is allocated)."""
    g = torch.Generator().manual_seed(0)
    fields = {}
    needs = set(sampler.needs)
    if "uncertainty" in needs:
        fields["uncertainty"] = torch.rand(m, generator=g)
    if "probabilities" in needs:
        fields["probabilities"] = torch.softmax(torch.randn(m, classes, generator=g) * 2, 1)
    if "mc_probabilities" in needs:
        fields["mc_probabilities"] = torch.softmax(torch.randn(m, classes, passes, generator=g) * 2, 1)
    if "gradient_embedding" in needs:
        p = torch.softmax(torch.randn(m, classes, generator=g) * 2, 1)
        fields["gradient_embedding"] = GradientEmbedding(
            p - torch.nn.functional.one_hot(p.argmax(1), classes).float(), torch.randn(m, d, generator=g).relu_()
        )
    if "predicted_loss" in needs:
        fields["predicted_loss"] = torch.randn(m, generator=g)
    if "true_loss" in needs:
        fields["true_loss"] = torch.rand(m, generator=g)
    if "embedding" in needs:
        fields["embedding"] = torch.randn(m, d, generator=g).relu_()
    if sampler.needs_labeled_embedding:
        fields["labeled_embedding"] = torch.randn(labeled, d, generator=g).relu_()
    moved = {
        k: (
            GradientEmbedding(v.loss_gradient.to(device), v.features.to(device))
            if isinstance(v, GradientEmbedding)
            else v.to(device)
        )
        for k, v in fields.items()
    }
    return Candidates(count=m, **moved)


def child(name: str, args) -> dict:
    """One fresh process: build inputs, then time the first and a second selection, with the peak memory added."""
    device = torch.device(args.device)
    sampler = build_sampler(name)
    inputs = candidates(sampler, args.m, args.d, args.classes, args.passes, args.labeled, device)
    sync(device)
    rss0 = peak_rss_bytes(reset=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda0 = torch.cuda.memory_allocated(device)
    out = {
        "sampler": name,
        "needs": "+".join(
            sorted(sampler.needs | ({"labeled_embedding"} if sampler.needs_labeled_embedding else set()))
        ),
    }
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        picks, _ = sampler.select(inputs, args.k, torch.Generator().manual_seed(1))
        sync(device)
        out[f"{run}_s"] = time.perf_counter() - t0
        if run == "cold":
            out["peak_extra_mib"] = (peak_rss_bytes() - rss0) / 2**20
            if device.type == "cuda":
                out["peak_extra_mib"] = (torch.cuda.max_memory_allocated(device) - cuda0) / 2**20
    assert picks.unique().numel() == args.k, f"{name}: picks are not {args.k} distinct points"
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.samplers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--m", type=int, default=10_000, help="candidates (M)")
    p.add_argument("--d", type=int, default=512, help="embedding width")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--passes", type=int, default=20, help="MC-dropout passes (T) for BALD's inputs")
    p.add_argument("--labeled", type=int, default=9_000, help="labeled embeddings (core-set / hybrid centres)")
    p.add_argument("--k", type=int, default=1_000, help="picks (K)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per sampler")
    p.add_argument("--only", default=",".join(SAMPLERS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "samplers.csv")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    forwarded = [
        f"--{key}={getattr(args, key)}" for key in ("m", "d", "classes", "passes", "labeled", "k", "device", "threads")
    ]
    t0, load0, foreign = time.time(), os.getloadavg(), ForeignLoad()
    rows = []
    for name in args.only.split(","):
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.samplers", *forwarded, "--child", name],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(args.repeats)
        ]
        row = {
            "sampler": name,
            "needs": runs[0]["needs"],
            "m": args.m,
            "d": args.d,
            "k": args.k,
            "cold_s": statistics.median(r["cold_s"] for r in runs),
            "warm_s": statistics.median(r["warm_s"] for r in runs),
            "peak_extra_mib": statistics.median(r["peak_extra_mib"] for r in runs),
        }
        rows.append(row)
        print(
            f"{name:<18} cold {row['cold_s']:.3f} s  warm {row['warm_s']:.3f} s  peak +{row['peak_extra_mib']:.1f} MiB",
            flush=True,
        )
    write(
        args,
        rows,
        {
            **machine_info(torch.device(args.device)),
            "torch_threads": args.threads,
            "loadavg_start": " ".join(f"{x:.2f}" for x in load0),
            "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "wall_s": round(time.time() - t0),
            "other_processes_cores": round(foreign.cores(), 2),
        },
    )


def write(args, rows: list[dict], info: dict) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Sampler selection benchmark",
        "",
        f"Command: `python -m benchmarks.samplers {' '.join(sys.argv[1:])}`",
        "",
        f"M = {args.m:,} candidates, {args.d}-d embeddings, {args.classes} classes, T = {args.passes} MC passes, "
        f"{args.labeled:,} labeled centres, K = {args.k:,}; median of {args.repeats} fresh processes. Only "
        "`sampler.select` is timed (inputs precomputed); peak = memory the first call adds to the inputs.",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        # the CPU time other processes used while this ran (the load average lags by minutes, so it is not used)
        *(
            [
                f"Other processes used {info['other_processes_cores']:.2f} cores while this ran: the times are upper "
                "bounds of an idle machine's.",
                "",
            ]
            if info["other_processes_cores"] > 0.2
            else []
        ),
        "| sampler | needs | first call (s) | second call (s) | peak extra memory (MiB) |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {r['sampler']} | {r['needs']} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {r['peak_extra_mib']:.1f} |"
            for r in rows
        ),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

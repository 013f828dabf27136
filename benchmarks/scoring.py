"""Benchmark 3: scoring M unlabeled images per sampler (loop.score_inputs) and test evaluation (loop.evaluate),
vs the reference's DataLoader loops; and scoring vs training throughput."""

from __future__ import annotations

import torch

from al_runner.loop import evaluate, score_inputs
from benchmarks.harness import Results, interleaved, median, paired_ratio
from benchmarks.projection import paper_protocol
from benchmarks.reference import reference_loader, reference_score, reference_test
from benchmarks.runner_side import (
    build_bench_task,
    build_side,
    compose_config,
    default_format,
    formats,
    side_overrides,
    task_overrides,
)

NEEDS = {
    "entropy": frozenset({"uncertainty"}),
    "core-set": frozenset({"embedding"}),
    "learning loss": frozenset({"predicted_loss"}),
}


def bench_scoring(args, res: Results) -> None:
    device, fmts, dflt = args.device, formats(args), default_format(args)
    paper_m = paper_protocol().subset_size
    data_cfg = task_overrides(args, True)
    base = build_bench_task(compose_config(data_cfg + side_overrides(args, args.widths[0])))
    pool_perm = torch.randperm(base.pool_size, generator=torch.Generator().manual_seed(0))
    augmentation = base.task.augmentation
    b = "3 scoring"
    eb, alt = args.eval_batch, args.alt_eval_batch
    for width in args.widths:
        full = width == 64
        m = min(args.score_m_full if full else args.score_m, base.pool_size)
        n_eval = min(args.eval_n_full if full else args.eval_n, base.test_size)
        repeats = args.score_repeats_full if full else args.score_repeats
        idx = pool_perm[:m]
        task = base.variant(test_limit=n_eval)
        learners = {
            label: build_side(compose_config(data_cfg + side_overrides(args, width, channels_last=cl)), task).learner
            for label, cl in fmts
        }
        reference = build_side(
            compose_config(data_cfg + side_overrides(args, width, channels_last=False, amp=False)), task
        ).learner
        cases, warm = {}, {}
        for sampler in ["learning loss"] if full else list(NEEDS):
            for label, _ in fmts:
                if sampler != "learning loss" and label != dflt:
                    continue
                k = f"score {sampler} runner {label}"
                cases[k] = lambda l=learners[label], s=sampler: score_inputs(l, task, idx, eb, NEEDS[s])
                warm[k] = lambda l=learners[label], s=sampler: score_inputs(l, task, idx[: args.batch], eb, NEEDS[s])
        if alt != eb:  # the effect of the eval batch size alone
            k = f"score learning loss runner {dflt} batch {alt}"
            cases[k] = lambda: score_inputs(learners[dflt], task, idx, alt, NEEDS["learning loss"])
            warm[k] = lambda: score_inputs(learners[dflt], task, idx[:alt], alt, NEEDS["learning loss"])
        if args.compile:  # runtime.compile=true; its compilation happens in the warm-up
            cl = dflt == "channels_last" or args.cl_for_compile
            cfmt = "channels_last" if cl else "NCHW"
            compiled = build_side(
                compose_config(data_cfg + side_overrides(args, width, channels_last=cl, compile=True)), task
            ).learner
            k = f"score learning loss runner {cfmt} compiled"
            cases[k] = lambda: score_inputs(compiled, task, idx, eb, NEEDS["learning loss"])
            warm[k] = lambda: score_inputs(compiled, task, idx[:eb], eb, NEEDS["learning loss"])
        pool_loader = reference_loader(
            *task.pool_images(idx), False, args.batch, args.ref_workers, device, augmentation
        )
        warm_loader = reference_loader(*task.pool_images(idx[: args.batch]), False, args.batch, 0, device, augmentation)
        cases["score learning loss reference"] = lambda: reference_score(reference, pool_loader, device)
        warm["score learning loss reference"] = lambda: reference_score(reference, warm_loader, device)
        for label, _ in fmts:
            cases[f"eval runner {label}"] = lambda l=learners[label]: evaluate(l, task, eb)
            warm[f"eval runner {label}"] = lambda l=learners[label]: score_inputs(
                l, task, idx[: args.batch], eb, NEEDS["learning loss"]
            )
        test_loader = reference_loader(*task.test_images(), False, args.batch, args.ref_workers, device, augmentation)
        cases["eval reference"] = lambda: reference_test(reference, test_loader, device)
        warm["eval reference"] = lambda: reference_test(reference, warm_loader, device)
        print(
            f"\n[3] scoring M={m} unlabeled pool images and evaluating {n_eval} test images, ResNet-18 width {width} "
            f"+ loss module; runner eval batch {eb}, reference batch {args.batch}; "
            f"{repeats} timed runs per case after a one-batch warm-up, interleaved",
            flush=True,
        )
        t = interleaved(cases, repeats, 1, device, warmup_cases=warm)
        ref_score = m / median(t["score learning loss reference"])
        res.add(
            b,
            f"w{width} scoring: reference (DataLoader, no_grad, batch {args.batch})",
            ref_score,
            "img/s",
            note=f"M={paper_m:,}: {paper_m / ref_score:.0f} s",
        )
        for k in cases:
            if not k.startswith("score") or "reference" in k:
                continue
            ips = m / median(t[k])
            res.add(b, f"w{width} {k}", ips, "img/s", note=f"M={paper_m:,}: {paper_m / ips:.1f} s")
            if k.startswith("score learning loss runner") and "batch" not in k and "compiled" not in k:
                label = k.split()[-1]
                res.facts[f"score_ips/w{width}/{label}"] = ips
                ratio = paired_ratio(t["score learning loss reference"], t[k])
                res.add(b, f"w{width} scoring runner {label} / reference", ratio, "x", ">= 1.25", met=ratio >= 1.25)
                train = res.facts.get(f"train_ips/w{width}/{label}/ll")
                if train:
                    res.add(b, f"w{width} scoring / training throughput (runner {label})", ips / train, "x")
        for k in [k for k in t if k.endswith("compiled")]:
            eager = f"score learning loss runner {k.split()[-2]}"
            res.add(b, f"w{width} torch.compile speed-up, scoring ({k.split()[-2]})", paired_ratio(t[eager], t[k]), "x")
        if f"score learning loss runner {dflt} batch {alt}" in t:
            r = paired_ratio(
                t[f"score learning loss runner {dflt} batch {alt}"], t[f"score learning loss runner {dflt}"]
            )
            res.add(b, f"w{width} eval batch {eb} vs {alt} (runner {dflt}, speed-up)", r, "x")
        res.add(
            b,
            f"w{width} evaluation: reference (accuracy only, batch {args.batch})",
            n_eval / median(t["eval reference"]),
            "img/s",
        )
        for label, _ in fmts:
            ips = n_eval / median(t[f"eval runner {label}"])
            res.facts[f"eval_ips/w{width}/{label}"] = ips
            res.add(b, f"w{width} evaluation: runner {label} (metric, losses, uncertainty, ranking acc.)", ips, "img/s")
            ratio = paired_ratio(t["eval reference"], t[f"eval runner {label}"])
            res.add(b, f"w{width} evaluation runner {label} / reference", ratio, "x", ">= 1.25", met=ratio >= 1.25)

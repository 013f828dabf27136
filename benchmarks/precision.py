"""Benchmark 8: fp32 vs bf16 autocast (`runtime.amp=true`) per model and path, against this CPU's derived peaks.

For each model of `--models` the runner's side is composed from conf/ and built by `al_runner.build`, once
per precision of `--precisions` (the same seed, so the same initial weights), and timed with the precisions
interleaved in one process:

- `train plain` / `train module`: one training step (forward, losses, backward, optimiser step) on one fixed
  batch, without (sampler=random) and with (sampler=learning_loss) the loss-prediction module;
- `score`: scoring M unlabeled pool images for learning loss (`loop.score_inputs`: eval mode, inference_mode);
- `eval`: test evaluation (`loop.evaluate`: metric, losses, uncertainty, predicted loss).

Every row: img/s per precision, the bf16/fp32 speed ratio (median of the per-repeat paired ratios) with its
repeat spread, the FLOPs per image (`torch.utils.flop_counter`, as benchmark 1 counts them) and the achieved
GFLOP/s as a fraction of this CPU's fp32 and bf16 peaks (`derive_peaks`). The module, its ranking loss,
uncertainty and embeddings run in fp32 in both precisions (al_runner.learner): only the target model's forward
is autocast.

Inputs: classification models (ResNet-18 at each width, the small CNN) run on the `synthetic` task shaped like
CIFAR-10 (32x32, 10 classes, the preset's normalisation and crop padding); SSDlite320 and SSD300 on a generated
VOC tree (`task=voc_synth`, as `experiment=voc_cpu`, at the model's input size); the hourglass on generated
MPII people (`experiment=mpii_cpu`, at the paper's 256 px for `hourglass`). Only the pixels are not real: the
models, losses and module are those of the runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from al_runner import platform
from al_runner.loop import evaluate, score_inputs
from benchmarks.harness import Results, interleaved, median, median_interval, paired_ratio, paired_spread
from benchmarks.runner_side import BenchTask, build_bench_task, build_side, compose_config, task_overrides

PRECISIONS = ("fp32", "bf16")
# The one value changed from the preset: a step costs the same at any learning rate, and a small one keeps the
# repeated steps on one fixed batch finite (voc_cpu's 1e-2 sends a random-init SSD300 to NaN within a few steps,
# which stops the run; non-finite values would also change the kernels' speed).
BENCH_LR = 1e-5
PATHS = ("train", "score", "eval")
LL_NEEDS = frozenset({"predicted_loss"})


# --- the CPU's theoretical peaks -----------------------------------------------------------------------------
# Instruction-throughput assumptions (per core, per cycle), written out so that a reader can check them:
#
# fp32 = FMA units x fp32 lanes per unit x 2 (an FMA is a multiply and an add):
#   - AVX-512 (avx512f), Intel Xeon Scalable (Skylake-SP .. Granite Rapids) and AMD Zen 5: two 512-bit FMA units,
#     16 fp32 lanes each -> 64 FLOP/cycle. Some Xeon Silver/Bronze/Gold 5xxx parts have one unit (32 FLOP/cycle):
#     the flags cannot tell, so this is an upper bound for them.
#   - AVX-512 on AMD Zen 4 (family 25 with avx512f): 512-bit instructions run on two 256-bit FMA pipes
#     (double-pumped) -> 2 x 8 lanes x 2 = 32 FLOP/cycle.
#   - AVX2 + FMA (Intel Haswell and later without AVX-512, AMD Zen 2 / Zen 3): two 256-bit FMA units -> 32.
#     AMD Zen 1 / Zen+ (family 23, model < 0x30): two 128-bit FMA pipes -> 2 x 4 x 2 = 16.
#   - AVX without FMA (Sandy / Ivy Bridge): one 256-bit multiply + one 256-bit add port -> 8 x 2 = 16.
#   - SSE only: one 128-bit multiply + one add -> 4 x 2 = 8.
# bf16:
#   - AMX (amx_bf16): one TMUL per core; TDPBF16PS multiplies a 16x32 by a 32x16 bf16 tile (16 x 16 x 32 = 8,192
#     FMAs = 16,384 FLOP) and issues once every 16 cycles -> 1,024 FLOP/cycle (Intel: "1,024 BF16 operations per
#     cycle" per core, an operation being a multiply or an add; 2,048 are INT8 operations).
#   - AVX-512 BF16 (avx512_bf16, no AMX): VDPBF16PS computes 2 bf16 products per fp32 lane, i.e. twice the FMAs of
#     VFMADD231PS on the same register width; assumed to issue at the fp32 FMA rate -> 2 x the fp32 peak.
#   - neither: no native bf16 (oneDNN converts and computes in fp32, slower than fp32): no bf16 peak.
AMX_BF16_FLOP_PER_CYCLE = 2 * 16 * 16 * 32 // 16  # TDPBF16PS: 2·M·N·K FLOP per 16 cycles = 1,024


def fp32_flop_per_cycle(
    flags: frozenset[str] | set[str], vendor: str = "", family: int | None = None, model: int | None = None
) -> tuple[int, str]:
    """fp32 FLOP per cycle per core from the CPU's flags (and vendor/family/model where the flags are not enough),
    and the reasoning in words."""
    amd = vendor == "AuthenticAMD"
    if "avx512f" in flags:
        if amd and family == 25:
            units, lanes, why = 2, 8, "AVX-512 on AMD Zen 4: 2 x 256-bit FMA pipes (512-bit ops double-pumped)"
        else:
            units, lanes, why = 2, 16, "AVX-512: 2 x 512-bit FMA units"
    elif "avx" in flags or "avx2" in flags:
        if amd and family == 23 and model is not None and model < 0x30:
            units, lanes, why = 2, 4, "AMD Zen 1: 2 x 128-bit FMA pipes"
        else:
            units, lanes, why = 2, 8, "AVX2: 2 x 256-bit FMA units"
    else:
        units, lanes, why = 1, 4, "SSE: 128-bit"
    if "fma" not in flags:
        units, why = 1, why.split(":")[0] + f": no FMA, 1 multiply + 1 add port of {lanes * 32} bits"
    return units * lanes * 2, f"{why}, {lanes} fp32 lanes each, 2 FLOP per FMA"


def bf16_flop_per_cycle(flags: frozenset[str] | set[str], fp32_per_cycle: int) -> tuple[int | None, str]:
    """bf16 FLOP per cycle per core of the CPU's native bf16 unit (None: no native bf16), and the reasoning."""
    unit = platform.bf16_units(flags)
    if unit == "amx_bf16":
        return AMX_BF16_FLOP_PER_CYCLE, "AMX TMUL: TDPBF16PS, 16x16x32 bf16 FMAs every 16 cycles"
    if unit == "avx512_bf16":
        return 2 * fp32_per_cycle, "AVX-512 BF16: VDPBF16PS, 2 bf16 products per fp32 lane at the FMA rate"
    return None, "no bf16 units (no amx_bf16, no avx512_bf16): bf16 is emulated in fp32"


@dataclass(frozen=True)
class CpuPeaks:
    """Theoretical peaks of `cores` cores at `mhz`: an upper bound (no memory traffic, no licence-clock drop)."""

    cores: int
    mhz: float
    clock_source: str
    bf16_units: str
    fp32_per_cycle: int  # FLOP per cycle per core
    bf16_per_cycle: int | None
    fp32_basis: str
    bf16_basis: str

    @property
    def fp32_gflops(self) -> float:
        return self.cores * self.mhz * 1e-3 * self.fp32_per_cycle

    @property
    def bf16_gflops(self) -> float:
        return math.nan if self.bf16_per_cycle is None else self.cores * self.mhz * 1e-3 * self.bf16_per_cycle

    def peak(self, precision: str) -> float:
        return self.bf16_gflops if precision == "bf16" else self.fp32_gflops


def derive_peaks(
    flags: frozenset[str] | set[str],
    mhz: float,
    cores: int,
    *,
    vendor: str = "",
    family: int | None = None,
    model: int | None = None,
    clock_source: str = "given",
) -> CpuPeaks:
    """fp32 and bf16 peaks (GFLOP/s) = cores x clock x FLOP per cycle per core (see the assumptions above)."""
    fp32, fp32_basis = fp32_flop_per_cycle(flags, vendor, family, model)
    bf16, bf16_basis = bf16_flop_per_cycle(flags, fp32)
    return CpuPeaks(cores, float(mhz), clock_source, platform.bf16_units(flags), fp32, bf16, fp32_basis, bf16_basis)


def parse_cpuinfo(text: str) -> dict:
    """vendor, family, model and the current clock (MHz) of the first processor in /proc/cpuinfo text."""
    fields: dict = {}
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if not key and fields:
            break  # end of the first processor's block
        if key == "vendor_id":
            fields["vendor"] = value
        elif key == "cpu family" and value.isdigit():
            fields["family"] = int(value)
        elif key == "model" and value.isdigit():
            fields["model"] = int(value)
        elif key == "cpu MHz":
            with contextlib.suppress(ValueError):
                fields["mhz"] = float(value)
    return fields


def lscpu_max_mhz(text: str) -> float | None:
    """`CPU max MHz` of `lscpu` output (absent in many VMs)."""
    found = re.search(r"^CPU max MHz:\s*([\d.]+)", text, re.MULTILINE)
    return float(found.group(1)) if found and float(found.group(1)) > 0 else None


def machine_peaks(cores: int | None = None) -> CpuPeaks:
    """This CPU's peaks for `cores` cores (default: torch's thread count, one thread per core). The clock is
    `lscpu`'s CPU max MHz where it reports one, else /proc/cpuinfo's cpu MHz, which is the *current* clock."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    info = parse_cpuinfo(cpuinfo)
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"}
        ).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    mhz = lscpu_max_mhz(lscpu)
    source = "lscpu CPU max MHz"
    if mhz is None:
        mhz, source = info.get("mhz", math.nan), "/proc/cpuinfo cpu MHz (the current clock; lscpu gives no max MHz)"
    return derive_peaks(
        platform.cpu_flags(cpuinfo),
        mhz,
        cores or torch.get_num_threads(),
        vendor=info.get("vendor", ""),
        family=info.get("family"),
        model=info.get("model"),
        clock_source=source,
    )


# --- the models --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """One row group: how to compose its config (family: classification | detection | pose) and its sizes."""

    family: str
    overrides: tuple[str, ...]
    batch: int
    label: str
    score_m: int = 0  # 0: the whole generated pool
    eval_n: int = 0  # 0: the whole generated test split
    quick: tuple[str, ...] = ()  # extra overrides under --quick (smaller inputs)


MODELS = {
    "resnet18-w64": ModelSpec(
        "classification", ("model.net.width=64",), 128, "ResNet-18 (CIFAR stem), full width", 1000, 1000
    ),
    "resnet18-w16": ModelSpec(
        "classification", ("model.net.width=16",), 128, "ResNet-18 (CIFAR stem), width 16", 10_000, 10_000
    ),
    "small_cnn": ModelSpec(
        "classification", ("model=small_cnn", "model.net.width=32"), 128, "small CNN (width 32)", 10_000, 10_000
    ),
    "ssdlite320": ModelSpec(
        "detection",
        ("model=ssdlite320_mobilenet_v3", "task.image_size=320"),
        8,
        "SSDlite320-MobileNetV3 at 320 px",
        quick=("task.image_size=128",),
    ),  # voc_cpu's size
    "ssd300": ModelSpec("detection", ("model=ssd300_vgg16", "task.image_size=300"), 4, "SSD300-VGG16 at 300 px"),
    "hourglass": ModelSpec(
        "pose",
        ("model=hourglass", "task.input_size=256", "task.heatmap_size=64"),
        6,
        "stacked hourglass 2x256 at 256 px (paper)",
    ),
    "hourglass_small": ModelSpec("pose", (), 6, "hourglass 2x32 at 64 px (mpii_cpu)"),
}
DEFAULT_MODELS = "resnet18-w64,resnet18-w16,small_cnn,ssdlite320,ssd300,hourglass"
QUICK_MODELS = "resnet18-w16,small_cnn,ssdlite320,hourglass_small"


@dataclass
class Fixture:
    """Generated data on disk for the detection and pose models (one temporary folder per benchmark run)."""

    root: Path
    detection_images: int
    pose_people: int
    _voc: Path | None = field(default=None, init=False)

    def voc(self) -> Path:
        if self._voc is None:
            from al_runner.tasks.detection.generate import generate_vocdevkit

            # VOC-sized images (375-500 px sides), resized by the task to the model's input size
            self._voc = generate_vocdevkit(
                self.root / "voc", images=self.detection_images, seed=0, size_range=(375, 500)
            )
        return self._voc


def family_overrides(args, spec: ModelSpec, fixture: Fixture, batch: int, score_m: int, eval_n: int) -> list[str]:
    quick = list(spec.quick) if args.quick else []
    if spec.family == "classification":
        return task_overrides(args, False, max(batch, score_m), eval_n) + list(spec.overrides) + quick
    if spec.family == "detection":
        return ["experiment=voc_cpu", f"task.root={fixture.voc()}", *spec.overrides, *quick]
    if spec.family == "pose":
        return [
            "experiment=mpii_cpu",
            f"paths.data={fixture.root / 'pose'}",
            f"task.generate_people={fixture.pose_people}",
            *spec.overrides,
            *quick,
        ]
    raise ValueError(f"unknown model family {spec.family}")


def model_overrides(
    args, spec: ModelSpec, fixture: Fixture, *, with_module: bool, precision: str, sizes: tuple[int, int, int, int]
) -> list[str]:
    """The overrides `al-run` would get for this model, path and precision (`sizes`: `model_sizes`)."""
    batch, eval_batch, score_m, eval_n = sizes
    return family_overrides(args, spec, fixture, batch, score_m, eval_n) + [
        f"device={args.device}",
        f"schedule.batch_size={batch}",
        f"schedule.eval_batch_size={eval_batch}",
        f"sampler={'learning_loss' if with_module else 'random'}",
        f"runtime.amp={'true' if precision == 'bf16' else 'false'}",
        "progress=false",
        f"schedule.optimizer.lr={BENCH_LR}",
    ]


def count_flops(fn) -> float:
    from benchmarks.flops import flop_counter

    counter = flop_counter()
    with counter:
        fn()
    return float(counter.get_total_flops())


def train_step(side, task: BenchTask, batch: int):
    from al_runner.loop import train_one_epoch

    return lambda: train_one_epoch(
        side.learner, task, torch.arange(batch), side.optimizer, batch, torch.Generator(), 0, 0
    )


# --- the benchmark ---------------------------------------------------------------------------------------------
def bench_precision(args, res: Results) -> None:
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise SystemExit(f"--precisions: {', '.join(unknown)} not supported, choose from {', '.join(PRECISIONS)}")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"--models: {', '.join(unknown)} unknown, choose from {', '.join(MODELS)}")
    paths = [p.strip() for p in args.precision_paths.split(",") if p.strip()]
    if set(paths) - set(PATHS):
        raise SystemExit(f"--precision-paths: choose from {', '.join(PATHS)}")
    b = "8 precision"
    peaks = machine_peaks(torch.get_num_threads()) if args.device.type == "cpu" else None
    if peaks is not None:
        res.add(
            b,
            f"fp32 peak, {peaks.cores} core(s) at {peaks.mhz:.0f} MHz",
            peaks.fp32_gflops,
            "GFLOP/s",
            note=f"{peaks.fp32_per_cycle} FLOP/cycle/core: {peaks.fp32_basis}; clock: {peaks.clock_source}",
        )
        res.add(
            b,
            f"bf16 peak ({peaks.bf16_units})",
            peaks.bf16_gflops,
            "GFLOP/s",
            note=(f"{peaks.bf16_per_cycle} FLOP/cycle/core: " if peaks.bf16_per_cycle else "") + peaks.bf16_basis,
        )
        if peaks.bf16_units == "none" and "bf16" in precisions:
            print(
                "  note: this CPU has no bf16 units: the bf16 figures measure oneDNN's emulation, "
                "not what bf16 gives on a CPU with AMX or AVX-512 BF16",
                flush=True,
            )
    with tempfile.TemporaryDirectory(prefix="al_runner_bench_precision_") as tmp:
        fixture = Fixture(Path(tmp), args.precision_detection_images, args.precision_pose_people)
        for name in names:
            bench_model(args, res, b, name, MODELS[name], fixture, precisions, paths, peaks)


def model_sizes(args, spec: ModelSpec) -> tuple[int, int, int, int]:
    """(train batch, eval batch, M scored, test images; 0 = the whole generated split) for a model; --quick
    shrinks them."""
    if args.quick:
        return min(spec.batch, 8), 16, 32, 16
    return spec.batch, args.eval_batch, spec.score_m, spec.eval_n


def bench_model(
    args,
    res: Results,
    b: str,
    name: str,
    spec: ModelSpec,
    fixture: Fixture,
    precisions: list[str],
    paths: list[str],
    peaks: CpuPeaks | None,
) -> None:
    device = args.device
    sizes = model_sizes(args, spec)
    batch, eval_batch, score_m, eval_n = sizes
    first = compose_config(model_overrides(args, spec, fixture, with_module=True, precision=precisions[0], sizes=sizes))
    base = build_bench_task(first)
    score_m = min(score_m or base.pool_size, base.pool_size)
    eval_n = min(eval_n or base.test_size, base.test_size)
    if base.pool_size < batch:
        raise SystemExit(f"{name}: the generated pool has {base.pool_size} items, fewer than the batch {batch}")
    task = base.variant(fixed_batch=base.first_batch(batch, torch.Generator().manual_seed(1)), test_limit=eval_n)
    sides = {}
    for precision in precisions:
        for with_module in (False, True):
            cfg = compose_config(
                model_overrides(args, spec, fixture, with_module=with_module, precision=precision, sizes=sizes)
            )
            sides[(precision, with_module)] = build_side(cfg, task)
    idx = torch.randperm(base.pool_size, generator=torch.Generator().manual_seed(0))[:score_m]
    reference = sides[(precisions[0], True)]
    flops = {
        "train plain": count_flops(train_step(sides[(precisions[0], False)], task, batch)) / batch,
        "train module": count_flops(train_step(reference, task, batch)) / batch,
    }
    one = idx[:eval_batch]
    flops["score"] = count_flops(lambda: score_inputs(reference.learner, task, one, eval_batch, LL_NEEDS)) / len(one)
    n_first = min(eval_batch, eval_n)  # the first test batch
    flops["eval"] = (
        count_flops(lambda: evaluate(reference.learner, task.variant(test_limit=n_first), eval_batch)) / n_first
    )
    print(
        f"\n[8] {spec.label} ({name}), {device.type}, {torch.get_num_threads()} thread(s): train batch {batch}, "
        f"score M={score_m}, eval {eval_n} test items at batch {eval_batch}; precisions {', '.join(precisions)} "
        f"interleaved",
        flush=True,
    )
    groups: dict[str, tuple[dict, int, int, int]] = {}  # path -> (cases, images per call, warm-up, repeats)
    if "train" in paths:
        cases = {
            f"train {'module' if m else 'plain'} {p}": train_step(sides[(p, m)], task, batch)
            for p in precisions
            for m in (False, True)
        }
        groups["train"] = (cases, batch, args.precision_warmup, args.precision_repeats)
    if "score" in paths:
        cases = {
            f"score {p}": (lambda s=sides[(p, True)]: score_inputs(s.learner, task, idx, eval_batch, LL_NEEDS))
            for p in precisions
        }
        groups["score"] = (cases, score_m, 1, args.precision_score_repeats)
    if "eval" in paths:
        cases = {f"eval {p}": (lambda s=sides[(p, True)]: evaluate(s.learner, task, eval_batch)) for p in precisions}
        groups["eval"] = (cases, eval_n, 1, args.precision_score_repeats)
    for path, (cases, images, warmup, repeats) in groups.items():
        times = interleaved(cases, repeats, warmup, device)
        kinds = ["train plain", "train module"] if path == "train" else [path]
        for kind in kinds:
            report_kind(res, b, name, kind, times, images, flops[kind], precisions, peaks)
        if path == "train":
            for p in precisions:
                module, plain = times[f"train module {p}"], times[f"train plain {p}"]
                ratio, (lo, hi) = paired_ratio(module, plain), paired_spread(module, plain)
                res.add(
                    b,
                    f"{name} loss-module step time / plain ({p})",
                    ratio,
                    "x",
                    "<= 1.03",
                    f"overhead {100 * (ratio - 1):+.1f} % (repeats {100 * (lo - 1):+.1f} … {100 * (hi - 1):+.1f} %)",
                    met=ratio <= 1.03,
                )


def report_kind(
    res: Results,
    b: str,
    name: str,
    kind: str,
    times: dict,
    images: int,
    flop_per_image: float,
    precisions: list[str],
    peaks: CpuPeaks | None,
) -> None:
    gflop = flop_per_image / 1e9
    res.add(b, f"{name} {kind}: FLOPs per image", gflop, "GFLOP")
    for p in precisions:
        ips = images / median(times[f"{kind} {p}"])
        res.add(b, f"{name} {kind} {p}", ips, "img/s")
        achieved = gflop * ips
        note = ""
        if peaks is not None:
            parts = [f"{100 * achieved / peaks.fp32_gflops:.1f} % of the fp32 peak"]
            parts.append(
                f"{100 * achieved / peaks.bf16_gflops:.1f} % of the bf16 peak"
                if peaks.bf16_per_cycle
                else "no bf16 peak (no bf16 units)"
            )
            note = ", ".join(parts)
        res.add(b, f"{name} {kind} {p}: achieved", achieved, "GFLOP/s", note=note)
    if "fp32" in precisions and "bf16" in precisions:
        fp32, bf16 = times[f"{kind} fp32"], times[f"{kind} bf16"]
        ratio = paired_ratio(fp32, bf16)  # fp32 time / bf16 time = bf16 speed / fp32 speed
        lo, hi = paired_spread(fp32, bf16)
        note = f"repeats {lo:.2f} … {hi:.2f}"
        if len(fp32) >= 6:
            ci = median_interval([a / c for a, c in zip(fp32, bf16)])
            note += f", 95 % CI of the median {ci[0]:.2f} … {ci[1]:.2f}"
        res.add(b, f"{name} {kind}: bf16 / fp32 speed", ratio, "x", note=note)

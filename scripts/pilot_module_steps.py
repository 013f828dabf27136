#!/usr/bin/env python
"""Pilot (issue 11, step 1): how many optimiser steps does the loss-prediction module need to rank well?

For each (width, epochs, seed) it trains ResNet-18 (CIFAR stem) on 1,000 random real CIFAR-10 pool images
twice from the same initial weights, with the same batch order and augmentation:
  - arm `with`:    target + the paper's loss-prediction module (margin ranking loss, λ = 1, ξ = 1,
                   detach at 0.6 of the epochs, LR × 0.1 at 0.8 of the epochs: `sampler=learning_loss`);
  - arm `without`: the plain target model (`sampler=random`: no module).
Both are evaluated on a held-out part of the TRAINING pool (default 5,000 other train-split images, disjoint
from the 1,000, the same for both arms and all widths/epochs of a seed). The test split is never used.

Everything is built by the runner's own code from the real composed config
(`experiment=reduced_cifar10_jpg model.net.width=W schedule.epochs=E seed=S sampler=...`):
`al_runner.build.make_runtime/build_method/build_learner/make_scheduler_factory`, then
`al_runner.loop.train_cycle` (one cycle, the runner's training generator stream) and `al_runner.loop.evaluate`
on a `ClassificationTask` whose "train" split is the 1,000 labeled images and whose "test" split is the
held-out images (same augmentation config as the preset).

Each finished row is appended to the CSV at once (atomic rewrite); a restart skips rows already there.

  OMP_NUM_THREADS=1 python scripts/pilot_module_steps.py --threads 1 --widths 16 32 --epochs 30 60 100 200 --seeds 0 1 2
  python scripts/pilot_module_steps.py --summarise        # pilot.md + pilot.png from the CSV only
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's al_runner, not whichever copy is installed

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from al_runner.build import apply_threads, build_learner, build_method, make_runtime, make_scheduler_factory  # noqa: E402
from al_runner.cycle import TRAIN_STREAM  # noqa: E402
from al_runner.errors import ALRunnerError, ConfigError  # noqa: E402
from al_runner.learning_loss import ranking_accuracy  # noqa: E402
from al_runner.loop import evaluate, train_cycle  # noqa: E402
from al_runner.tasks.classification import ClassificationTask, ImageSplits  # noqa: E402

CONF_DIR = REPO / "conf"
DEFAULT_OUT = REPO / "outputs" / "reference" / "pilot" / "pilot.csv"
EXPERIMENT = "reduced_cifar10_jpg"
# arm -> the sampler whose config gives it: learning_loss attaches the module (margin ranking objective),
# random trains the plain target model. Only the training differs; nothing is selected in the pilot.
ARMS = {"with": "learning_loss", "without": "random"}
# Offset of the generator that draws the 1,000 training and the held-out pool images from the seed.
SPLIT_STREAM = 3_000_017

COLUMNS = [
    "width",
    "epochs",
    "seed",
    "arm",
    "train_size",
    "heldout_size",
    "batch_size",
    "batches_per_epoch",
    "steps",
    "module_steps",
    "detach_epoch",
    "lr_step_epoch",
    "heldout_accuracy",
    "heldout_ranking_accuracy",
    "heldout_entropy_ranking_accuracy",
    "train_median_loss",
    "train_accuracy",
    "train_ranking_accuracy",
    "last_epoch_loss",
    "seconds",
    "threads",
    "load_1min",
]
KEY = ("width", "epochs", "seed", "arm")

log = logging.getLogger("pilot")


# --- config and data -------------------------------------------------------------------------------
def compose_pilot_config(
    width: int,
    epochs: int,
    seed: int,
    arm: str,
    data_root: str | None = None,
    threads: int | None = None,
    overrides: tuple[str, ...] = (),
) -> DictConfig:
    """The real config, composed as `al-run experiment=reduced_cifar10_jpg ...` would compose it."""
    if arm not in ARMS:
        raise ConfigError(f"arm {arm} not supported, choose from {', '.join(ARMS)}")
    args = [
        f"experiment={EXPERIMENT}",
        f"model.net.width={width}",
        f"schedule.epochs={epochs}",
        f"seed={seed}",
        f"sampler={ARMS[arm]}",
        "progress=false",
    ]
    if data_root is not None:
        args.append(f"task.root={Path(data_root).expanduser().resolve()}")
    if threads is not None:
        args.append(f"runtime.threads={threads}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=args + list(overrides))


def load_pool(cfg: DictConfig) -> ImageSplits:
    """The preset's data (its configured loader and decode cache). Only the train split is used afterwards."""
    return instantiate(cfg.task.build.data)


def split_pool(pool_size: int, seed: int, train_size: int, heldout_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint random (training, held-out) indices into the TRAIN split, from a generator seeded by the seed."""
    if train_size < 2 or heldout_size < 2 or train_size + heldout_size > pool_size:
        raise ConfigError(
            f"--train-size {train_size} + --heldout-size {heldout_size} must be >= 2 each and fit the "
            f"pool of {pool_size} train-split images"
        )
    order = torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed + SPLIT_STREAM))
    return order[:train_size], order[train_size : train_size + heldout_size]


def pilot_tasks(cfg: DictConfig, data: ImageSplits, train_idx: torch.Tensor, heldout_idx: torch.Tensor):
    """Two ClassificationTasks with the preset's augmentation config: (train = the labeled images, test = the
    held-out pool images) for training and held-out evaluation, and (test = the labeled images themselves) for
    the eval-mode, un-augmented training-set losses."""
    x, y = data.train_images, data.train_labels
    xt, yt, xh, yh = x[train_idx], y[train_idx], x[heldout_idx], y[heldout_idx]
    augmentation = instantiate(cfg.task.build.augmentation)
    name = str(cfg.task.name)
    heldout = ClassificationTask(name, ImageSplits(xt, yt, xh, yh, data.classes), augmentation)
    on_train = ClassificationTask(name, ImageSplits(xt, yt, xt, yt, data.classes), augmentation)
    return heldout, on_train


# --- one row --------------------------------------------------------------------------------------
@dataclass
class PilotSetting:
    width: int
    epochs: int
    seed: int
    arm: str

    def key(self) -> tuple[str, ...]:
        return (str(self.width), str(self.epochs), str(self.seed), self.arm)


def run_setting(
    setting: PilotSetting,
    data: ImageSplits,
    train_size: int,
    heldout_size: int,
    data_root: str | None = None,
    threads: int | None = None,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Train one arm for one (width, epochs, seed) through the runner's builders and loop; one CSV row."""
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    cfg = compose_pilot_config(setting.width, setting.epochs, setting.seed, setting.arm, data_root, threads, overrides)
    apply_threads(cfg)
    runtime = make_runtime(cfg)
    train_idx, heldout_idx = split_pool(data.train_images.shape[0], setting.seed, train_size, heldout_size)
    task, on_train = (t.to(runtime.device) for t in pilot_tasks(cfg, data, train_idx, heldout_idx))
    learning_loss = build_method(cfg)
    learner = build_learner(cfg, task, runtime, learning_loss)
    s = cfg.schedule
    labeled = torch.arange(train_size)
    last_loss = train_cycle(
        learner,
        task,
        labeled,
        epochs=int(s.epochs),
        batch_size=int(s.batch_size),
        make_optimizer=instantiate(s.optimizer),
        make_scheduler=make_scheduler_factory(s),
        generator=torch.Generator().manual_seed(int(cfg.seed) + TRAIN_STREAM),
        cycle=0,
        progress=False,
    )
    heldout = evaluate(learner, task, int(s.eval_batch_size))
    train = evaluate(learner, on_train, int(s.eval_batch_size))
    batches = math.ceil(train_size / int(s.batch_size))
    steps = int(s.epochs) * batches
    return {
        "width": setting.width,
        "epochs": setting.epochs,
        "seed": setting.seed,
        "arm": setting.arm,
        "train_size": train_size,
        "heldout_size": heldout_size,
        "batch_size": int(s.batch_size),
        "batches_per_epoch": batches,
        "steps": steps,
        "module_steps": steps if learning_loss is not None else 0,
        "detach_epoch": learning_loss.detach_epoch if learning_loss is not None else "",
        "lr_step_epoch": " ".join(str(round(f * int(s.epochs))) for f in s.lr_milestones),
        "heldout_accuracy": round(heldout.metric, 6),
        "heldout_ranking_accuracy": _rounded(heldout.ranking_accuracy),
        # how well the softmax entropy alone orders the held-out losses: the bar the module should clear
        "heldout_entropy_ranking_accuracy": _rounded(ranking_accuracy(heldout.uncertainty, heldout.real_loss)),
        "train_median_loss": float(f"{train.real_loss.median().item():.6g}"),
        "train_accuracy": round(train.metric, 6),
        "train_ranking_accuracy": _rounded(train.ranking_accuracy),
        "last_epoch_loss": float(f"{last_loss:.6g}"),
        "seconds": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
        "load_1min": round(load, 2),
    }


def _rounded(value: float | None) -> float | str:
    return "" if value is None or math.isnan(value) else round(value, 6)


# --- the CSV ----------------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ConfigError(f"{path} has columns {reader.fieldnames}, expected {COLUMNS}; use another --out")
        return list(reader)


def write_rows(path: Path, rows: list[dict]) -> None:
    """Atomic rewrite: a crash leaves the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def check_same_protocol(rows: list[dict], train_size: int, heldout_size: int, path: Path) -> None:
    for row in rows:
        if (int(row["train_size"]), int(row["heldout_size"])) != (train_size, heldout_size):
            raise ConfigError(
                f"{path} holds rows with train_size {row['train_size']}, heldout_size "
                f"{row['heldout_size']}; this run asks for {train_size}, {heldout_size}. Use another --out"
            )


def planned_settings(widths, epochs, seeds) -> list[PilotSetting]:
    """Width-major (cheap widths first), then epochs, seeds, and both arms of a seed back to back."""
    return [PilotSetting(w, e, s, arm) for w in widths for e in epochs for s in seeds for arm in ARMS]


def run_pilot(
    out: Path,
    widths,
    epochs,
    seeds,
    train_size: int = 1000,
    heldout_size: int = 5000,
    data_root: str | None = None,
    threads: int | None = None,
    overrides: tuple[str, ...] = (),
) -> int:
    """Train every planned row not yet in `out`; returns how many rows were trained now."""
    rows = read_rows(out)
    check_same_protocol(rows, train_size, heldout_size, out)
    done = {tuple(row[k] for k in KEY) for row in rows}
    todo = [s for s in planned_settings(widths, epochs, seeds) if s.key() not in done]
    print(f"pilot: {len(todo)} rows to train, {len(done)} already in {out}", flush=True)
    if not todo:
        return 0
    cfg = compose_pilot_config(todo[0].width, todo[0].epochs, todo[0].seed, todo[0].arm, data_root, threads, overrides)
    data = load_pool(cfg)
    for n, setting in enumerate(todo, 1):
        print(
            f"[{n}/{len(todo)}] width {setting.width} epochs {setting.epochs} seed {setting.seed} "
            f"{setting.arm} module: training (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
        row = run_setting(setting, data, train_size, heldout_size, data_root, threads, overrides)
        rows.append(row)
        write_rows(out, rows)
        rank = "" if row["heldout_ranking_accuracy"] == "" else f" ranking acc {row['heldout_ranking_accuracy']:.4f}"
        print(
            f"[{n}/{len(todo)}] done: held-out acc {row['heldout_accuracy']:.4f}{rank} median train loss "
            f"{row['train_median_loss']:.4g} steps {row['steps']} | {row['seconds']:.0f} s",
            flush=True,
        )
    return len(todo)


# --- summary ----------------------------------------------------------------------------------------
def _mean_std(values, fmt: str = ".3f") -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:{fmt}}"
    return f"{values.mean():{fmt}} ± {values.std(ddof=1):{fmt}}"


def summary_table(rows):
    """Per width × epochs: mean ± sample std over the seeds present (n seeds per arm)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in ("width", "epochs", "seed", "module_steps", "steps"):
        df[col] = df[col].astype(int)
    for col in (
        "heldout_accuracy",
        "heldout_ranking_accuracy",
        "heldout_entropy_ranking_accuracy",
        "train_median_loss",
        "seconds",
    ):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    with_, without = df[df.arm == "with"], df[df.arm == "without"]
    paired = with_.merge(without, on=["width", "epochs", "seed"], suffixes=("_w", "_wo"))
    paired["gain"] = paired.heldout_accuracy_w - paired.heldout_accuracy_wo
    out = []
    for (width, epochs), _ in df.groupby(["width", "epochs"]):
        w = with_[(with_.width == width) & (with_.epochs == epochs)]
        wo = without[(without.width == width) & (without.epochs == epochs)]
        p = paired[(paired.width == width) & (paired.epochs == epochs)]
        out.append(
            {
                "width": width,
                "epochs": epochs,
                "module steps": int(w.module_steps.iloc[0]) if len(w) else "–",
                "n seeds (with / without)": f"{len(w)} / {len(wo)}",
                "ranking acc (held-out)": _mean_std(w.heldout_ranking_accuracy),
                "entropy ranking acc (with)": _mean_std(w.heldout_entropy_ranking_accuracy),
                "accuracy with module": _mean_std(w.heldout_accuracy),
                "accuracy without": _mean_std(wo.heldout_accuracy),
                "with − without (paired)": _mean_std(p.gain),
                "median train loss with": _mean_std(w.train_median_loss, ".3g"),
                "median train loss without": _mean_std(wo.train_median_loss, ".3g"),
                "seconds with / without": f"{w.seconds.mean():.0f} / {wo.seconds.mean():.0f}"
                if len(w) and len(wo)
                else "–",
            }
        )
    return df, pd.DataFrame(out)


def _markdown(table) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def summarise(csv_path: Path) -> tuple[Path, Path]:
    """pilot.md and pilot.png beside the CSV, from the CSV alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(csv_path)
    if not rows:
        raise ConfigError(f"no pilot rows in {csv_path}: run the pilot first")
    df, table = summary_table(rows)
    train_size, heldout_size = rows[0]["train_size"], rows[0]["heldout_size"]
    md = csv_path.with_suffix(".md")
    md.write_text(
        f"# Pilot: what the loss-prediction module needs (issue 11, step 1)\n\n"
        f"ResNet-18 (CIFAR stem) trained on {train_size} random CIFAR-10 train-split images per seed, with the paper's "
        f"loss-prediction module (margin ranking loss, λ = 1, ξ = 1, detach at 0.6 and LR × 0.1 at 0.8 of the epochs) "
        f"and without it (same initial weights, batch order and augmentation). Evaluated on {heldout_size} other "
        f"train-split images (held-out part of the pool; never the test split). Mean ± sample std over the seeds "
        f"present; n seeds per arm. Ranking accuracy: fraction of held-out pairs ordered like their real losses "
        f"(paper Fig. 5); entropy ranking acc: the same for the softmax entropy of the with-module model. "
        f"Median train loss: eval mode, no augmentation, over the training images at the end.\n\n"
        f"Made by `python scripts/pilot_module_steps.py --summarise --out {_display(csv_path)}` from "
        f"`{csv_path.name}` ({len(rows)} rows).\n\n{_markdown(table)}\n"
    )
    png = csv_path.with_suffix(".png")
    fig, (ax_rank, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (width, dw) in enumerate(df.groupby("width")):
        color = f"C{i}"
        for arm, ax, col, style, label in (
            ("with", ax_rank, "heldout_ranking_accuracy", "-o", f"module, width {width}"),
            ("with", ax_rank, "heldout_entropy_ranking_accuracy", ":x", f"softmax entropy, width {width}"),
            ("with", ax_acc, "heldout_accuracy", "-o", f"with module, width {width}"),
            ("without", ax_acc, "heldout_accuracy", "--s", f"without module, width {width}"),
        ):
            g = dw[dw.arm == arm].groupby("epochs")[col]
            mean, std = g.mean(), g.std(ddof=1).fillna(0)
            if not mean.dropna().empty:
                ax.errorbar(mean.index, mean.values, yerr=std.values, fmt=style, color=color, capsize=3, label=label)
    batches = int(rows[0]["batches_per_epoch"])
    ax_rank.set(
        title="held-out ranking accuracy of the loss order",
        ylabel="ranking accuracy",
        xlabel=f"epochs (module steps = {batches} × epochs; detach at 0.6, LR step at 0.8)",
    )
    ax_acc.set(title="held-out accuracy", xlabel="epochs", ylabel="accuracy")
    for ax in (ax_rank, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Pilot on {train_size} CIFAR-10 images, mean ± std over seeds ({_display(csv_path)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return md, png


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# --- CLI --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 60, 100, 200])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.threads); default: all cores")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the CSV (pilot.md/.png are written beside it)")
    p.add_argument("--data", default=None, help="CIFAR-10 ImageFolder root (default: the preset's task.root)")
    p.add_argument("--train-size", type=int, default=1000, help="labeled training images per seed")
    p.add_argument("--heldout-size", type=int, default=5000, help="held-out train-split images per seed")
    p.add_argument("--summarise", action="store_true", help="only write pilot.md and pilot.png from the CSV")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("al_runner.loop").setLevel(logging.DEBUG)  # epoch losses every 10 % of a row's epochs
    try:
        if args.summarise:
            md, png = summarise(args.out)
            print(f"wrote {md} and {png}")
            return 0
        run_pilot(
            args.out, args.widths, args.epochs, args.seeds, args.train_size, args.heldout_size, args.data, args.threads
        )
    except ALRunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

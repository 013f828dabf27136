"""The runner's side of every benchmark, built from the real config through `al_runner.build`, as `al-run` does.

Nothing about the model is restated here: taps, embedding, loss-module numbers, normalisation
statistics, channels_last and AMP all come from `conf/` (experiment=reduced_cifar10_jpg plus the
benchmark's overrides) and the same builders the runner uses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from al_runner.build import build_learner, build_method, build_task, make_runtime
from al_runner.learner import Learner
from al_runner.runtime import Runtime
from al_runner.tasks.base import Metric, Task
from benchmarks.harness import REPO, sync

CONF_DIR = REPO / "conf"
PRESET = "experiment=reduced_cifar10_jpg"  # the CIFAR-10 JPEG preset: ResNet-18 (CIFAR stem), CIFAR statistics


def compose_config(overrides: list[str]) -> DictConfig:
    """conf/config.yaml composed with `overrides`, as `al-run <overrides>` would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def task_overrides(args, real_data: bool, n_train: int = 0, n_test: int = 0) -> list[str]:
    """The preset's task on the JPEG tree, or (bench 1, tests) a generated stand-in of the same shape.

    The stand-in is the `synthetic` task at 32x32, 10 classes and the preset's crop padding, so the
    model and loss are exactly those of the real run; only the pixels differ.
    """
    if real_data and not args.synthetic:
        return [PRESET, f"task.root={args.data}", f"paths.cache={args.cache}"]
    if real_data:
        n_train, n_test = args.synthetic
    return [
        PRESET,
        "task=synthetic",
        "task.build.data.size=32",
        "task.build.data.num_classes=10",
        "task.build.augmentation.padding=4",
        f"task.build.data.n_train={max(n_train, 2)}",
        f"task.build.data.n_test={max(n_test, 2)}",
    ]


def side_overrides(
    args,
    width: int,
    *,
    loss_module: bool = True,
    channels_last: bool | None = None,
    amp: bool | None = None,
    compile: bool = False,
    module_kind: str | None = None,
    cuda_graph: bool = False,
) -> list[str]:
    """Model width, device, batch sizes, sampler (learning loss = with the module, random = plain model), runtime
    (module_kind: runtime.loss_module; cuda_graph: runtime.cuda_graph)."""
    out = [
        f"model.net.width={width}",
        f"device={args.device}",
        f"schedule.batch_size={args.batch}",
        f"schedule.eval_batch_size={args.eval_batch}",
        f"sampler={'learning_loss' if loss_module else 'random'}",
    ]
    if channels_last is not None:
        out.append(f"runtime.channels_last={str(channels_last).lower()}")
    if amp is not None:
        out.append(f"runtime.amp={str(amp).lower()}")
    if compile:
        out.append("runtime.compile=true")
    if module_kind is not None:
        out.append(f"runtime.loss_module={module_kind}")
    if cuda_graph:
        out.append("runtime.cuda_graph=true")
    return out


@dataclass
class Side:
    """One configured learner with its optimizer, as the runner builds them for a cycle."""

    cfg: DictConfig
    runtime: Runtime
    learner: Learner
    optimizer: torch.optim.Optimizer


def build_side(cfg: DictConfig, task: Task) -> Side:
    """Learner (same seed, same initial weights) and the schedule's optimizer, through al_runner.build."""
    runtime = make_runtime(cfg)
    learner = build_learner(cfg, task, runtime, build_method(cfg))
    optimizer = instantiate(cfg.schedule.optimizer)(learner.parameters())
    return Side(cfg, runtime, learner, optimizer)


def build_bench_task(cfg: DictConfig) -> "BenchTask":
    return BenchTask(build_task(cfg, make_runtime(cfg)))


def default_channels_last(args) -> bool:
    """runtime.channels_last of the composed config on this device, as make_runtime resolves it."""
    return make_runtime(compose_config(side_overrides(args, 1))).channels_last


def formats(args) -> list[tuple[str, bool]]:
    """(label, channels_last) pairs; the runner's default for the device comes first."""
    default_cl = default_channels_last(args)
    both = [("NCHW", False), ("channels_last", True)]
    return sorted(both, key=lambda f: f[1] != default_cl)


def default_format(args) -> str:
    return "channels_last" if default_channels_last(args) else "NCHW"


class BenchTask(Task):
    """A built task with its batch source adjusted for a benchmark; losses, metric, uncertainty are the task's.

    - `fixed_batch`: `labeled_batches` yields this one (inputs, targets) batch: a training step without data cost;
    - `test_limit`: `test_batches` stops after this many test points;
    - `data_seconds`: time spent producing training batches (indexing + augmentation), when `timed`.
    """

    def __init__(
        self,
        task: Task,
        fixed_batch: tuple[Any, Any] | None = None,
        test_limit: int | None = None,
        timed: bool = False,
        fixed_repeats: int = 1,
    ):
        self.task, self.fixed_batch, self.test_limit, self.timed = task, fixed_batch, test_limit, timed
        self.fixed_repeats = fixed_repeats  # steps per epoch on the fixed batch
        self.name, self.metric_name, self.uncertainty_name = task.name, task.metric_name, task.uncertainty_name
        self.data_seconds = 0.0

    def variant(self, **changes) -> "BenchTask":
        kwargs = {
            "fixed_batch": self.fixed_batch,
            "test_limit": self.test_limit,
            "timed": self.timed,
            "fixed_repeats": self.fixed_repeats,
            **changes,
        }
        return BenchTask(self.task, **kwargs)

    @property
    def device(self) -> torch.device:
        return getattr(self.task, "device", torch.device("cpu"))

    @property
    def pool_size(self) -> int:
        return self.task.pool_size

    @property
    def test_size(self) -> int:
        return self.task.test_size if self.test_limit is None else min(self.test_limit, self.task.test_size)

    def to(self, device: torch.device) -> "BenchTask":
        self.task = self.task.to(device)
        return self

    def first_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Any, Any]:
        """One augmented training batch of the task (for a fixed-batch variant)."""
        inputs, targets, _ = next(iter(self.task.labeled_batches(torch.arange(batch_size), batch_size, generator)))
        return inputs, targets

    def labeled_batches(self, indices, batch_size, generator, augment=True) -> Iterator:
        if self.fixed_batch is not None:
            inputs, targets = self.fixed_batch
            for _ in range(self.fixed_repeats):
                yield inputs, targets, torch.arange(len(targets))
            return
        batches = iter(self.task.labeled_batches(indices, batch_size, generator, augment))
        while True:
            t0 = time.perf_counter()
            try:
                item = next(batches)
            except StopIteration:
                return
            if self.timed:
                sync(self.device)
                self.data_seconds += time.perf_counter() - t0
            yield item

    def input_batches(self, indices, batch_size) -> Iterator:
        return self.task.input_batches(indices, batch_size)

    def test_batches(self, batch_size) -> Iterator:
        left = self.test_size
        for inputs, targets, idx in self.task.test_batches(batch_size):
            if left <= 0:
                return
            if len(idx) > left:
                inputs, targets, idx = inputs[:left], targets[:left], idx[:left]
            left -= len(idx)
            yield inputs, targets, idx

    def per_sample_loss(self, outputs, targets) -> torch.Tensor:
        return self.task.per_sample_loss(outputs, targets)

    def training_losses(self, outputs, targets):
        return self.task.training_losses(outputs, targets)

    def uncertainty(self, outputs) -> torch.Tensor:
        return self.task.uncertainty(outputs)

    def new_metric(self) -> Metric:
        return self.task.new_metric()

    def model_kwargs(self) -> dict:
        return self.task.model_kwargs()

    def fingerprint(self) -> dict[str, str]:
        return self.task.fingerprint()

    def example_inputs(self, n: int = 2):
        return self.task.example_inputs(n)

    # The classification task's decoded uint8 pool, for the reference pipeline (it reads the same pixels).
    def pool_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.task.data
        idx = indices.to(data.train_images.device)
        return data.train_images[idx].cpu(), data.train_labels[idx].cpu()

    def test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.task.data
        return data.test_images[: self.test_size].cpu(), data.test_labels[: self.test_size].cpu()

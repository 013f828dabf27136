"""Building one run from the composed config: runtime, task, sampler, learning loss, learner, optimizer.

Everything is refused here, before any training, when the config cannot work.
"""

from __future__ import annotations

import functools
import logging

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig

from al_runner.errors import ALRunnerError, ConfigError
from al_runner.learner import Learner
from al_runner.learning_loss import LearningLoss, build_learning_loss, fraction_to_epoch
from al_runner.loop import batch_is_skipped
from al_runner.runtime import Runtime
from al_runner.samplers import Sampler
from al_runner.samplers.needs import NEEDS
from al_runner.tasks.base import Task

log = logging.getLogger(__name__)


def instantiate(node, *args, **kwargs):
    """hydra.utils.instantiate, but our own errors (missing data, bad values) come out as themselves, not
    wrapped in Hydra's InstantiationException, so the CLI prints them as one clear line."""
    try:
        return hydra_instantiate(node, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, ALRunnerError):
            raise cause from None
        raise


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name} not supported, choose from auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=auto or device=cpu")
    return device


def _auto_flag(value, device: torch.device, on_cpu=lambda: False) -> bool:
    """true / false as given; auto (or null) = on for CUDA, and on a CPU where `on_cpu()` says so."""
    if value not in (None, "auto"):
        return bool(value)
    return device.type == "cuda" or (device.type == "cpu" and on_cpu())


# The CPU units with which runtime.amp=auto may mean bf16 (for the models in runtime.amp_cpu_models): AMX, where the
# speed and the parity were measured (docs/benchmarks.md "fp32 vs bf16 on CPU"). avx512_bf16 alone was not measured.
AUTO_BF16_UNITS = ("amx_bf16",)


def resolve_amp(value, device: torch.device, model: str | None = None, cpu_models=()) -> bool:
    """runtime.amp: true / false as given; auto = bf16 autocast on CUDA, and on a CPU with AMX for the models listed
    in runtime.amp_cpu_models (measured to keep their numbers and train faster there); fp32 elsewhere."""
    from al_runner import platform

    return _auto_flag(
        value, device, on_cpu=lambda: model in set(cpu_models or ()) and platform.bf16_units() in AUTO_BF16_UNITS
    )


def make_runtime(cfg: DictConfig) -> Runtime:
    device = resolve_device(str(cfg.device))
    return Runtime(
        device=device,
        amp=resolve_amp(
            cfg.runtime.amp, device, cfg.get("model", {}).get("name"), cfg.runtime.get("amp_cpu_models") or ()
        ),
        channels_last=_auto_flag(cfg.runtime.channels_last, device),
        compile=bool(cfg.runtime.get("compile", False)),
        loss_module=str(cfg.runtime.get("loss_module", "eager")),
        cuda_graph=bool(cfg.runtime.get("cuda_graph", False)),
    )


# torch's own CPU thread count in this process, read before any run sets it: what `runtime.threads=null` means
# for a single run (a parallel launcher's jobs get their share instead: `al_runner.identity.launcher_threads`).
DEFAULT_THREADS = torch.get_num_threads()


def resolve_threads(cfg: DictConfig) -> int:
    """The CPU thread count a run uses: `runtime.threads`, or torch's default when null.

    On CPU the thread count changes the numbers (reduction order), so it is part of the run's identity there.
    """
    threads = cfg.runtime.get("threads")
    if threads is None:
        return DEFAULT_THREADS
    if int(threads) < 1:
        raise ConfigError(f"runtime.threads must be >= 1 or null (all cores), got {threads}")
    return int(threads)


def apply_threads(cfg: DictConfig) -> None:
    """torch's CPU threads, always set explicitly, so that the count a run records is the count it used
    (a job never inherits what an earlier job in the same process set)."""
    torch.set_num_threads(resolve_threads(cfg))


def pool_count(schedule: DictConfig, key: str, pool_size: int) -> int:
    """`schedule.initial_size` / `query_size` as a number of points: a count, or a fraction of the pool in (0, 1)
    (0.1 = 10 % of the pool, rounded down, at least 1), so that one schedule fits pools of any size."""
    value = schedule[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"schedule.{key}={value} is not valid: schedule.{key} must be an integer count, or a "
            f"fraction of the pool in (0, 1)"
        )
    if isinstance(value, float) and not value.is_integer():
        if not 0 < value < 1:
            raise ConfigError(
                f"schedule.{key}={value} is not valid: a fraction of the pool must lie in (0, 1), "
                f"a count must be an integer"
            )
        return max(1, int(value * pool_size + 1e-9))  # 1e-9: 0.29 * 100 is 28.999999999999996 in binary
    return int(value)


def schedule_sizes(cfg: DictConfig, pool_size: int) -> tuple[int, int]:
    """(initial_size, query_size) in points for a pool of `pool_size` (`pool_count`)."""
    return (pool_count(cfg.schedule, "initial_size", pool_size), pool_count(cfg.schedule, "query_size", pool_size))


def _fitting_sizes(pool_size: int, initial: int, cycles: int) -> str:
    """Overrides that make `cycles` cycles fit a pool of `pool_size` points."""
    if cycles > 1 and initial < pool_size and (pool_size - initial) // (cycles - 1) >= 1:
        return f"schedule.query_size={(pool_size - initial) // (cycles - 1)}"
    each = max(1, pool_size // cycles)
    return f"schedule.initial_size={each} schedule.query_size={each}"


def validate_schedule(cfg: DictConfig, pool_size: int) -> None:
    """Refuse impossible schedules before any data is touched by training."""
    s = cfg.schedule
    # epochs=0 would train nothing and still report a metric and a ranking accuracy: refused like the others
    for key in ("cycles", "epochs", "batch_size", "eval_batch_size"):
        if int(s[key]) < 1:
            raise ConfigError(f"schedule.{key} must be >= 1, got {s[key]}")
    initial, query = schedule_sizes(cfg, pool_size)
    if initial < 1:
        raise ConfigError(f"schedule.initial_size must be >= 1, got {s.initial_size}")
    if batch_is_skipped(initial, int(s.batch_size)):  # train-mode BatchNorm cannot use one sample
        raise ConfigError(
            f"schedule.initial_size=1 with batch_size {s.batch_size}: a training batch of one sample is "
            f"skipped, so cycle 0 would train on nothing; label at least 2 points first"
        )
    if int(s.cycles) > 1 and query < 1:
        raise ConfigError(f"schedule.query_size must be >= 1 with {s.cycles} cycles")
    needed = initial + query * (int(s.cycles) - 1)
    if needed > pool_size:
        raise ConfigError(
            f"the schedule labels {needed} points (initial_size {initial} + query_size {query} × "
            f"{int(s.cycles) - 1} cycles) but the pool of task {cfg.task.name} has only {pool_size}: add "
            f"{_fitting_sizes(pool_size, initial, int(s.cycles))}, or use schedule=own_data (sizes as fractions of "
            f"the pool)"
        )
    if s.subset_size is not None and int(s.subset_size) < query:
        raise ConfigError(f"schedule.subset_size (M={s.subset_size}) must be >= query_size (K={query})")
    lr_milestone_epochs(s)  # fractions in [0, 1]


def lr_milestone_epochs(schedule: DictConfig) -> list[int]:
    """`schedule.lr_milestones` are fractions of the epochs (0.8 of 200 -> 160), so an epochs override keeps
    the paper's shape instead of silently dropping the LR step."""
    return [
        fraction_to_epoch(f, int(schedule.epochs), "schedule.lr_milestones")
        for f in schedule.get("lr_milestones") or []
    ]


def make_scheduler_factory(schedule: DictConfig):
    """The LR scheduler partial, with milestones in epochs when the schedule gives milestone fractions."""
    make = instantiate(schedule.lr_scheduler)
    if make is None or schedule.get("lr_milestones") is None:
        return make
    return functools.partial(make, milestones=lr_milestone_epochs(schedule))


def build_task(cfg: DictConfig, runtime: Runtime) -> Task:
    return instantiate(cfg.task.build).to(runtime.device)


def build_sampler(cfg: DictConfig) -> Sampler:
    return instantiate(cfg.sampler.strategy)


def build_method(cfg: DictConfig) -> LearningLoss | None:
    """The learning-loss hook for learning-loss samplers; None for baselines (they train the plain model)."""
    s = cfg.schedule
    return build_learning_loss(cfg.sampler.get("loss_objective"), s.learning_loss, int(s.epochs), int(s.batch_size))


def seed_for(cfg: DictConfig, part: str) -> int:
    """The seed of one source of randomness: `seed_data` (initial labeled set) or `seed_model` (initial
    weights) when set, else `seed`. Both change rankings of methods, so each can be varied alone."""
    value = cfg.get(f"seed_{part}")
    return int(cfg.seed) if value is None else int(value)


ORACLE_PREFIX = "oracle_"


def check_sampler(cfg: DictConfig, sampler: Sampler, learner: Learner, task: Task) -> None:
    """Refuse, before training, a sampler whose needs this task and learner cannot give, and a sampler that
    reads labels (an oracle) unless its name says so."""
    name = str(cfg.sampler.name)
    label_needs = sorted(n for n in sampler.needs if n in NEEDS and NEEDS[n].reads_labels)
    if label_needs and not sampler.reads_labels:
        raise ConfigError(f"sampler {name} needs {', '.join(label_needs)}, which reads labels: only an oracle may")
    if sampler.reads_labels and not name.startswith(ORACLE_PREFIX):
        raise ConfigError(
            f"sampler {name} reads the candidates' labels (an oracle, a diagnostic): its name must "
            f"start with {ORACLE_PREFIX} so that no table or figure mistakes it for a method"
        )
    unmet = learner.unmet_needs(task, sampler.needs, sampler.need_options)
    if unmet:
        raise ConfigError(f"sampler {name} cannot run on task {task.name}: {'; '.join(unmet)}")


def build_learner(cfg: DictConfig, task: Task, runtime: Runtime, learning_loss: LearningLoss | None) -> Learner:
    """Same seed (`seed_model`, else `seed`) → same initial weights for every sampler (forked RNG, nothing
    global leaks)."""
    embedding = cfg.model.embedding
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(cfg, "model"))
        model = instantiate(cfg.model.net)(**task.model_kwargs())
        learner = Learner(
            model,
            list(cfg.model.taps),
            str(embedding.layer),
            runtime,
            learning_loss,
            embedding_reduce=instantiate(embedding.reduce),
        )
        learner.materialize(task.example_inputs())
    return learner

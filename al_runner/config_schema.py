"""The typed schema of al_runner's config: the top level and every group.

The dataclasses are registered in Hydra's ConfigStore as `al_runner_schema` and sit first in
`conf/config.yaml`'s defaults, so every composed config is typed (a yaml file or preset with
`seed: abc` or `epochs: 1.5` fails composition). Each group declares the keys all its options share,
typed (`schedule.epochs: int`, `sampler.name: str`, ...); the keys one option adds (a task's `root`, a
sampler's strategy settings, a runtime switch) stay allowed: the group nodes are open while Hydra merges
the group files, and `al_runner_closed` (last in the defaults) closes them again, so a mistyped key on
the command line is still refused as before. Hydra reports type errors over several lines, so `al-run`
also checks the command line's overrides against the same fields before composing (`check_overrides`)
and reports a bad value in one line that names the key and what it accepts. Value ranges (epochs >= 1,
...) are checked where the run is built (`al_runner.build`).
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ValidationError

from al_runner.errors import ConfigError

SCHEMA_NAME = "al_runner_schema"
# runtime.loss_module names; learning_loss.MODULE_KINDS maps them to classes (repeated here to keep torch out
# of the command line's start-up; tests/test_fused_module_and_cuda_graphs.py checks the two agree)
LOSS_MODULE_KINDS = ("eager", "fused", "compiled")
CLOSED_NAME = "al_runner_closed"  # last in conf/config.yaml's defaults: closes the groups SCHEMA_NAME opened


@dataclass
class RuntimeSchema:
    amp: Any = "auto"  # auto | true | false
    amp_cpu_models: Any = field(default_factory=list)  # model names for which auto means bf16 on a CPU with AMX
    channels_last: Any = True  # auto | true | false
    compile: bool = False
    threads: Optional[int] = None
    deterministic: bool = False
    loss_module: str = "eager"  # eager | fused | compiled
    cuda_graph: bool = False


@dataclass
class PathsSchema:
    output: str = "outputs"
    data: str = "data"
    cache: str = ".cache"


@dataclass
class TaskSchema:
    """Keys every task shares; each task adds its own (root, build, image_size, ...)."""

    name: str = MISSING


@dataclass
class ModelSchema:
    name: str = MISSING
    net: Any = MISSING  # the target network (`_target_` + `_partial_`)
    taps: List[str] = MISSING  # module names feeding the loss-prediction module
    embedding: Any = MISSING  # core-set embedding: a layer and its reduction


@dataclass
class SamplerSchema:
    name: str = MISSING
    strategy: Any = MISSING  # the selection strategy (`_target_`); its own settings inside
    loss_objective: Optional[str] = None  # margin_ranking | mse | null (no loss-prediction module)


@dataclass
class OptimizerSchema:
    _target_: str = MISSING
    lr: float = MISSING  # other settings differ per optimizer (momentum, alpha, ...): open


@dataclass
class LearningLossSchema:
    hidden: int = MISSING  # width of each tap's FC layer
    margin: float = MISSING  # xi of the margin ranking loss
    weight: float = MISSING  # lambda
    weight_mse: float = MISSING  # lambda of the "learn loss mse" variant
    detach_at: float = MISSING  # fraction of the epochs after which the module's features are detached


@dataclass
class ScheduleSchema:
    name: str = MISSING
    cycles: int = MISSING
    initial_size: Any = MISSING  # a count, or a fraction of the pool in (0, 1) (al_runner.build.pool_count)
    query_size: Any = MISSING  # idem; checked by RULES on the command line and by build.validate_schedule
    subset_size: Optional[int] = MISSING  # null: score the whole unlabeled pool
    epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    optimizer: OptimizerSchema = field(default_factory=OptimizerSchema)
    lr_scheduler: Any = None
    lr_milestones: Optional[List[float]] = None  # fractions of the epochs
    reinit_each_cycle: bool = MISSING
    learning_loss: LearningLossSchema = field(default_factory=LearningLossSchema)


@dataclass
class RootSchema:
    task: TaskSchema = field(default_factory=TaskSchema)
    model: ModelSchema = field(default_factory=ModelSchema)
    sampler: SamplerSchema = field(default_factory=SamplerSchema)
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)
    name: str = "default"
    seed: int = 0
    seed_data: Optional[int] = None  # initial labeled set; None = seed
    seed_model: Optional[int] = None  # initial weights; None = seed
    device: str = "auto"
    progress: Optional[bool] = None
    checkpoint_minutes: Optional[float] = 10.0  # in-cycle checkpoint cadence; None = only at cycle ends
    runtime: RuntimeSchema = field(default_factory=RuntimeSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    logger: Any = None  # the trackers (conf/logger/, al_runner.tracking); never part of a run's identity


# Typed nodes whose options legitimately add keys: open while the group files merge, closed after.
OPEN_NODES = ("task", "model", "sampler", "schedule", "schedule.optimizer", "schedule.learning_loss", "runtime")


def _with_struct_flag(node: DictConfig, value: bool) -> DictConfig:
    for path in OPEN_NODES:
        OmegaConf.set_struct(OmegaConf.select(node, path), value)
    return node


def schema_node() -> DictConfig:
    """RootSchema with its groups open: typed where declared, extra keys allowed."""
    return _with_struct_flag(OmegaConf.structured(RootSchema), False)


def closing_node() -> DictConfig:
    """Empty nodes flagged struct: merged last, they close what `schema_node` opened (OmegaConf's merge copies
    the flag), so a command-line override of a key no file declares is refused, as everywhere else."""
    node = OmegaConf.create({})
    for path in OPEN_NODES:
        OmegaConf.update(node, path, {}, force_add=True)
    return _with_struct_flag(node, True)


def register() -> None:
    ConfigStore.instance().store(name=SCHEMA_NAME, node=schema_node())
    ConfigStore.instance().store(name=CLOSED_NAME, node=closing_node())


# --- one-line checks of command-line values -------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count_or_fraction(v, minimum: int) -> bool:
    """A count of points (an integer >= minimum) or a fraction of the pool in (0, 1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return (0 < v < 1) if isinstance(v, float) and not v.is_integer() else v >= minimum


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
# key -> (accepts value?, what it accepts)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer (e.g. seed=0, or a sweep seed=0,1,2)"),
    "seed_data": (lambda v: v is None or _is_int(v), "an integer, or null (= seed)"),
    "seed_model": (lambda v: v is None or _is_int(v), "an integer, or null (= seed)"),
    "device": (lambda v: isinstance(v, str) and bool(_DEVICE.match(v)), "one of auto, cpu, cuda, cuda:N, mps"),
    "progress": (
        lambda v: v is None or isinstance(v, bool),
        "one of true, false, null (null: bars only on a terminal)",
    ),
    "checkpoint_minutes": (
        lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0),
        "a number of minutes >= 0 (0: after every epoch), or null (only at the end of each cycle)",
    ),
    "name": (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "a folder name"),
    "runtime.amp": (lambda v: v in ("auto", None) or isinstance(v, bool), "one of auto, true, false"),
    "runtime.amp_cpu_models": (
        lambda v: isinstance(v, (list, ListConfig)) and all(isinstance(name, str) for name in v),
        "a list of model names (model.name), e.g. [resnet18_cifar], or []",
    ),
    "runtime.channels_last": (lambda v: v in ("auto", None) or isinstance(v, bool), "one of auto, true, false"),
    "runtime.compile": (lambda v: isinstance(v, bool), "one of true, false"),
    "runtime.deterministic": (lambda v: isinstance(v, bool), "one of true, false"),
    "runtime.loss_module": (lambda v: v in LOSS_MODULE_KINDS, f"one of {', '.join(LOSS_MODULE_KINDS)}"),
    "runtime.cuda_graph": (lambda v: isinstance(v, bool), "one of true, false (true needs a CUDA device)"),
    "runtime.threads": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1, or null (all cores)"),
    "schedule.initial_size": (
        lambda v: _count_or_fraction(v, 1),
        "an integer >= 1, or a fraction of the pool in (0, 1) (0.1 = 10 % of the pool)",
    ),
    "schedule.query_size": (
        lambda v: _count_or_fraction(v, 0),
        "an integer >= 0, or a fraction of the pool in (0, 1) (0.05 = 5 % of the pool)",
    ),
}


def check_composed(cfg: DictConfig) -> None:
    """Raise ConfigError for a value RULES refuses that came from a config file (a preset, `--config-dir`): the
    command line is checked before composition (`check_overrides`), a file's value only here."""
    for key, (accepts, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            continue  # absent, or null: the schema's types already refuse null where a rule would
        if not accepts(value):
            raise ConfigError(
                f"{key}: {_spell(value)} (from the composed config, e.g. a preset) is not valid: "
                f"{key} must be {allowed}"
            )


def schema_field(key: str) -> tuple[type, str, Any] | None:
    """(dataclass, field name, annotation) of a dotted key the schema declares as a leaf, else None."""
    owner: type = RootSchema
    parts = key.split(".")
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(owner)
        if part not in hints:
            return None
        if is_dataclass(hints[part]):
            owner = hints[part]
            continue
        return (owner, part, hints[part]) if depth == len(parts) - 1 else None
    return None


def describe_type(annotation) -> str:
    """What a schema annotation accepts, in words: "an integer", "a number, or null", ..."""
    args = typing.get_args(annotation)
    if type(None) in args:
        return describe_type(next(a for a in args if a is not type(None))) + ", or null"
    if typing.get_origin(annotation) in (list, List):
        return {float: "a list of numbers, e.g. [0.8]", int: "a list of integers, e.g. [1,2]"}.get(
            args[0], "a list of names, e.g. [layer1,layer2]"
        )
    return {int: "an integer", float: "a number", bool: "one of true, false", str: "text"}.get(annotation, "a value")


def _schema_accepts(owner: type, name: str, value) -> bool:
    """OmegaConf's own conversion, exactly as composition applies it (so "3" is an integer, 1.5 is not)."""
    node = OmegaConf.structured(owner)
    try:
        node[name] = value
    except ValidationError:
        return False
    return True


def _rule(key: str) -> tuple[Callable[[Any], bool], str] | None:
    if key in RULES:
        return RULES[key]
    declared = schema_field(key)
    if declared is None:
        return None  # a key one option adds: its own code checks it
    owner, name, annotation = declared
    return (lambda value: _schema_accepts(owner, name, value)), describe_type(annotation)


def _values(override) -> list:
    if not override.is_sweep_override():
        return [override.value()]
    try:
        return list(override.sweep_iterator())
    except Exception:  # glob or interval sweeps: left to the sweeper and the schema
        return []


def _spell(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# --- keys and groups that exist: no silent typos ---------------------------------------------------------
def default_config_dir() -> Path:
    """The repository's conf/ in a checkout, else the copy shipped inside the package (as `al_runner.cli`)."""
    package = Path(__file__).resolve().parent
    return next(
        (c for c in (package.parent / "conf", package / "conf") if (c / "config.yaml").is_file()),
        package.parent / "conf",
    )


def config_dirs_from_args(args: list[str]) -> list[Path]:
    """The folders `--config-dir DIR` / `-cd DIR` / `--config-dir=DIR` add to Hydra's search path."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            found.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            found.append(Path(arg.split("=", 1)[1]))
    return found


def _dotted(node, prefix: str) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.items():
            if name in ("defaults", "hydra") and not prefix:
                continue
            key = f"{prefix}{name}"
            keys.add(key)
            keys |= _dotted(value, key + ".")
    return keys


def _schema_keys(owner: type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    hints = typing.get_type_hints(owner)
    for f in fields(owner):
        keys.add(prefix + f.name)
        if is_dataclass(hints[f.name]):
            keys |= _schema_keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


def _read_yaml(path: Path):
    import yaml  # PyYAML, OmegaConf's own dependency

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except (OSError, yaml.YAMLError):
        return {}  # Hydra reports an unreadable file itself


@lru_cache(maxsize=8)
def _declared(config_dirs: tuple[Path, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """(every dotted key some file or the schema declares, every config group name) over the config folders."""
    keys, groups = set(_schema_keys(RootSchema)), set()
    for root in config_dirs:
        if not root.is_dir():
            continue
        for path in root.rglob("*.yaml"):
            relative = path.relative_to(root)
            if len(relative.parts) == 1:  # a primary config (config.yaml): top-level keys
                keys |= _dotted(_read_yaml(path), "")
                continue
            group = "/".join(relative.parts[:-1])
            groups.add(group)
            text = path.read_text(encoding="utf-8", errors="replace")
            package = re.search(r"^#\s*@package\s+(\S+)", text, re.MULTILINE)
            target = package.group(1) if package else group.replace("/", ".")
            if target.startswith("hydra") or group.startswith("hydra"):
                continue
            keys |= _dotted(_read_yaml(path), "" if target == "_global_" else target + ".")
    return frozenset(keys), frozenset(groups)


def _closest(word: str, choices) -> str | None:
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def check_key(override, keys: frozenset[str], groups: frozenset[str]) -> None:
    """Refuse a key or group that no config declares, naming the closest that exists ("did you mean ..."), with or
    without `+`: Hydra's advice to append it with `+` would run with the default and ignore the key. A `+` key
    under a node that some file builds with `_target_` (an optimizer's or a strategy's arguments) is allowed."""
    key = override.key_or_group
    if override.is_delete() or key.split(".")[0].split("/")[0] == "hydra" or key in keys or key in groups:
        return
    if "." not in key and "/" not in key:
        guess = _closest(key, groups | {k for k in keys if "." not in k})
        hint = f": did you mean {guess}?" if guess else f"; the groups are {', '.join(sorted(groups))}"
        raise ConfigError(f"{key} is neither a config group nor a key{hint}")
    if "/" in key:
        guess = _closest(key, groups)
        raise ConfigError(f"{key} is not a config group{f': did you mean {guess}?' if guess else ''}")
    parts = key.split(".")
    built = any(".".join(parts[:i]) + "._target_" in keys for i in range(1, len(parts)))
    if built and (override.is_add() or override.is_force_add()):
        return  # an argument of what `_target_` builds: its own code checks it
    if built:
        return  # Hydra's own message is right here: an argument is added with `+`
    parent = ".".join(parts[:-1])
    siblings = {k for k in keys if k.startswith(parent + ".") and k.count(".") == key.count(".")}
    names = {k.rsplit(".", 1)[1] for k in siblings}
    guess = (
        f"{parent}.{_closest(parts[-1], names)}"
        if _closest(parts[-1], names)
        else None
        if siblings
        else _closest(key, keys)
    )
    hint = f": did you mean {guess}?" if guess else f"; {parent} has {', '.join(sorted(names))}" if names else ""
    raise ConfigError(f"{key} is not a key of this config (nothing would read it){hint}")


def check_overrides(args: list[str], config_dirs: list[Path] | None = None) -> None:
    """Raise ConfigError (one line) for a command-line key no config declares or a value the schema does not
    accept. `config_dirs`: al_runner's conf/ and any `--config-dir` (default: conf/ and those in `args`)."""
    if config_dirs is None:
        config_dirs = [default_config_dir(), *config_dirs_from_args(args)]
    keys, groups = _declared(tuple(Path(d).resolve() for d in config_dirs))
    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except OverrideParseException:
        return  # Hydra reports syntax errors itself
    for override in overrides:
        check_key(override, keys, groups)
        key = override.key_or_group.lstrip("+~")
        rule = None if override.is_delete() else _rule(key)
        if rule is None:
            continue
        accepts, allowed = rule
        for value in _values(override):
            if isinstance(value, str) and "${" in value:
                continue  # an interpolation: resolved (and typed by the schema) at composition
            if not accepts(value):
                raise ConfigError(f"{key}={_spell(value)} is not valid: {key} must be {allowed}")

"""The typed top level of al_runner's config.

The dataclasses are registered in Hydra's ConfigStore as `al_runner_schema` and sit first in
`conf/config.yaml`'s defaults, so every composed config is typed (a yaml file or preset with
`seed: abc` fails composition). Hydra reports such errors over several lines, so `al-run` also
checks the command line's overrides against the same fields before composing
(`check_overrides`) and reports a bad value in one line that names the key and what it accepts.
The config groups (task, model, sampler, schedule) stay free-form: their own code validates them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from al_runner.errors import ConfigError

SCHEMA_NAME = "al_runner_schema"


@dataclass
class RuntimeSchema:
    amp: Any = "auto"             # auto | true | false
    channels_last: Any = True     # auto | true | false
    compile: bool = False
    threads: Optional[int] = None
    deterministic: bool = False
    loss_module: str = "eager"    # eager | fused | compiled
    cuda_graph: bool = False


@dataclass
class PathsSchema:
    output: str = "outputs"
    data: str = "data"
    cache: str = ".cache"


@dataclass
class RootSchema:
    task: Any = None
    model: Any = None
    sampler: Any = None
    schedule: Any = None
    name: str = "default"
    seed: int = 0
    seed_data: Optional[int] = None   # initial labeled set; None = seed
    seed_model: Optional[int] = None  # initial weights; None = seed
    device: str = "auto"
    progress: Optional[bool] = None
    runtime: RuntimeSchema = field(default_factory=RuntimeSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)


def register() -> None:
    ConfigStore.instance().store(name=SCHEMA_NAME, node=RootSchema)


# --- one-line checks of command-line values -------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
# key -> (accepts value?, what it accepts)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer (e.g. seed=0, or a sweep seed=0,1,2)"),
    "seed_data": (lambda v: v is None or _is_int(v), "an integer, or null (= seed)"),
    "seed_model": (lambda v: v is None or _is_int(v), "an integer, or null (= seed)"),
    "device": (lambda v: isinstance(v, str) and bool(_DEVICE.match(v)), "one of auto, cpu, cuda, cuda:N, mps"),
    "progress": (lambda v: v is None or isinstance(v, bool), "one of true, false, null (null: bars only on a terminal)"),
    "name": (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "a folder name"),
    "runtime.amp": (lambda v: v in ("auto", None) or isinstance(v, bool), "one of auto, true, false"),
    "runtime.channels_last": (lambda v: v in ("auto", None) or isinstance(v, bool), "one of auto, true, false"),
    "runtime.compile": (lambda v: isinstance(v, bool), "one of true, false"),
    "runtime.deterministic": (lambda v: isinstance(v, bool), "one of true, false"),
    "runtime.loss_module": (lambda v: v in ("eager", "fused", "compiled"), "one of eager, fused, compiled"),
    "runtime.cuda_graph": (lambda v: isinstance(v, bool), "one of true, false (true needs a CUDA device)"),
    "runtime.threads": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1, or null (all cores)"),
}


def _values(override) -> list:
    if not override.is_sweep_override():
        return [override.value()]
    try:
        return list(override.sweep_iterator())
    except Exception:  # glob or interval sweeps: left to the sweeper and the schema
        return []


def _spell(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_overrides(args: list[str]) -> None:
    """Raise ConfigError (one line) for a command-line value the schema does not accept."""
    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except OverrideParseException:
        return  # Hydra reports syntax errors itself
    for override in overrides:
        key = override.key_or_group.lstrip("+~")
        if key not in RULES or override.is_delete():
            continue
        accepts, allowed = RULES[key]
        for value in _values(override):
            if isinstance(value, str) and "${" in value:
                continue  # an interpolation: resolved (and typed by the schema) at composition
            if not accepts(value):
                raise ConfigError(f"{key}={_spell(value)} is not valid: {key} must be {allowed}")

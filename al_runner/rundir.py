"""The run directory: CSVs rewritten atomically from the run state, the checkpoint, and which config a
checkpoint belongs to (file names and columns: `al_runner.schema`)."""

from __future__ import annotations

import csv
import io
import logging
import pickle
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from al_runner import platform
from al_runner.atomic import atomic_torch_save, atomic_write_text
from al_runner.errors import ALRunnerError, ConfigError
from al_runner.schema import CYCLE_COLUMNS, CYCLES_CSV, TEST_SCORE_COLUMNS

log = logging.getLogger(__name__)

CONFIG_FILE = (
    "config.yaml"  # the run's composed config (interpolations kept, environment pinned), read by the figure script
)

# Top-level keys that cannot change a number: where files go, how progress shows, what the sweep is called.
# `device` is replaced by the resolved device *type* (cpu vs cuda changes numbers, cuda:0 vs cuda:1 does not),
# and `runtime` by its resolved values (amp, channels_last and compile change fp rounding). On CPU the resolved
# thread count counts too: it changes the order of float reductions, hence the numbers (the demo's cycle 0 at 1 vs
# 2 threads: docs/sweeps.md "Run identity"). On CUDA it only drives host-side work, so it is left out there.
# logger: trackers (al_runner.tracking); checkpoint_minutes: how often progress within a cycle is saved
IGNORED_KEYS = (
    "progress",
    "checkpoint_minutes",
    "paths",
    "name",
    "hydra",
    "device",
    "runtime",
    "logger",
)


def comparable_config(cfg: DictConfig, resolved_runtime: dict) -> dict:
    """The resolved config that changes results: what a run directory and its checkpoint belong to."""
    from al_runner.build import resolve_threads  # torch-side; build never imports this module

    container = OmegaConf.to_container(cfg, resolve=True)
    comparable = {k: v for k, v in container.items() if k not in IGNORED_KEYS}
    for key in ("seed_data", "seed_model"):  # null = `seed`: left out, so runs that do not set them keep their hash
        if comparable.get(key) is None:
            comparable.pop(key, None)
    comparable["runtime"] = dict(resolved_runtime)
    if resolved_runtime.get("device_type") == "cpu":
        comparable["runtime"]["threads"] = resolve_threads(cfg)
    if cfg.get("runtime", {}).get(
        "deterministic", False
    ):  # other kernels on GPU; absent when off (same hash as before)
        comparable["runtime"]["deterministic"] = True
    return comparable


def comparable_config_of(cfg: DictConfig) -> dict:
    """`comparable_config` with the runtime resolved from `cfg` itself: a run's identity from its config alone (the
    run directory's name, a saved config.yaml)."""
    from al_runner.build import make_runtime  # torch-side; build never imports this module

    return comparable_config(cfg, make_runtime(cfg).resolved())


def config_differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            diffs += config_differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return diffs
    return [] if a == b else [prefix.rstrip(".")]


def different_config(run_dir: Path, diffs: list[str], holding: str = "a run") -> ConfigError:
    """The refusal to resume or skip into a run directory whose run (checkpoint or records) has another config."""
    return ConfigError(
        f"{run_dir} holds {holding} with a different config (differs in: {', '.join(diffs[:8])}). "
        f"Use another output directory (e.g. name=<new>) or delete that one to start over"
    )


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision, so reruns compare exactly
    return str(value)


def data_changes(recorded: dict, current: dict) -> list[str]:
    """What differs between the data fingerprints of a checkpoint and of the data found now."""
    return [
        f"{part}: {recorded.get(part, 'absent')} then, {current.get(part, 'absent')} now"
        for part in sorted(set(recorded) | set(current))
        if recorded.get(part) != current.get(part)
    ]


def pin_environment(cfg: DictConfig) -> DictConfig:
    """A copy of `cfg` in which every value that can change a number and is read from an environment variable
    (`${oc.env:...}`, e.g. a data root given as $AL_RUNNER_CIFAR10_JPG) holds the value it resolved to now; other
    interpolations are kept. The run's
    identity (`comparable_config`) resolves the environment, so only a saved config that pins it can be recomputed
    from the run's own files later, in a shell without those variables."""
    pinned = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key in cfg.keys():
        # keys that cannot change a number (paths, hydra, ...) keep their interpolations: no machine's home folder
        # is written into a run's config for nothing
        if key not in IGNORED_KEYS and OmegaConf.is_config(cfg._get_node(key)):
            _pin_environment_nodes(pinned[key], cfg[key])
    return pinned


def _pin_environment_nodes(pinned, cfg) -> None:
    keys = range(len(cfg)) if OmegaConf.is_list(cfg) else list(cfg.keys())
    for key in keys:
        node = cfg._get_node(key)
        if OmegaConf.is_config(node):
            _pin_environment_nodes(pinned[key], node)
        elif OmegaConf.is_interpolation(cfg, key) and "oc.env" in str(node._value()):
            pinned[key] = cfg[key]


def save_config(path: Path, cfg: DictConfig) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(pin_environment(cfg), resolve=False))


def write_csv(path: Path, columns, rows: list[dict]) -> None:
    """Write-then-rename (`al_runner.atomic`): a crash, SIGKILL included, leaves the previous file intact."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in columns])
    atomic_write_text(path, out.getvalue())


_INT_COLUMNS = ("seed", "cycle", "n_labeled")
_TEXT_COLUMNS = ("task", "model", "sampler", "metric", "uncertainty")


def read_cycle_rows(path: Path) -> list[dict]:
    """cycles.csv's rows with the types `write_csv` wrote them from (empty cell = None)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    typed = []
    for row in rows:
        out = {}
        for column in CYCLE_COLUMNS:
            cell = row.get(column, "")
            if cell in ("", None):
                out[column] = None
            elif column in _INT_COLUMNS:
                out[column] = int(cell)
            elif column in _TEXT_COLUMNS:
                out[column] = cell
            else:
                out[column] = float(cell)
        typed.append(out)
    return typed


def finished_records(run_dir: Path, comparable: dict, cycles: int) -> list[dict] | None:
    """The cycles.csv rows of a run that finished all `cycles` in `run_dir` but whose checkpoint is not there (a
    committed reference run copied back into a sweep, or a checkpoint deleted to save space), or None.

    A run counts as finished only if its saved config is the same run (`comparable`, as `comparable_config` gives
    it) and cycles.csv holds cycles 0 .. cycles-1: the runner writes the CSVs after each cycle's checkpoint, so
    complete CSVs mean the last checkpoint was a finished one."""
    cycles_csv, config_yaml = run_dir / CYCLES_CSV, run_dir / CONFIG_FILE
    if not (cycles_csv.is_file() and config_yaml.is_file()):
        return None
    diffs = config_differences(comparable_config_of(OmegaConf.load(config_yaml)), comparable)
    if diffs:
        raise different_config(run_dir, diffs, "the records of a run")
    rows = read_cycle_rows(cycles_csv)
    if [row["cycle"] for row in rows] != list(range(cycles)):
        return None
    return rows


def write_test_scores(
    path: Path, cycle: int, real_loss: torch.Tensor, uncertainty: torch.Tensor, predicted_loss: torch.Tensor | None
) -> None:
    predicted = [None] * real_loss.numel() if predicted_loss is None else predicted_loss.tolist()
    rows = [
        {"cycle": cycle, "test_index": i, "real_loss": r, "predicted_loss": p, "uncertainty": u}
        for i, (r, p, u) in enumerate(zip(real_loss.tolist(), predicted, uncertainty.tolist()))
    ]
    write_csv(path, TEST_SCORE_COLUMNS, rows)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write-then-rename: a crash mid-write, SIGKILL included, leaves the previous checkpoint intact."""
    atomic_torch_save(path, state)


def load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return load_tensors_only(path)


def load_tensors_only(path: Path, error: type[ALRunnerError] = ConfigError):
    """torch.load with `weights_only=True`: tensors, containers, numbers and text, nothing that runs code while it
    is read (a checkpoint from a shared filesystem or a colleague's folder cannot execute anything). A file that
    needs more is refused in one line naming it, before any of its objects is built."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needs = (
            str(e).split("Unsupported global: GLOBAL ", 1)[-1].split(" ", 1)[0]
            if "Unsupported global" in str(e)
            else ""
        )
        what = f" (it asks for {needs})" if needs else ""
        raise error(
            f"{path} holds objects other than tensors, numbers and text{what}: refused, since loading it "
            f"could run code; al_runner never writes such a file, so move it away to start over"
        ) from None


def save_platform(path: Path, record: dict) -> None:
    """The run's floating-point path (`al_runner.platform`), beside config.yaml."""
    atomic_write_text(path, platform.to_json(record))


def check_platform(ckpt: dict, current: dict, run_dir: Path) -> None:
    """A resume on another floating-point path (CPU, instruction set, torch / oneDNN build, threads) is refused,
    naming what differs, as a changed config is; a checkpoint written before runs recorded it resumes with a warning."""
    recorded = ckpt.get("platform")
    if recorded is None:
        log.warning(
            "%s: this checkpoint predates the floating-point path record; resuming without checking that "
            "the CPU, its instruction set and the torch build are the ones it was written on",
            run_dir,
        )
        return
    diffs = platform.differences(recorded, current)
    if diffs:
        raise ConfigError(
            f"{run_dir} was run on another floating-point path (differs in: {'; '.join(diffs)}), which changes the "
            f"numbers; resume it on its own machine, or start over in another directory (e.g. name=<new>)"
        )

"""What a sweep was asked to run, so the report of a partial sweep says what is not there yet.

Hydra writes `<sweep dir>/multirun.yaml` when a multirun starts: the sweep's seeds and samplers are in
`hydra.sweeper.params` (an experiment preset) and/or `hydra.overrides.task` (the command line, which wins).
Each run's own `config.yaml` says how many cycles it was asked for (`schedule.cycles`). Both are read with
Hydra's / OmegaConf's own parsers, so `seed=range(0,5)` or `sampler=choice(random,entropy)` count too.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pandas as pd

from al_runner.figures.errors import FigureDataError
from al_runner.figures.labels import sampler_label
from al_runner.figures.loading import read_run_config

MULTIRUN_FILE = "multirun.yaml"
PLANNED_KEYS = ("sampler", "seed")  # what identifies a run of one experiment; other swept keys make arms


def _values(override) -> list[str]:
    if override.is_sweep_override():
        return [str(value) for value in override.sweep_string_iterator()]
    return [str(override.value())]


def _sweeper_params(config) -> dict:
    """The preset's `hydra.sweeper.params` as a plain dict; {} for a sweep made from command-line overrides
    alone (the node is then null)."""
    from omegaconf import DictConfig, OmegaConf

    params = OmegaConf.select(config, "hydra.sweeper.params")
    return OmegaConf.to_container(params, resolve=False) if isinstance(params, DictConfig) else {}


def planned_grid(multirun_yaml: Path) -> dict[str, list[str]] | None:
    """{'sampler': [...], 'seed': [...]} as the sweep asked for them (only the keys it set); None when the
    sweep also varied other keys (then runs are not identified by sampler × seed alone)."""
    grid = planned_sweep(multirun_yaml)
    if any(key not in PLANNED_KEYS and len(values) > 1 for key, values in grid.items()):
        return None
    return {key: values for key, values in grid.items() if key in PLANNED_KEYS}


def planned_sweep(multirun_yaml: Path) -> dict[str, list[str]]:
    """Every key the sweep set to a list of values (sampler and seed also when set to one), with those values:
    {'sampler': [...], 'seed': [...], 'runtime.amp': ['false', 'true']}."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    try:
        config = OmegaConf.load(multirun_yaml)
        params = _sweeper_params(config)
        command_line = list(OmegaConf.select(config, "hydra.overrides.task") or [])
        texts = [f"{key}={value}" for key, value in params.items()] + [str(text) for text in command_line]
        overrides = OverridesParser.create().parse_overrides(texts)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        raise FigureDataError(f"{multirun_yaml}: not a readable Hydra multirun.yaml ({error})") from None
    grid: dict[str, list[str]] = {}
    for override in overrides:  # later entries (the command line) replace earlier ones (the preset), as in Hydra
        key = override.key_or_group  # "+runtime.x=1,2" -> runtime.x, as the run's config.yaml has it
        if key in PLANNED_KEYS or override.is_sweep_override():
            grid[key] = _values(override)
        else:
            grid.pop(key, None)  # a single value on the command line replaces a preset's list
    return grid


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _under(run_dir: str, sweep_dir: Path) -> bool:
    return Path(run_dir).resolve().is_relative_to(sweep_dir.resolve())


def missing_runs_text(missing: list[tuple[str, str]], all_samplers: list[str]) -> str:
    """ "seed 7 (entropy, learn loss); seeds 8–19 (all samplers)": consecutive integer seeds missing the same
    samplers share one entry."""
    by_seed: dict[str, list[str]] = {}
    for sampler, seed in missing:
        by_seed.setdefault(seed, []).append(sampler)
    groups: list[tuple[list[str], list[str]]] = []  # (seeds, samplers)
    for seed, samplers in by_seed.items():
        last = groups[-1] if groups else None
        if (
            last
            and last[1] == samplers
            and seed.isdigit()
            and last[0][-1].isdigit()
            and int(seed) == int(last[0][-1]) + 1
        ):
            last[0].append(seed)
        else:
            groups.append(([seed], samplers))
    parts = []
    for seeds, samplers in groups:
        which = (
            "all samplers"
            if set(samplers) == set(all_samplers) and len(all_samplers) > 1
            else ", ".join(sampler_label(sampler) for sampler in samplers)
        )
        named = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
        parts.append(f"{named} ({which})")
    return "; ".join(parts)


def planned_run_notes(cycles: pd.DataFrame, run_roots: list[Path], only: list[str] | None = None) -> list[str]:
    """One note per sweep (a multirun.yaml under a --runs root) that has fewer runs with results than planned.
    `only`: the samplers the report keeps (al-plot --samplers); the plan's others are not missing."""
    notes = []
    sweep_files = sorted(
        {path.resolve(): path for root in run_roots for path in Path(root).rglob(MULTIRUN_FILE)}.values()
    )
    for path in sweep_files:
        grid = planned_grid(path)
        if grid is None:
            continue
        in_sweep = {run_dir for run_dir in cycles["run_dir"].unique() if _under(run_dir, path.parent)}
        rows = cycles[cycles["run_dir"].isin(in_sweep)]
        present = {(str(sampler), str(seed)) for sampler, seed in zip(rows["sampler"], rows["seed"])}
        samplers = grid.get("sampler") or sorted({sampler for sampler, _ in present})
        if only:
            samplers = [sampler for sampler in samplers if sampler in only]
        seeds = grid.get("seed") or sorted({seed for _, seed in present}, key=int)
        planned = list(product(samplers, seeds))
        missing = sorted(
            (run for run in planned if run not in present), key=lambda run: (int(run[1]), samplers.index(run[0]))
        )
        if missing:
            notes.append(
                f"{path.parent}: partial sweep: {len(planned) - len(missing)} of {len(planned)} planned runs "
                f"({_count(len(samplers), 'sampler')} × {_count(len(seeds), 'seed')}, from {MULTIRUN_FILE}) "
                "have results; "
                f"none yet for {missing_runs_text(missing, samplers)}"
            )
    return notes


def planned_experiments(cycles: pd.DataFrame, run_roots: list[Path]) -> set[tuple[str, str]]:
    """The task × model experiments whose every run lies in a sweep directory with a multirun.yaml: the sweep's
    plan says which samplers were asked for, so the paper's samplers it did not ask for are not missing."""
    sweep_dirs = [path.parent.resolve() for root in run_roots for path in Path(root).rglob(MULTIRUN_FILE)]
    planned = set()
    for (task, model), rows in cycles.groupby(["task", "model"]):
        if sweep_dirs and all(
            any(Path(run_dir).resolve().is_relative_to(sweep) for sweep in sweep_dirs)
            for run_dir in rows["run_dir"].unique()
        ):
            planned.add((task, model))
    return planned


def planned_cycles(run_dir: Path) -> int | None:
    """How many cycles the run's config.yaml asked for (None when it has no config or says it another way)."""
    return cycles_asked(read_run_config(Path(run_dir)) or {})


def cycles_asked(config: dict[str, str]) -> int | None:
    """schedule.cycles of a run's config as `read_run_config` gives it (None when absent or not a plain integer)."""
    planned = config.get("schedule.cycles")
    return int(planned) if planned is not None and str(planned).isdigit() else None


def unfinished_run_notes(cycles: pd.DataFrame) -> list[str]:
    """Runs that stopped (or are still going) before the number of cycles their config asked for."""
    notes = []
    for run_dir, rows in cycles.groupby("run_dir", sort=True):
        planned = planned_cycles(Path(run_dir))
        reached = int(rows["cycle"].max()) + 1
        if planned is not None and reached < planned:
            first = rows.iloc[0]
            notes.append(
                f"{sampler_label(first['sampler'])} seed {first['seed']}: {reached} of {planned} planned cycles so far "
                f"(still running or stopped; its sweep command resumes it) ({run_dir})"
            )
    return notes

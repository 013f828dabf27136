"""Find run directories and read their CSVs strictly: a bad file is an error that names it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from al_runner.figures.errors import FigureDataError
from al_runner.schema import CYCLE_COLUMNS as CYCLES_COLUMNS
from al_runner.schema import CYCLES_CSV as CYCLES_FILE
from al_runner.schema import PLATFORM_FILE, PLATFORM_KEYS
from al_runner.schema import TEST_SCORE_COLUMNS as TEST_SCORES_COLUMNS

# What identifies one run (one line of a sweep).
RUN_KEY = ["task", "model", "sampler", "seed"]

# The run's composed config, saved by the runner (config.yaml) or, for older runs, by Hydra (.hydra/).
CONFIG_FILES = ("config.yaml", ".hydra/config.yaml")
# Keys that never make two arms: the seed (averaged over), where files go, how the run was executed.
NOT_AN_ARM = ("seed", "name", "paths", "progress", "checkpoint_minutes", "device", "hydra", "runtime.threads")
# runtime.amp and runtime.amp_cpu_models change a run's numbers only through the precision they resolve to (fp32 or
# bf16, as the run's identity holds it): runs are told apart by that, PRECISION_ARM_KEY, not by how it was asked
# for (`runtime.amp=false` and `auto` resolving to fp32 are the same arm).
PRECISION_KEYS = ("runtime.amp", "runtime.amp_cpu_models")
PRECISION_ARM_KEY = "precision"
UNKNOWN_PRECISION = "not recorded"  # runtime.amp=auto in a run made before platform.json recorded what it became


@dataclass
class LoadedRuns:
    cycles: pd.DataFrame  # every row of every cycles.csv, typed, plus a `run_dir` column
    notes: list[str] = field(default_factory=list)  # things the user should know (skipped files, duplicates)
    configs: dict[str, dict[str, str] | None] = field(default_factory=dict)  # run_dir -> its config, read once


def find_cycles_files(run_roots: list[Path]) -> list[Path]:
    """Every cycles.csv below each root (recursive), each file once even if roots overlap."""
    found: dict[Path, Path] = {}
    for root in run_roots:
        root = Path(root)
        if not root.is_dir():
            raise FigureDataError(f"--runs directory does not exist or is not a directory: {root}")
        files = sorted(root.rglob(CYCLES_FILE))
        if not files:
            raise FigureDataError(f"no {CYCLES_FILE} found anywhere under {root}")
        for path in files:
            found.setdefault(path.resolve(), path)
    return list(found.values())


def _read_csv_as_text(path: Path, required_columns: tuple[str, ...]) -> pd.DataFrame:
    """Read every cell as text so that we, not pandas, decide what counts as a bad number."""
    try:
        if path.stat().st_size == 0:
            raise FigureDataError(f"{path}: empty file (expected a header with columns {', '.join(required_columns)})")
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as error:
        raise FigureDataError(f"{path}: not a readable CSV file ({error})") from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in required_columns if column not in table.columns]
    if missing:
        raise FigureDataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected columns {', '.join(required_columns)}"
        )
    return table


def _line_number(row_index) -> int:
    return int(row_index) + 2  # +1 for the header, +1 for 1-based lines


def _parse_numbers(table: pd.DataFrame, column: str, path: Path, *, required: bool, integer: bool = False) -> pd.Series:
    """Column as floats (or ints). Empty cells are NaN where allowed, an error where the value is required."""
    text = table[column].str.strip()
    # "nan" in an optional column is how some writers spell "no value"; treat it like an empty cell.
    is_blank = text.eq("") | (text.str.lower().eq("nan") & (not required))
    numbers = pd.to_numeric(text.where(~is_blank), errors="coerce")
    unparsable = ~is_blank & ~np.isfinite(numbers)
    if unparsable.any():
        row = unparsable.idxmax()
        raise FigureDataError(f"{path}: column '{column}', line {_line_number(row)}: unparsable number {text[row]!r}")
    if required and is_blank.any():
        row = is_blank.idxmax()
        raise FigureDataError(f"{path}: column '{column}', line {_line_number(row)}: value is missing")
    if integer:
        fractional = numbers.notna() & (numbers % 1 != 0)
        if fractional.any():
            row = fractional.idxmax()
            raise FigureDataError(
                f"{path}: column '{column}', line {_line_number(row)}: expected an integer, got {text[row]!r}"
            )
        return numbers.astype("int64")
    return numbers.astype("float64")


def _parse_text(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    text = table[column].str.strip()
    if text.eq("").any():
        row = text.eq("").idxmax()
        raise FigureDataError(f"{path}: column '{column}', line {_line_number(row)}: value is missing")
    return text


def read_cycles_csv(path: Path) -> pd.DataFrame:
    """One run's cycles.csv, typed. A header-only file gives an empty frame (a run whose first cycle is still
    running)."""
    path = Path(path)
    table = _read_csv_as_text(path, CYCLES_COLUMNS)
    cycles = pd.DataFrame(index=table.index)
    for column in ("task", "model", "sampler", "metric", "uncertainty"):
        cycles[column] = _parse_text(table, column, path)
    for column in ("seed", "cycle", "n_labeled"):
        cycles[column] = _parse_numbers(table, column, path, required=True, integer=True)
    for column in ("value", "train_s", "eval_s", "select_s"):
        cycles[column] = _parse_numbers(table, column, path, required=True)
    # Empty for samplers without the loss-prediction module (random, entropy, coreset).
    cycles["ranking_accuracy"] = _parse_numbers(table, "ranking_accuracy", path, required=False)
    cycles["run_dir"] = str(path.parent)
    return cycles[[*CYCLES_COLUMNS, "run_dir"]]


def read_test_scores_csv(path: Path) -> pd.DataFrame:
    """One run's per-test-point scores (Fig. 8), typed; predicted_loss is NaN where the run had no loss module."""
    path = Path(path)
    table = _read_csv_as_text(path, TEST_SCORES_COLUMNS)
    if table.empty:
        raise FigureDataError(f"{path}: no rows (header only)")
    scores = pd.DataFrame(index=table.index)
    scores["cycle"] = _parse_numbers(table, "cycle", path, required=True, integer=True)
    scores["test_index"] = _parse_numbers(table, "test_index", path, required=True, integer=True)
    scores["real_loss"] = _parse_numbers(table, "real_loss", path, required=True)
    scores["predicted_loss"] = _parse_numbers(table, "predicted_loss", path, required=False)
    scores["uncertainty"] = _parse_numbers(table, "uncertainty", path, required=True)
    return scores


def _drop_repeated_cycles(cycles: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
    """A resumed run may have written a cycle twice; the later row is the one that counts."""
    repeated = cycles.duplicated(subset=[*RUN_KEY, "cycle"], keep="last")
    if repeated.any():
        notes.append(
            f"{path}: cycle(s) {sorted(set(cycles.loc[repeated, 'cycle']))} appear more than once; kept the "
            "last row of each"
        )
    return cycles[~repeated]


def _keep_one_dir_per_run(cycles: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The same (task, model, sampler, seed) in two run dirs would be counted as two seeds; keep the longer run."""
    per_dir = cycles.groupby([*RUN_KEY, "run_dir"], as_index=False)["cycle"].agg(["count", "max"])
    kept_dirs = []
    for key, dirs in per_dir.groupby(RUN_KEY):
        dirs = dirs.sort_values(["count", "max", "run_dir"], ascending=[False, False, True])
        kept_dirs.append(dirs.iloc[0][[*RUN_KEY, "run_dir"]])
        if len(dirs) > 1:
            task, model, sampler, seed = key
            notes.append(
                f"run {task}/{model}/{sampler}/seed {seed} found in {len(dirs)} directories "
                f"({', '.join(dirs['run_dir'])}); used {dirs.iloc[0]['run_dir']} (most cycles)"
            )
    kept = pd.DataFrame(kept_dirs)
    return cycles.merge(kept, on=[*RUN_KEY, "run_dir"], how="inner")


def read_platform(run_dir: Path) -> dict | None:
    """The run's platform.json (its floating-point path), or None for runs made before it was recorded."""
    path = Path(run_dir) / PLATFORM_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FigureDataError(f"{path}: not a readable platform record ({error})") from None
    if not isinstance(record, dict):
        raise FigureDataError(f"{path}: not a platform record (expected a JSON object)")
    return record


def mixed_platform_notes(cycles: pd.DataFrame) -> list[str]:
    """Paired differences compare samplers within a seed, assuming one floating-point path: name every seed whose
    runs were made on different ones (CPU type, ISA, precision, builds, as platform.json records them), since such
    a difference mixes the machines or precisions with the samplers. Runs without a record are not compared."""
    records = {run_dir: read_platform(Path(run_dir)) for run_dir in cycles["run_dir"].unique()}
    notes = []
    for (task, model, seed), rows in cycles.groupby(["task", "model", "seed"]):
        runs = rows[["sampler", "run_dir"]].drop_duplicates().itertuples(index=False)
        known = {sampler: records[run_dir] for sampler, run_dir in runs if records[run_dir] is not None}
        differing = _differing_platform_keys(list(known.values()))
        if differing:
            paths = "; ".join(
                f"{key}: "
                + ", ".join(f"{_platform_text(record.get(key))} ({sampler})" for sampler, record in known.items())
                for key in differing
            )
            notes.append(
                f"{task}/{model} seed {seed}: its runs were made on different floating-point paths ({paths}); "
                f"its paired differences compare those as well as the samplers"
            )
    return notes


def _differing_platform_keys(records: list[dict]) -> list[str]:
    """Keys (of schema.PLATFORM_KEYS, for the records' device types) present in every record with more than one
    value among them."""
    if len(records) < 2:
        return []
    keys = dict.fromkeys(
        key for record in records for key in PLATFORM_KEYS.get(str(record.get("device")), PLATFORM_KEYS["cpu"])
    )
    return [
        key
        for key in keys
        if all(key in record for record in records) and len({_platform_text(r[key]) for r in records}) > 1
    ]


def _platform_text(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def _flatten(node, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): str(node)}


def read_run_config(run_dir: Path) -> dict[str, str] | None:
    """The run's config as dotted key -> text (interpolations as written, so `${seed}` never differs)."""
    from omegaconf import OmegaConf  # only needed for sweeps that saved their config

    for name in CONFIG_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            try:
                return _flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
            except Exception as error:  # noqa: BLE001 - any unreadable YAML is the same user problem
                raise FigureDataError(f"{path}: not a readable config file ({error})") from None
    return None


# Keys naming where the data lived: the same data sit at different paths on different machines, and a run's saved
# config holds either the interpolation as written (`${oc.env:AL_RUNNER_CIFAR10_JPG,${paths.data}/cifar10-jpg}`)
# or, since environment values are pinned, the path it resolved to. Runs are told apart by the data folder's name.
DATA_LOCATION_KEYS = ("task.root",)


def data_folder_name(text: str) -> str:
    """The last path component of a data location as written, interpolation syntax ignored:
    `${oc.env:X,${paths.data}/cifar10-jpg}` and `../data/cifar10-jpg/` both give `cifar10-jpg`."""
    return re.split(r"[/\\,:{]", text.strip().rstrip("}/\\"))[-1]


# Keys added to the config after runs were committed, with the value that reproduces what runs did before them:
# an older config without the key reads as that value, so it is not a separate arm from a newer run that kept the
# default. (Keys added with a null default that means "as before", such as seed_data, read as null anyway.)
AS_BEFORE_THE_KEY_EXISTED = {
    "runtime.loss_module": "eager",  # the per-tap module every run used before the fused and compiled variants
    "runtime.cuda_graph": "False",  # no CUDA-graph step existed before the key
}


def arm_value(config: dict[str, str], key: str) -> str:
    """What a run's `key` contributes to telling arms apart (a key absent from an older config reads as null, or as
    its value in AS_BEFORE_THE_KEY_EXISTED)."""
    value = config.get(key, AS_BEFORE_THE_KEY_EXISTED.get(key, "None"))
    if key in DATA_LOCATION_KEYS and value != "None":
        return f"…/{data_folder_name(value)}"
    return value


def _is_arm_key(key: str) -> bool:
    return not any(key == ignored or key.startswith(ignored + ".") for ignored in (*NOT_AN_ARM, *PRECISION_KEYS))


def _arm_values(configs, key: str) -> set[str]:
    values = {arm_value(config, key) for config in configs}
    return values - {UNKNOWN_PRECISION} if key == PRECISION_ARM_KEY else values


def resolved_precision(config: dict[str, str], record: dict | None) -> str:
    """fp32 / bf16 as the run computed: its platform.json's, else what an explicit runtime.amp gives; a run with
    amp auto and no record reads UNKNOWN_PRECISION."""
    if record and record.get("precision"):
        return str(record["precision"])
    asked = config.get("runtime.amp", "auto")
    return {"True": "bf16", "False": "fp32"}.get(asked, UNKNOWN_PRECISION)


def read_run_configs(cycles: pd.DataFrame) -> dict[str, dict[str, str] | None]:
    return {run_dir: read_run_config(Path(run_dir)) for run_dir in cycles["run_dir"].unique()}


def split_arms(cycles: pd.DataFrame, notes: list[str], configs: dict[str, dict[str, str] | None]) -> pd.DataFrame:
    """Runs of one task × model × sampler whose configs differ (e.g. a sweep over the loss weight) are
    separate arms: each gets the differing keys in its sampler label, so no arm is averaged into
    another or dropped as a duplicate. `configs`: run_dir -> config (`read_run_configs`)."""
    labels: dict[str, str] = {}
    for (task, model, sampler), rows in cycles.groupby(["task", "model", "sampler"]):
        run_dirs = list(rows["run_dir"].unique())
        known = {d: configs[d] for d in run_dirs if configs[d] is not None}
        if len(known) < len(run_dirs) and known:
            notes.append(
                f"{task}/{model}/{sampler}: {len(run_dirs) - len(known)} run(s) have no saved config; "
                f"they cannot be told apart from the other arms"
            )
        known = {d: {**c, PRECISION_ARM_KEY: resolved_precision(c, read_platform(Path(d)))} for d, c in known.items()}
        keys = sorted({key for config in known.values() for key in config if _is_arm_key(key)})
        # a key absent from an older run's config reads as null: keys added later with a null default that means
        # "as before" (seed_data, seed_model) must not split the old runs from the new ones. A precision not
        # recorded splits nothing by itself: it sides with the one precision the others recorded, if one.
        differing = [k for k in keys if len(_arm_values(known.values(), k)) > 1]
        for run_dir, config in known.items():
            if differing:
                arm = ", ".join(f"{k}={arm_value(config, k)}" for k in differing)
                labels[run_dir] = f"{sampler} [{arm}]"
        if differing:
            notes.append(f"{task}/{model}/{sampler}: runs differ in {', '.join(differing)}; plotted as separate arms")
    if not labels:
        return cycles
    return cycles.assign(sampler=[labels.get(d, s) for d, s in zip(cycles["run_dir"], cycles["sampler"])])


# Config keys whose value (when not null) means a run's data were generated rather than read from the dataset
# its task is named after (`mpii_cpu` writes stick figures for task=mpii). Such runs are never set against
# the paper's numbers for that dataset.
GENERATED_DATA_KEYS = ("task.generate_people",)
NOT_A_PAPER_TASK = "generated data"  # what such a task maps to: no paper task has this name


def _generated_by(config: dict[str, str] | None) -> str | None:
    for key in GENERATED_DATA_KEYS:
        value = (config or {}).get(key)
        if value not in (None, "None", "null", "", "false", "False", "0"):
            return f"{key}={value}"
    return None


def without_generated_data(
    cycles: pd.DataFrame, paper_task_map: dict[str, str], configs: dict[str, dict[str, str] | None]
) -> tuple[dict[str, str], list[str]]:
    """The paper-task mapping with every task that has a run on generated data taken out, plus one note each.
    `configs`: run_dir -> config (`LoadedRuns.configs`)."""
    mapping, notes = dict(paper_task_map), []
    for task, run_dirs in cycles.groupby("task")["run_dir"]:
        marks = sorted({mark for d in run_dirs.unique() if (mark := _generated_by(configs.get(d)))})
        if marks:
            mapping[task] = NOT_A_PAPER_TASK
            notes.append(
                f"{task}: runs on generated data ({', '.join(marks)}), so they are not compared with the "
                f"paper's numbers for that dataset"
            )
    return mapping, notes


def load_cycles(run_roots: list[Path]) -> LoadedRuns:
    """All cycles.csv below the roots, as one frame (one row per run × cycle)."""
    notes: list[str] = []
    frames = []
    for path in find_cycles_files(run_roots):
        cycles = read_cycles_csv(path)
        if cycles.empty:
            notes.append(f"{path}: header only, no finished cycle yet; skipped")
            continue
        frames.append(_drop_repeated_cycles(cycles, path, notes))
    if not frames:
        roots = ", ".join(str(root) for root in run_roots)
        raise FigureDataError(f"no finished cycle in any {CYCLES_FILE} under {roots}")
    cycles = pd.concat(frames, ignore_index=True)
    configs = read_run_configs(cycles)
    cycles = split_arms(cycles, notes, configs)
    cycles = _keep_one_dir_per_run(cycles, notes)
    notes += mixed_platform_notes(cycles)
    cycles = cycles.sort_values([*RUN_KEY, "cycle"], ignore_index=True)
    return LoadedRuns(cycles=cycles, notes=notes, configs=configs)

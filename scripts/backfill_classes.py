"""Classes of the picks of runs made before selected.csv had a `classes` column, for al-plot's query diagnostics.

    python scripts/backfill_classes.py outputs/reference/cifar10_cpu outputs/reference/cifar10_cpu_control \
        --check-checkpoint outputs/cifar10_cpu_control/<run>/checkpoint.pt

For every run directory below the roots whose selected.csv has no `classes`, the task is built from the run's
own config.yaml (as the runner built it: same data root, same pool order) and asked for the classes of the
points the run labeled (`Task.labeled_class_names`); they go into a separate `selected_classes.csv`
(pool_index, classes) beside selected.csv, which stays as the runner wrote it. The classes are read from the
data as it is now: `--check-checkpoint` compares the data with the fingerprint a run's checkpoint recorded
(refuses on any difference), since committed reference runs keep no checkpoint of their own.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from al_runner import rundir  # noqa: E402
from al_runner.analysis.queries import BACKFILLED_CLASSES_CSV  # noqa: E402
from al_runner.schema import CLASSES_SEPARATOR, SELECTED_CSV  # noqa: E402


def runs_without_classes(roots: list[Path]) -> list[Path]:
    found = []
    for root in roots:
        for selected in sorted(Path(root).rglob(SELECTED_CSV)):
            with open(selected, newline="") as f:
                header = next(csv.reader(f))
            if "classes" not in header:
                found.append(selected.parent)
    return found


def build_task(run_dir: Path, built: dict):
    """The run's task from its config.yaml; one build per distinct task config."""
    cfg = OmegaConf.load(run_dir / rundir.CONFIG_FILE)
    key = OmegaConf.to_yaml(cfg.task, resolve=True) + OmegaConf.to_yaml(cfg.paths, resolve=True)
    if key not in built:
        built[key] = instantiate(cfg.task.build)
    return built[key]


def write_classes(run_dir: Path, task) -> int:
    with open(run_dir / SELECTED_CSV, newline="") as f:
        indices = [int(row["pool_index"]) for row in csv.DictReader(f)]
    names = task.labeled_class_names(torch.tensor(indices, dtype=torch.long))
    if names is None:
        return 0
    with open(run_dir / BACKFILLED_CLASSES_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pool_index", "classes"])
        writer.writerows([i, CLASSES_SEPARATOR.join(point)] for i, point in zip(indices, names))
    return len(indices)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument(
        "--check-checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint.pt of a run on the same data: its data fingerprint must match",
    )
    args = parser.parse_args(argv)
    # each checkpoint read once, each built task fingerprinted and checked once (not once per run)
    recorded = {c: torch.load(c, map_location="cpu", weights_only=False)["data"] for c in args.check_checkpoint}
    built: dict = {}
    checked: set[int] = set()
    for run_dir in runs_without_classes(args.roots):
        task = build_task(run_dir, built)
        if recorded and id(task) not in checked:
            fingerprint = task.fingerprint()
            for checkpoint, data in recorded.items():
                changes = rundir.data_changes(data, fingerprint)
                if changes:
                    print(f"error: the data differ from {checkpoint}'s: {'; '.join(changes)}", file=sys.stderr)
                    return 2
            checked.add(id(task))
        print(f"{run_dir}: {write_classes(run_dir, task)} picks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

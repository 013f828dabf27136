"""Copy a sweep's small result files into outputs/reference/<name>/ (committed), leaving checkpoints behind.

    python scripts/collect_reference.py outputs/cifar10_cpu outputs/reference/cifar10_cpu

Copied per run directory: config.yaml, cycles.csv, selected.csv, metric_details.csv, platform.json (al-run.log with
--logs), and test_scores.csv for
the samplers named by --test-scores (Fig. 8 reads the learning-loss run; the other test_scores files are
large and not needed for any figure); per sweep: sweep.csv and multirun.yaml (its plan, from which al-plot names
the runs a partial sweep is missing). Runs without a cycles.csv yet (still in cycle 0), and runs with fewer
cycles than their config's schedule.cycles (still going; --include-unfinished copies them), are skipped.
Re-running refreshes the copies of runs whose cycles.csv changed, so a partial sweep can be collected again as it
goes on; a run whose committed cycles.csv is the sweep's byte for byte is left as committed (a relaunched sweep
appends its "already finished" lines to the live run's log, and nothing of its results changed).
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
from pathlib import Path

from al_runner.figures.loading import CONFIG_FILES, read_run_config
from al_runner.figures.loss_scatter import FIG8_SAMPLER
from al_runner.figures.sweep_plan import MULTIRUN_FILE, planned_cycles
from al_runner.platform import PLATFORM_FILE
from al_runner.schema import CYCLES_CSV, JOB_LOG, METRIC_DETAILS_CSV, SELECTED_CSV, TEST_SCORES_CSV
from al_runner.sweep import SWEEP_CSV
from al_runner.sweep_status import EPOCH_LINE

# platform.json: the CPU, ISA and builds the runs were made on (al_runner.platform): what a rerun must match to repeat
# them digit for digit
ALWAYS = (CONFIG_FILES[0], CYCLES_CSV, SELECTED_CSV, METRIC_DETAILS_CSV, PLATFORM_FILE)


# a line only a run that trained writes (al_runner.loop's epoch line, the runner's cycle line)
TRAINING_LINE = re.compile(rf"{EPOCH_LINE.pattern}|cycle \d+ \(\d+/\d+\) \| labeled")


def run_sampler(run_dir: Path) -> str | None:
    return (read_run_config(run_dir) or {}).get("sampler.name")


def is_unfinished(run_dir: Path) -> bool:
    """Fewer cycles in cycles.csv than the run's config asked for (unknown counts as finished)."""
    planned = planned_cycles(run_dir)
    if planned is None:
        return False
    with open(run_dir / CYCLES_CSV, newline="", encoding="utf-8") as file:
        reached = {row.get("cycle") for row in csv.DictReader(file)}
    return len(reached) < planned


def already_collected(run_dir: Path, committed: Path, names: list[str]) -> bool:
    """The committed copy holds the same cycles.csv, byte for byte (the same run, as far), and every file of `names`
    the run has; a log counts only if it records training (a run committed without its log, made in an earlier
    sweep folder, would otherwise get one holding only the "already finished" lines of the relaunches that skipped
    it)."""
    copy = committed / CYCLES_CSV
    if not copy.is_file() or copy.read_bytes() != (run_dir / CYCLES_CSV).read_bytes():
        return False
    wanted = [name for name in names if (run_dir / name).is_file()]
    if JOB_LOG in wanted and not TRAINING_LINE.search(
        (run_dir / JOB_LOG).read_text(encoding="utf-8", errors="replace")
    ):
        wanted.remove(JOB_LOG)
    return all((committed / name).is_file() for name in wanted)


def collect(
    sweep: Path,
    dest: Path,
    test_score_samplers: set[str],
    include_unfinished: bool = False,
    logs: bool = False,
    runs_only: bool = False,
) -> list[Path]:
    if not sweep.is_dir():
        raise SystemExit(f"{sweep}: no such sweep directory")
    copied = []
    for run_dir in sorted(p for p in sweep.iterdir() if p.is_dir() and (p / CYCLES_CSV).is_file()):
        if not include_unfinished and is_unfinished(run_dir):
            print(f"skipped (not finished yet; --include-unfinished copies it): {run_dir}")
            continue
        names = (
            list(ALWAYS)
            + ([TEST_SCORES_CSV] if run_sampler(run_dir) in test_score_samplers else [])
            + ([JOB_LOG] if logs else [])
        )
        if already_collected(run_dir, dest / run_dir.name, names):
            continue
        for name in names:
            if (run_dir / name).is_file():
                (dest / run_dir.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / name, dest / run_dir.name / name)
                copied.append(dest / run_dir.name / name)
    for name in () if runs_only else (SWEEP_CSV, MULTIRUN_FILE):  # outcome and plan (al-plot names missing runs)
        if (sweep / name).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sweep / name, dest / name)
            copied.append(dest / name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep directory, e.g. outputs/cifar10_cpu")
    parser.add_argument("dest", type=Path, help="e.g. outputs/reference/cifar10_cpu")
    parser.add_argument(
        "--test-scores", nargs="*", default=[FIG8_SAMPLER], help="samplers whose test_scores.csv is kept"
    )
    parser.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also copy runs that have fewer cycles than their config's schedule.cycles (a run still going)",
    )
    parser.add_argument(
        "--logs", action="store_true", help=f"also copy each run's {JOB_LOG} (its per-epoch losses, timings)"
    )
    parser.add_argument(
        "--runs-only",
        action="store_true",
        help=f"copy the runs' files only, not the sweep's {SWEEP_CSV} and {MULTIRUN_FILE} (a sweep relaunched in "
        "pieces: the committed plan stays, and the last launch's outcome is not the sweep's)",
    )
    args = parser.parse_args(argv)
    copied = collect(args.sweep, args.dest, set(args.test_scores), args.include_unfinished, args.logs, args.runs_only)
    runs = {path.parent for path in copied if path.name == CYCLES_CSV}
    print(f"copied {len(copied)} files from {len(runs)} runs into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`al-plot`: regenerate the paper's figures and tables from run CSVs (`scripts/plot_figures.py` is the same
command for a checkout without an install)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from al_runner.analysis.paper import PAPER_TASKS
from al_runner.figures.errors import FigureDataError
from al_runner.figures.reference import compare_with_reference, comparison_lines, write_comparison
from al_runner.figures.report import generate_report

DESCRIPTION = """\
Regenerate the figures of "Learning Loss for Active Learning" (Fig. 4-8) and a results table from
the CSVs of your sweeps. Every cycles.csv found (recursively) below each --runs directory is one
run; runs are grouped by task, model and sampler, and averaged over seeds.

Writes into --out: fig4_<task>, fig6_<task>, fig7_<task> (learning curves, one per task: 4 for
accuracy, 6 for mAP, 7 for PCKh), fig5_ranking_accuracy, fig8_<task> (predicted loss / uncertainty
vs real loss), each as .png and .pdf, plus results.md / results.csv (last-cycle mean ± std, beside
the paper's numbers only for runs on the paper's datasets) and timing.csv (wall time per phase).
Partial sweeps, sweeps from plain overrides and single runs are fine: what is missing is reported.
"""

EPILOG = """\
example:
  al-plot --runs outputs/cifar10_sweep --runs outputs/cifar10_extra \\
      --out figures/ --paper-task imagefolder=cifar10
  al-plot --runs outputs/demo --out outputs/demo/figures --reference outputs/reference/demo

exit codes: 0 done, 2 bad input (no runs found, empty or malformed CSV; the message names the file).
"""


def parse_paper_task(text: str) -> tuple[str, str]:
    """'imagefolder=cifar10' -> ('imagefolder', 'cifar10')."""
    task, separator, paper_task = text.partition("=")
    if not separator or not task.strip() or paper_task.strip() not in PAPER_TASKS:
        raise argparse.ArgumentTypeError(
            f"expected TASK=PAPER_TASK with PAPER_TASK one of {', '.join(PAPER_TASKS)}, got {text!r}"
        )
    return task.strip(), paper_task.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="al-plot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="a sweep's output directory, searched recursively for cycles.csv (repeat for several sweeps)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="where to write the figures and tables (created if needed)",
    )
    parser.add_argument(
        "--paper-task",
        type=parse_paper_task,
        action="append",
        default=[],
        metavar="TASK=PAPER_TASK",
        help="compare TASK's runs with the paper's numbers for PAPER_TASK "
        f"({', '.join(PAPER_TASKS)}), e.g. imagefolder=cifar10 for a JPEG copy of CIFAR-10 (repeatable)",
    )
    parser.add_argument(
        "--samplers",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        metavar="A,B,...",
        help="only these samplers' runs (e.g. random,entropy,learning_loss): the figures, the tables and the "
        "families of the paired tests hold them alone",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="committed reference runs (e.g. outputs/reference/demo) to compare with, per sampler and cycle: the mean "
        "here against the reference's mean ± std over seeds (writes reference_comparison.csv; repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = generate_report(args.runs, args.out, dict(args.paper_task), args.samplers)
    except FigureDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("wrote:")
    for path in report.written:
        print(f"  {path}")
    for source in report.fig8_sources:
        print(source)
    if report.notes:
        print("missing or partial data:")
        for note in report.notes:
            print(f"  - {note}")
    print("\n".join(report.summary))  # AUBC, last cycle, significant wins (the statistics are in results.md)
    if args.reference:
        try:
            comparison = compare_with_reference(args.runs, args.reference)
        except FigureDataError as error:
            print(f"error: --reference: {error}", file=sys.stderr)
            return 2
        print("\n".join(comparison_lines(comparison, args.reference)))
        print(f"  (written to {write_comparison(comparison, args.out)})")
    return 0


if __name__ == "__main__":  # how a multirun's end writes its report (al_runner.sweep)
    sys.exit(main())

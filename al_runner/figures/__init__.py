"""Figures 4-8 and the results tables of "Learning Loss for Active Learning", regenerated from the runner's CSVs.

Entry point: `generate_report(run_roots, out_dir, paper_task_map)`; CLI: `scripts/plot_figures.py`.
"""

from al_runner.figures.errors import FigureDataError
from al_runner.figures.report import Report, generate_report

__all__ = ["FigureDataError", "Report", "generate_report"]

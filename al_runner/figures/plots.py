"""Matplotlib figures (Agg, object-oriented API: no pyplot, so no global figure state)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from al_runner.analysis.paper import PaperValue
from al_runner.figures.labels import (
    PAPER_SAMPLERS,
    ordered_samplers,
    ranking_variant_label,
    sampler_label,
    sampler_styles,
    task_label,
)
from al_runner.figures.loss_scatter import FIG8_TOP_FRACTION, Fig8Data

BAND_ALPHA = 0.18
MAX_LABELED_TICKS = 12
CAPTION_WIDTH = 72  # characters per title line that fit a 6.4-inch figure at font size 10
# Legends sit outside the axes (right of them, or below): inside, they hid the last points of a curve.
LEGEND_RIGHT = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
LEGEND_BELOW = dict(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
# A log axis spanning at most this many decades is ticked at 1-2-5 steps with plain numbers: matplotlib's
# default labels minor ticks there, and their "2×10⁻¹"-style labels overlap.
NARROW_LOG_DECADES = 2.0


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attach a non-interactive canvas so savefig works without pyplot
    return figure


def save_figure(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf; return their paths."""
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for text in figure.findobj(Text):
        # labels carry config text such as `task.root=${oc.env:...}`: a `$` must print, not start mathtext
        text.set_parse_math(False)
    for path in paths:
        figure.savefig(path, dpi=150)
    return paths


def _thousands(value, _position=None) -> str:
    return f"{value:,.0f}"


def _style_labeled_axis(ax, n_labeled_values) -> None:
    """x = number of labeled points, ticked at the points' actual sizes when there are few of them."""
    values = sorted(set(np.round(n_labeled_values).astype(int)))
    if 0 < len(values) <= MAX_LABELED_TICKS:
        ax.set_xticks(values)
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_xlabel("number of labeled points")
    ax.grid(alpha=0.3)


def _plot_mean_with_band(ax, rows: pd.DataFrame, *, label: str, color: str, linestyle="-", marker: str = "o") -> None:
    """Mean line with a ±1 std band; points averaged over fewer seeds than the line's maximum get hollow markers."""
    rows = rows.sort_values("n_labeled")
    x, mean = rows["n_labeled"].to_numpy(), rows["mean"].to_numpy()
    std = rows["std"].fillna(0.0).to_numpy()  # one seed: no band
    if (rows["n_seeds"] > 1).any():
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=BAND_ALPHA, linewidth=0)
    ax.plot(x, mean, color=color, linestyle=linestyle, marker=marker, markersize=3.5, label=label)
    fewer = (rows["n_seeds"] < rows["n_seeds"].max()).to_numpy()
    if fewer.any():
        ax.plot(
            x[fewer],
            mean[fewer],
            linestyle="none",
            marker=marker,
            markersize=5,
            markerfacecolor="white",
            markeredgecolor=color,
            label="_fewer_seeds",
        )


def _seeds_per_sampler(series: pd.DataFrame) -> str:
    """ "5 seeds per sampler", or each sampler's count (paper order) when they differ."""
    seeds = series.groupby("sampler")["n_seeds"].max()
    if seeds.nunique() == 1:
        count = int(seeds.iloc[0])
        return f"{count} seed{'s' if count != 1 else ''} per sampler"
    return "seeds per sampler: " + ", ".join(
        f"{sampler_label(sampler)} {int(seeds[sampler])}" for sampler in ordered_samplers(seeds.index)
    )


def plot_metric_curves(
    series: pd.DataFrame, *, title: str, metric: str, report_missing_paper_samplers: bool = True
) -> Figure:
    """Fig. 4 / 6 / 7: one line per sampler (paper order), mean ± 1 std over seeds vs number of labeled points.

    `series`: the rows of `aggregate.metric_series` for one task × model. `report_missing_paper_samplers`: name
    the paper's samplers that have no line (off when a sweep's plan says which samplers were asked for).
    """
    figure = new_figure(6.4, 4.8)
    ax = figure.add_subplot()
    styles = sampler_styles(series["sampler"])
    for sampler in ordered_samplers(series["sampler"]):
        color, linestyle = styles[sampler]
        _plot_mean_with_band(
            ax, series[series["sampler"] == sampler], label=sampler_label(sampler), color=color, linestyle=linestyle
        )
    _style_labeled_axis(ax, series["n_labeled"])
    ax.set_ylabel(metric)
    ax.legend(**LEGEND_RIGHT)
    caption = [_seeds_per_sampler(series) + _band_caption(series)]
    missing = [sampler_label(sampler) for sampler in PAPER_SAMPLERS if sampler not in set(series["sampler"])]
    if missing and report_missing_paper_samplers:
        caption.append(f"no runs: {', '.join(missing)}")
    if (series["n_seeds"] < series.groupby("sampler")["n_seeds"].transform("max")).any():
        caption.append("hollow markers: averaged over fewer seeds (runs still going or stopped)")
    ax.set_title("\n".join([title, *(textwrap.fill(line, CAPTION_WIDTH) for line in caption)]), fontsize=10)
    return figure


def _band_caption(series: pd.DataFrame) -> str:
    """What the shaded band is: ±1 std over seeds, only where some line has two seeds or more."""
    if (series["n_seeds"] <= 1).all():
        return "; one seed: no std band"
    if (series["n_seeds"] <= 1).any():
        return "; mean ± 1 std over seeds (no band where one seed)"
    return "; mean ± 1 std over seeds"


EXPERIMENT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_ranking_accuracy(
    series: pd.DataFrame, *, show_model: bool, dataset_names: dict[str, str] | None = None
) -> Figure:
    """Fig. 5: ranking accuracy of the loss-prediction module per cycle; one line per sampler with a module
    (× task × model). Each sampler has its own colour and line style (the same as in the learning curves: no two
    samplers share both); several tasks or models differ by marker. `series`: `aggregate.ranking_series`.
    `dataset_names`: task -> what to call its data ("CIFAR-10", an ImageFolder root's folder name).
    """
    names = dataset_names or {}
    figure = new_figure(8.4, 4.8)
    ax = figure.add_subplot()
    experiments = list(dict.fromkeys(zip(series["task"], series["model"])))
    show_task = len({task for task, _ in experiments}) > 1
    styles = sampler_styles(series["sampler"])
    for (task, model, sampler), rows in series.groupby(["task", "model", "sampler"], sort=False):
        seeds = int(rows["n_seeds"].max())
        label = ranking_variant_label(task, sampler, show_task=show_task, dataset=names.get(task))
        label += f" ({model})" if show_model else ""
        label += f", {seeds} seed{'s' if seeds != 1 else ''}"  # lines differ in seeds; the title has no room for all
        color, linestyle = styles[sampler]
        marker = EXPERIMENT_MARKERS[experiments.index((task, model)) % len(EXPERIMENT_MARKERS)]
        _plot_mean_with_band(ax, rows, label=label, color=color, linestyle=linestyle, marker=marker)
    _style_labeled_axis(ax, series["n_labeled"])
    ax.set_ylabel("ranking accuracy")
    ax.legend(**LEGEND_RIGHT)  # outside: lines cross everywhere
    caption = _band_caption(series).removeprefix("; ")
    if not show_task:
        task = experiments[0][0]
        caption = f"{names.get(task) or task_label(task)}; {caption}"
    if (series["n_seeds"] < series.groupby(["task", "model", "sampler"])["n_seeds"].transform("max")).any():
        caption += "; hollow markers: fewer seeds"
    ax.set_title(f"Fig. 5: ranking accuracy of the loss-prediction module\n{caption}", fontsize=10)
    return figure


def _log_safe(values: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Values ≤ 0 cannot sit on a log axis: draw them at the smallest positive value. Returns (values, n moved,
    floor)."""
    positive = values[values > 0]
    floor = float(positive.min()) if positive.size else 1e-12
    moved = int((values <= 0).sum())
    return np.where(values > 0, values, floor), moved, floor


def narrow_log_ticks(low: float, high: float) -> list[float]:
    """Ticks for a log axis over [low, high] spanning few decades: 1-2-5 steps, or, when fewer than two of those
    fall inside (e.g. 0.9-1.1), up to five evenly spaced round numbers."""
    exponents = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    ticks = [m * 10.0**e for e in exponents for m in (1, 2, 5) if low <= m * 10.0**e <= high]
    if len(ticks) >= 2:
        return ticks
    return [
        float(t) for t in MaxNLocator(nbins=5, steps=[1, 2, 5, 10]).tick_values(low, high) if low <= t <= high and t > 0
    ]


def _style_log_axis(ax, values: np.ndarray) -> None:
    """Log x axis whose tick labels never overlap. matplotlib labels minor ticks ("2×10⁻²", "3×10⁻²", ...)
    over ranges of one or two decades, and they overlap: there, fixed 1-2-5 ticks as plain numbers instead;
    over wider ranges, its decade ticks, minor ones unlabelled."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    positive = values[values > 0]
    if positive.size and np.log10(positive.max() / positive.min()) <= NARROW_LOG_DECADES:
        ax.xaxis.set_major_locator(FixedLocator(narrow_log_ticks(float(positive.min()), float(positive.max()))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))


def _format_r(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2f}"


def _scatter_panel(ax, real_loss, score, top, *, score_name: str, correlation: float, paper: PaperValue | None) -> None:
    percent = round(100 * FIG8_TOP_FRACTION)
    ax.scatter(real_loss[~top], score[~top], s=6, color="tab:blue", alpha=0.45, linewidths=0, label="other points")
    ax.scatter(
        real_loss[top],
        score[top],
        s=6,
        color="tab:red",
        alpha=0.7,
        linewidths=0,
        label=f"top {percent} % by {score_name}",
    )
    _style_log_axis(ax, real_loss)
    ax.set_ylabel(score_name)
    ax.grid(alpha=0.3)
    text = f"Pearson r = {_format_r(correlation)}"
    if paper is not None:
        text += f" (paper, MPII: {paper.value:.2f})"
    ax.set_title(text, fontsize=9)  # above the panel, not over its points
    ax.legend(markerscale=2.5, fontsize=8, **LEGEND_BELOW)


def plot_loss_scatter(data: Fig8Data, *, title: str, paper: dict[str, PaperValue] | None = None) -> Figure:
    """Fig. 8: predicted loss vs real loss, and the task's uncertainty vs real loss, top fraction by score
    highlighted."""
    paper = paper or {}
    figure = new_figure(11, 4.6)
    left, right = figure.subplots(1, 2)
    real_loss, moved, floor = _log_safe(data.points["real_loss"].to_numpy())
    x_label = "real loss (log scale)"
    if moved:
        x_label += f"; {moved} value(s) ≤ 0 drawn at {floor:.1e}"
    for ax, column, name, top, correlation in (
        (left, "predicted_loss", "predicted loss", data.predicted_loss_top, data.predicted_loss_correlation),
        (
            right,
            "uncertainty",
            data.run.uncertainty_name.replace("_", " "),
            data.uncertainty_top,
            data.uncertainty_correlation,
        ),
    ):
        _scatter_panel(
            ax,
            real_loss,
            data.points[column].to_numpy(),
            top,
            score_name=name,
            correlation=correlation,
            paper=paper.get(column),
        )
        ax.set_xlabel(x_label)
    figure.suptitle(title, fontsize=10)
    return figure


def experiment_title(
    task: str, model: str, *, show_model: bool, figure_number: int | None, dataset: str | None = None
) -> str:
    """ "Fig. 6: VOC" when the runs are on the paper's dataset (figure_number given), else "Learning curve:
    voc_synth": a curve on other data does not claim to be the paper's figure. `dataset`: what to call the data
    (`labels.dataset_label`: "CIFAR-10", an ImageFolder root's folder name); default: the task's name."""
    model_part = f" ({model})" if show_model else ""
    if figure_number:
        return f"Fig. {figure_number}: {dataset or task_label(task)}{model_part}"
    return f"Learning curve: {dataset or task}{model_part}"

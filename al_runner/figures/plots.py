"""Matplotlib figures (Agg, object-oriented API: no pyplot, so no global figure state)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from al_runner.figures.labels import (
    PAPER_SAMPLERS,
    ordered_samplers,
    ranking_variant_label,
    sampler_colors,
    sampler_label,
    task_label,
)
from al_runner.figures.loss_scatter import FIG8_TOP_FRACTION, Fig8Data
from al_runner.paper_results import PaperValue

BAND_ALPHA = 0.18
MAX_LABELED_TICKS = 12
CAPTION_WIDTH = 72  # characters per title line that fit a 6.4-inch figure at font size 10


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attach a non-interactive canvas so savefig works without pyplot
    return figure


def save_figure(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf; return their paths."""
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
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


def _plot_mean_with_band(ax, rows: pd.DataFrame, *, label: str, color: str, linestyle: str = "-") -> None:
    """Mean line with a ±1 std band; points averaged over fewer seeds than the line's maximum get hollow markers."""
    rows = rows.sort_values("n_labeled")
    x, mean = rows["n_labeled"].to_numpy(), rows["mean"].to_numpy()
    std = rows["std"].fillna(0.0).to_numpy()  # one seed: no band
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=BAND_ALPHA, linewidth=0)
    ax.plot(x, mean, color=color, linestyle=linestyle, marker="o", markersize=3.5, label=label)
    fewer = (rows["n_seeds"] < rows["n_seeds"].max()).to_numpy()
    if fewer.any():
        ax.plot(x[fewer], mean[fewer], linestyle="none", marker="o", markersize=5,
                markerfacecolor="white", markeredgecolor=color, label="_fewer_seeds")


def _seeds_per_sampler(series: pd.DataFrame) -> str:
    """"5 seeds per sampler", or each sampler's count (paper order) when they differ."""
    seeds = series.groupby("sampler")["n_seeds"].max()
    if seeds.nunique() == 1:
        count = int(seeds.iloc[0])
        return f"{count} seed{'s' if count != 1 else ''} per sampler"
    return "seeds per sampler: " + ", ".join(
        f"{sampler_label(sampler)} {int(seeds[sampler])}" for sampler in ordered_samplers(seeds.index)
    )


def plot_metric_curves(series: pd.DataFrame, *, title: str, metric: str) -> Figure:
    """Fig. 4 / 6 / 7: one line per sampler (paper order), mean ± 1 std over seeds vs number of labeled points.

    `series`: the rows of `aggregate.metric_series` for one task × model.
    """
    figure = new_figure(6.4, 4.8)
    ax = figure.add_subplot()
    colors = sampler_colors(series["sampler"])
    for sampler in ordered_samplers(series["sampler"]):
        _plot_mean_with_band(ax, series[series["sampler"] == sampler], label=sampler_label(sampler), color=colors[sampler])
    _style_labeled_axis(ax, series["n_labeled"])
    ax.set_ylabel(metric)
    ax.legend(loc="lower right")
    one_seed_only = (series["n_seeds"] == 1).all()
    caption = [_seeds_per_sampler(series) + ("; no std band" if one_seed_only else "; mean ± 1 std")]
    missing = [sampler_label(sampler) for sampler in PAPER_SAMPLERS if sampler not in set(series["sampler"])]
    if missing:
        caption.append(f"no runs: {', '.join(missing)}")
    if (series["n_seeds"] < series.groupby("sampler")["n_seeds"].transform("max")).any():
        caption.append("hollow markers: averaged over fewer seeds (runs still going or stopped)")
    ax.set_title("\n".join([title, *(textwrap.fill(line, CAPTION_WIDTH) for line in caption)]), fontsize=10)
    return figure


def plot_ranking_accuracy(series: pd.DataFrame, *, show_model: bool) -> Figure:
    """Fig. 5: ranking accuracy of the loss-prediction module per cycle; one line per task (× model) and variant.

    Colour = task, solid = learn loss, dashed = learn loss mse, dotted = any other sampler with a module.
    `series`: `aggregate.ranking_series`.
    """
    figure = new_figure(8.4, 4.8)
    ax = figure.add_subplot()
    experiments = list(dict.fromkeys(zip(series["task"], series["model"])))
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
    styles = {"learning_loss": "-", "learning_loss_mse": "--"}
    for (task, model, sampler), rows in series.groupby(["task", "model", "sampler"], sort=False):
        seeds = int(rows["n_seeds"].max())
        label = ranking_variant_label(task, sampler) + (f" ({model})" if show_model else "")
        label += f", {seeds} seed{'s' if seeds != 1 else ''}"  # lines differ in seeds; the title has no room for all
        color = palette[experiments.index((task, model)) % len(palette)]
        _plot_mean_with_band(ax, rows, label=label, color=color, linestyle=styles.get(sampler, ":"))
    _style_labeled_axis(ax, series["n_labeled"])
    ax.set_ylabel("ranking accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside: lines cross everywhere
    caption = "mean ± 1 std over seeds"
    if (series["n_seeds"] < series.groupby(["task", "model", "sampler"])["n_seeds"].transform("max")).any():
        caption += "; hollow markers: fewer seeds"
    ax.set_title(f"Fig. 5: ranking accuracy of the loss-prediction module\n{caption}", fontsize=10)
    return figure


def _log_safe(values: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Values ≤ 0 cannot sit on a log axis: draw them at the smallest positive value. Returns (values, n moved, floor)."""
    positive = values[values > 0]
    floor = float(positive.min()) if positive.size else 1e-12
    moved = int((values <= 0).sum())
    return np.where(values > 0, values, floor), moved, floor


def _format_r(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2f}"


def _scatter_panel(ax, real_loss, score, top, *, score_name: str, correlation: float, paper: PaperValue | None) -> None:
    percent = round(100 * FIG8_TOP_FRACTION)
    ax.scatter(real_loss[~top], score[~top], s=6, color="tab:blue", alpha=0.45, linewidths=0, label="other points")
    ax.scatter(real_loss[top], score[top], s=6, color="tab:red", alpha=0.7, linewidths=0,
               label=f"top {percent} % by {score_name}")
    ax.set_xscale("log")
    ax.set_ylabel(score_name)
    ax.grid(alpha=0.3)
    text = f"Pearson r = {_format_r(correlation)}"
    if paper is not None:
        text += f"\n(paper, MPII: {paper.value:.2f})"
    ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left",
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.85, edgecolor="0.7"))
    ax.legend(loc="lower right", markerscale=2.5, fontsize=8)


def plot_loss_scatter(data: Fig8Data, *, title: str, paper: dict[str, PaperValue] | None = None) -> Figure:
    """Fig. 8: predicted loss vs real loss, and the task's uncertainty vs real loss, top fraction by score highlighted."""
    paper = paper or {}
    figure = new_figure(11, 4.6)
    left, right = figure.subplots(1, 2)
    real_loss, moved, floor = _log_safe(data.points["real_loss"].to_numpy())
    x_label = "real loss (log scale)"
    if moved:
        x_label += f"; {moved} value(s) ≤ 0 drawn at {floor:.1e}"
    for ax, column, name, top, correlation in (
        (left, "predicted_loss", "predicted loss", data.predicted_loss_top, data.predicted_loss_correlation),
        (right, "uncertainty", data.run.uncertainty_name.replace("_", " "), data.uncertainty_top, data.uncertainty_correlation),
    ):
        _scatter_panel(ax, real_loss, data.points[column].to_numpy(), top,
                       score_name=name, correlation=correlation, paper=paper.get(column))
        ax.set_xlabel(x_label)
    figure.suptitle(title, fontsize=10)
    return figure


def experiment_title(task: str, model: str, *, show_model: bool, figure_number: int | None) -> str:
    name = task_label(task) + (f" ({model})" if show_model else "")
    prefix = f"Fig. {figure_number}" if figure_number else "Learning curve"
    return f"{prefix}: {name}"

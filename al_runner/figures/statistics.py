"""Figures of the statistics (draw only: the numbers come from `al_runner.analysis`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from al_runner.figures.labels import sampler_label
from al_runner.figures.plots import new_figure

CORRECTION_TITLES = {
    "none": "paired t-test, p < 0.05 per cycle (Ash et al.)",
    "holm": "paired t-test, Holm-corrected within each cycle",
}


def plot_penalty_matrices(matrices: dict[str, pd.DataFrame], title: str):
    """One heatmap per correction: cell (row, column) = how often row beat column significantly; a NaN cell
    (`statistics_report.without_untestable_pairs`: the pair never shared two seeds) reads "not testable"."""
    n = max(len(m) for m in matrices.values())
    # cells about half an inch wide, so 10 samplers' numbers do not run into each other
    figure = new_figure(len(matrices) * max(5.2, 2.8 + 0.62 * n), max(4.8, 3.0 + 0.42 * n))
    axes = figure.subplots(1, len(matrices), squeeze=False)[0]
    vmax = max(1.0, max(float(np.nanmax(m.to_numpy(dtype=float), initial=0.0)) for m in matrices.values()))
    for ax, (correction, matrix) in zip(axes, matrices.items()):
        values = matrix.to_numpy(dtype=float)
        image = ax.imshow(values, cmap="Reds", vmin=0.0, vmax=vmax)
        labels = [sampler_label(s) for s in matrix.index]
        column_sums = np.nansum(values, axis=0)  # how often each sampler was beaten, in all (tested pairs only)
        tested = [np.isfinite(np.delete(values[:, j], j)).any() for j in range(len(labels))]
        ax.set_xticks(
            range(len(labels)),
            [
                f"{label} (Σ {s:.2f})" if ok else f"{label} (not testable)"
                for label, s, ok in zip(labels, column_sums, tested)
            ],
            rotation=40,
            ha="right",
            rotation_mode="anchor",
        )
        ax.set_yticks(range(len(labels)), labels)
        for (i, j), value in np.ndenumerate(values):
            if i != j and np.isnan(value):
                ax.text(j, i, "not\ntestable", ha="center", va="center", fontsize=6, color="dimgray")
            elif i != j:
                ax.text(
                    j,
                    i,
                    "0" if value == 0 else f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > 0.6 * vmax else "black",
                )
        ax.set_xlabel("column: beaten (Σ = how often, in all)")
        ax.set_ylabel("row: won")
        ax.set_title(CORRECTION_TITLES.get(correction, correction), fontsize=9)
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="weighted count of significant wins")
    figure.suptitle(title, fontsize=10)
    return figure

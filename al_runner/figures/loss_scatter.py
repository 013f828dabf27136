"""Data for Fig. 8: which run to use, the 2,000 sampled test points, the top-20 % masks and the correlations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from al_runner.figures.errors import FigureDataError
from al_runner.figures.loading import read_test_scores_csv
from al_runner.schema import TEST_SCORES_CSV as TEST_SCORES_FILE

FIG8_SAMPLER = "learning_loss"
FIG8_POINTS = 2_000
FIG8_TOP_FRACTION = 0.2
FIG8_SAMPLING_SEED = 0  # fixed so that the figure is the same every time it is regenerated


@dataclass
class Fig8Run:
    task: str
    model: str
    seed: int
    seeds_available: list[int]  # seeds of this task/model's learn-loss runs
    run_dir: Path
    uncertainty_name: str = "uncertainty"  # what the task's uncertainty measures (cycles.csv), the right panel's label


@dataclass
class Fig8Data:
    run: Fig8Run
    cycle: int
    n_test_points: int  # in the file's last cycle
    points: pd.DataFrame  # the sampled points
    predicted_loss_top: np.ndarray  # bool mask over `points`: top fraction by predicted loss
    uncertainty_top: np.ndarray  # bool mask over `points`: top fraction by the task's uncertainty
    predicted_loss_correlation: float
    uncertainty_correlation: float
    # Fig. 5's pair measure over *all* test points of the cycle (not the sample): does the module rank the real
    # losses better than the task's own uncertainty does? NaN when undefined.
    predicted_loss_ranking_accuracy: float = float("nan")
    uncertainty_ranking_accuracy: float = float("nan")


def choose_fig8_runs(cycles: pd.DataFrame) -> tuple[list[Fig8Run], list[str]]:
    """Per task × model, the learn-loss run with the lowest seed that has a test_scores.csv; plus notes."""
    runs, notes = [], []
    learn_loss = cycles[cycles["sampler"] == FIG8_SAMPLER]
    for (task, model), rows in learn_loss.groupby(["task", "model"]):
        run_dirs = rows.groupby("seed")["run_dir"].first().sort_index()
        with_scores = [seed for seed, run_dir in run_dirs.items() if (Path(run_dir) / TEST_SCORES_FILE).is_file()]
        if not with_scores:
            notes.append(f"{task} ({model}): no {TEST_SCORES_FILE} in any learn-loss run; no Fig. 8")
            continue
        if with_scores[0] != run_dirs.index[0]:
            notes.append(
                f"{task} ({model}): learn-loss seed {run_dirs.index[0]} has no {TEST_SCORES_FILE}; Fig. 8 uses "
                f"seed {with_scores[0]}"
            )
        seed = int(with_scores[0])
        name = rows.loc[rows["seed"] == seed, "uncertainty"].iloc[0]
        runs.append(Fig8Run(task, model, seed, [int(s) for s in run_dirs.index], Path(run_dirs[seed]), name))
    for task, model in cycles[["task", "model"]].drop_duplicates().itertuples(index=False):
        if learn_loss[(learn_loss["task"] == task) & (learn_loss["model"] == model)].empty:
            notes.append(f"{task} ({model}): no learn-loss run; no Fig. 8")
    return runs, notes


def sample_test_points(
    scores: pd.DataFrame, n_points: int = FIG8_POINTS, seed: int = FIG8_SAMPLING_SEED
) -> pd.DataFrame:
    """`n_points` test points drawn without replacement (all of them if there are fewer), in file order."""
    if len(scores) <= n_points:
        return scores.reset_index(drop=True)
    chosen = np.random.default_rng(seed).choice(len(scores), size=n_points, replace=False)
    return scores.iloc[np.sort(chosen)].reset_index(drop=True)


def top_fraction_mask(values: np.ndarray, fraction: float = FIG8_TOP_FRACTION) -> np.ndarray:
    """True for the `fraction` of points with the highest values (the ones an active learner would pick)."""
    values = np.asarray(values, dtype=float)
    n_top = int(round(fraction * len(values)))
    mask = np.zeros(len(values), dtype=bool)
    if n_top > 0:
        mask[np.argsort(-values, kind="stable")[:n_top]] = True
    return mask


def pearson_correlation(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")  # undefined; printed as "n/a"
    return float(np.corrcoef(x, y)[0, 1])


def ranking_accuracy_of(scores: np.ndarray, real_loss: np.ndarray) -> float:
    """The exact pair count of `al_runner.learning_loss.ranking_accuracy` (torch, imported only here)."""
    import torch

    from al_runner.learning_loss import ranking_accuracy  # imports torch: kept out of al-plot's start-up

    as_tensor = lambda values: torch.tensor(
        np.array(values, dtype=np.float64)
    )  # a copy: pandas may hand out read-only views
    return ranking_accuracy(as_tensor(scores), as_tensor(real_loss))


def load_fig8_data(run: Fig8Run) -> Fig8Data:
    """Read the run's test scores, keep its last cycle, sample points, and compute masks and correlations."""
    path = run.run_dir / TEST_SCORES_FILE
    scores = read_test_scores_csv(path)
    cycle = int(scores["cycle"].max())
    scores = scores[scores["cycle"] == cycle]
    if scores["predicted_loss"].isna().any():
        raise FigureDataError(f"{path}: predicted_loss is empty for some rows, but this is a learn-loss run")
    points = sample_test_points(scores)
    real = points["real_loss"].to_numpy()
    return Fig8Data(
        run=run,
        cycle=cycle,
        n_test_points=len(scores),
        points=points,
        predicted_loss_top=top_fraction_mask(points["predicted_loss"].to_numpy()),
        uncertainty_top=top_fraction_mask(points["uncertainty"].to_numpy()),
        predicted_loss_correlation=pearson_correlation(points["predicted_loss"].to_numpy(), real),
        uncertainty_correlation=pearson_correlation(points["uncertainty"].to_numpy(), real),
        predicted_loss_ranking_accuracy=ranking_accuracy_of(scores["predicted_loss"], scores["real_loss"]),
        uncertainty_ranking_accuracy=ranking_accuracy_of(scores["uncertainty"], scores["real_loss"]),
    )

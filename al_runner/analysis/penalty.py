"""The pairwise penalty matrix (Ash et al., ICLR 2020, "pairwise comparisons"; Lüth et al., NeurIPS 2023).

Entry (row i, column j): how often sampler i beat sampler j significantly, summed over experiments, each
experiment weighted 1 in total: per experiment, every cycle after the first selection adds 1 / L (L =
such cycles) when the paired test of that cycle says i > j. So with one experiment an entry is the fraction
of its selection cycles where row beat column; a column's sum says how often a sampler was beaten.

Ash et al. count an uncorrected two-sided paired t-test at alpha 0.05 per cycle; `penalty_matrix` gives that
count (`correction="none"`) and the stricter one with Holm-corrected p-values within each cycle ("holm").
Cycle 0 is left out: no sampler has selected anything yet (differences there come from training alone).
"""

from __future__ import annotations

import pandas as pd

CORRECTIONS = {"none": "p_t", "holm": "p_t_holm"}  # which p-value decides "significant"


def penalty_matrix(
    per_cycle: pd.DataFrame, samplers: list[str], correction: str = "none", alpha: float = 0.05
) -> pd.DataFrame:
    """Square frame, index = winners (rows), columns = losers, from `paired.per_cycle_tests`."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction} not supported, choose from {', '.join(CORRECTIONS)}")
    matrix = pd.DataFrame(0.0, index=pd.Index(samplers, name="row beat column"), columns=samplers)
    selected = per_cycle[per_cycle["cycle"] >= 1]
    p_column = CORRECTIONS[correction]
    for _, experiment in selected.groupby(["task", "model"], sort=True):
        weight = 1.0 / experiment["cycle"].nunique()
        wins = experiment[experiment[p_column] < alpha]
        for row in wins.itertuples():
            winner, loser = (row.sampler_a, row.sampler_b) if row.mean_diff > 0 else (row.sampler_b, row.sampler_a)
            if winner in matrix.index and loser in matrix.columns:
                matrix.loc[winner, loser] += weight
    return matrix


def penalty_long(matrix: pd.DataFrame, correction: str) -> pd.DataFrame:
    """The matrix as rows (winner, loser, value, correction), for a CSV a script can filter."""
    long = matrix.stack().rename("value").reset_index()
    long.columns = ["winner", "loser", "value"]
    return long[long["winner"] != long["loser"]].assign(correction=correction).reset_index(drop=True)

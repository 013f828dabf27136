"""Hybrids of uncertainty and diversity, for every task (they need only what all three tasks give)."""

from __future__ import annotations

import math

from al_runner.samplers.base import Sampler, top_k
from al_runner.samplers.diversity import k_center_greedy


class PredictedLossThenCoreSet(Sampler):
    """Predicted loss plus diversity (the future work named in the paper's conclusion): keep the ⌈βK⌉
    candidates with the highest predicted loss, then pick K of them by K-Center-Greedy on the embedding,
    with the labeled set as initial centers (as core-set does).

    β = 1 is learning loss; β ≥ M/K is core-set on the whole subset. Works for detection and pose too: it
    needs only the predicted loss and the embedding every task's model gives. Scores are the core-set
    distances at pick time (the greedy order).
    """

    needs = frozenset({"predicted_loss", "embedding", "labeled_embedding"})

    def __init__(self, beta: float = 2.0, chunk_size: int = 4096):
        if float(beta) < 1.0:
            raise ValueError(f"beta must be >= 1 (keep at least K candidates by predicted loss), got {beta}")
        self.beta, self.chunk_size = float(beta), int(chunk_size)

    def select(self, candidates, k, generator):
        shortlist = top_k(candidates.predicted_loss, min(len(candidates), math.ceil(self.beta * k)))
        positions, distances = k_center_greedy(
            candidates.embedding[shortlist], candidates.labeled_embedding, k, self.chunk_size
        )
        return shortlist.cpu()[positions], distances

    def score(self, candidates, generator):  # pragma: no cover - select is overridden
        raise NotImplementedError("the hybrid's picks are defined by the greedy order; use select")

"""Learning loss (Yoo & Kweon, CVPR 2019): rank by the loss-prediction module's predicted loss."""

from __future__ import annotations

from al_runner.samplers.base import Sampler


class PredictedLossSampler(Sampler):
    """Learning loss (both the ranking and the MSE variant): highest predicted loss first."""

    needs = frozenset({"predicted_loss"})

    def score(self, candidates, generator):
        return candidates.predicted_loss

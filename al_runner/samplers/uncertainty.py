"""Uncertainty sampling: pure score functions over class probabilities, and the samplers that rank by them.

Each score function takes probabilities [N, C] (or T stochastic passes [N, C, T], baal's layout) and
returns [N] scores, higher = picked first, as baal's heuristics (baal/active/heuristics/heuristics.py).
They are written here rather than imported from baal because baal's heuristics work on numpy arrays and
return a ranking, where our `Candidates` contract keeps tensors on the device and shares one stable
`top_k`; `pip install baal` would also pull jupyter. tests/test_samplers_family.py checks BALD against
baal's published formula (scipy's xlogy) and its test fixture's ranking.
"""

from __future__ import annotations

import torch

from al_runner.samplers.base import Sampler


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    """-Σ p log p with 0 log 0 = 0 (torch.special.xlogy), as scipy.special.xlogy in baal."""
    return -torch.special.xlogy(p, p).sum(dim)


def entropy_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """Predictive entropy H[p] of [N, C] probabilities.

    References: Shannon entropy as an acquisition function, e.g. Settles, "Active Learning Literature
    Survey" (2009), Sec. 3.1.
    """
    return _entropy(probabilities, 1)


def margin_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """-(p_1 - p_2): the smaller the gap between the two most likely classes, the higher the score.

    References: Scheffer et al., "Active Hidden Markov Models for Information Extraction" (2001);
    Settles (2009), Sec. 3.1 ("margin sampling").
    """
    top2 = probabilities.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])


def least_confidence_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """1 - max_c p_c.

    References: Lewis & Gale, "A Sequential Algorithm for Training Text Classifiers" (1994); Settles (2009).
    """
    return 1.0 - probabilities.max(dim=1).values


def bald_scores(mc_probabilities: torch.Tensor) -> torch.Tensor:
    """BALD's mutual information from T stochastic passes [N, C, T]: H[E_t p_t] - E_t H[p_t].

    References: Houlsby et al., "Bayesian Active Learning for Classification and Preference Learning"
    (2011); Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data" (ICML 2017), with MC
    dropout for the passes. Same formula as baal's `BALD.compute_score`.
    """
    expected_entropy = _entropy(mc_probabilities, 1).mean(-1)
    entropy_of_mean = _entropy(mc_probabilities.mean(-1), 1)
    return entropy_of_mean - expected_entropy


class EntropySampler(Sampler):
    """Highest task uncertainty first (classification: softmax entropy; each task says what it measures)."""

    needs = frozenset({"uncertainty"})

    def score(self, candidates, generator):
        return candidates.uncertainty


class _ProbabilitySampler(Sampler):
    needs = frozenset({"probabilities"})
    score_function = staticmethod(entropy_scores)

    def score(self, candidates, generator):
        return self.score_function(candidates.probabilities)


class MarginSampler(_ProbabilitySampler):
    """Smallest gap between the two most likely classes first."""

    score_function = staticmethod(margin_scores)


class LeastConfidenceSampler(_ProbabilitySampler):
    """Lowest top-class probability first."""

    score_function = staticmethod(least_confidence_scores)


class BALDSampler(Sampler):
    """BALD with MC dropout: `passes` stochastic passes, dropout `dropout` on the input of `last_layer`.

    The backbone runs once per batch; only the last layer is re-run on T dropout masks (dropout on the
    classifier input, the only stochastic layer), so T passes cost one forward plus T small matmuls.
    """

    needs = frozenset({"mc_probabilities"})

    def __init__(self, passes: int = 20, dropout: float = 0.5, last_layer: str = "fc"):
        if int(passes) < 2:
            raise ValueError(f"BALD needs at least 2 stochastic passes, got {passes}")
        if not 0.0 < float(dropout) < 1.0:
            raise ValueError(f"BALD's dropout must be in (0, 1), got {dropout}")
        self.passes, self.dropout, self.last_layer = int(passes), float(dropout), str(last_layer)

    @property
    def need_options(self) -> dict:
        return {"last_layer": self.last_layer, "mc_passes": self.passes, "mc_dropout": self.dropout}

    def score(self, candidates, generator):
        return bald_scores(candidates.mc_probabilities)

"""Selection strategies, one module per family; every `_target_` of conf/sampler/ is importable from here
(`al_runner.samplers.CoreSetSampler` and the other names of the former single module keep working).

- needs: what a sampler may need, declared once (`NEEDS`), and `Candidates`, which holds it (by position)
- base: `Sampler`, `top_k`, random
- uncertainty: entropy, margin, least confidence, BALD (pure score functions + samplers)
- diversity: core-set (K-Center-Greedy), BADGE (k-means++ seeding on gradient embeddings)
- predicted_loss: learning loss
- hybrid: predicted loss then core-set
- oracle: diagnostics that read labels on purpose (named oracle_* in config)

What each sampler `needs` is declared in `al_runner.samplers.needs.NEEDS`; the learner computes it.
"""

from al_runner.samplers.base import RandomSampler, Sampler, top_k
from al_runner.samplers.diversity import (
    DISTANCE_BLOCK_ELEMENTS,
    BadgeSampler,
    CoreSetSampler,
    k_center_greedy,
    kmeans_pp_seeding,
    min_sq_distances,
)
from al_runner.samplers.hybrid import PredictedLossThenCoreSet
from al_runner.samplers.needs import NEEDS, Candidates, GradientEmbedding, Need
from al_runner.samplers.oracle import TrueLossOracle
from al_runner.samplers.predicted_loss import PredictedLossSampler
from al_runner.samplers.uncertainty import (
    BALDSampler,
    EntropySampler,
    LeastConfidenceSampler,
    MarginSampler,
    bald_scores,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)

__all__ = [
    "NEEDS",
    "Need",
    "Candidates",
    "GradientEmbedding",
    "Sampler",
    "top_k",
    "RandomSampler",
    "EntropySampler",
    "MarginSampler",
    "LeastConfidenceSampler",
    "BALDSampler",
    "entropy_scores",
    "margin_scores",
    "least_confidence_scores",
    "bald_scores",
    "CoreSetSampler",
    "BadgeSampler",
    "k_center_greedy",
    "kmeans_pp_seeding",
    "min_sq_distances",
    "DISTANCE_BLOCK_ELEMENTS",
    "PredictedLossSampler",
    "PredictedLossThenCoreSet",
    "TrueLossOracle",
]

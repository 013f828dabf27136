"""Diversity sampling: core-set by K-Center-Greedy, and BADGE (k-means++ seeding on gradient embeddings).

Neither ever holds an N x N distance matrix: K-Center-Greedy works in distance blocks with a running
min-distance vector; BADGE's gradient embeddings stay factored (`GradientEmbedding`), so a distance to
the newest center costs O(N (C + d)).
"""

from __future__ import annotations

import torch

from al_runner.samplers.base import Sampler
from al_runner.samplers.needs import GradientEmbedding


class CoreSetSampler(Sampler):
    """Core-set (Sener & Savarese) by K-Center-Greedy, with the labeled set as initial centers."""

    needs = frozenset({"embedding", "labeled_embedding"})

    def __init__(self, chunk_size: int = 4096):
        self.chunk_size = chunk_size

    def select(self, candidates, k, generator):
        return k_center_greedy(candidates.embedding, candidates.labeled_embedding, k, self.chunk_size)

    def score(self, candidates, generator):  # pragma: no cover - select is overridden
        raise NotImplementedError("core-set scores are defined by the greedy order; use select")


# Elements of the one distance block (16 MiB in fp32): big enough for an efficient matmul, and a
# bound on the extra memory whatever N (never an N×N matrix).
DISTANCE_BLOCK_ELEMENTS = 1 << 22


def min_sq_distances(points: torch.Tensor, centers: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """min_j ||p_i - c_j||² for each point, in blocks (`chunk_size` centers at a time) so no N×N matrix is held.

    Per block one fused matmul gives ||c_j||² - 2 p_i·c_j; ||p_i||² is constant along the row, so it is
    added after the min. Rows are blocked too: at most DISTANCE_BLOCK_ELEMENTS distances exist at once.
    """
    best = torch.full((points.shape[0],), float("inf"), device=points.device, dtype=points.dtype)
    c_sq = (centers * centers).sum(1)
    cols = max(1, min(chunk_size, centers.shape[0]))
    rows = max(1, DISTANCE_BLOCK_ELEMENTS // cols)
    buffer = points.new_empty(min(rows, points.shape[0]) * cols)  # one block, reused (no allocator churn)
    for r in range(0, points.shape[0], rows):
        p, row_best = points[r : r + rows], best[r : r + rows]
        for start in range(0, centers.shape[0], chunk_size):
            c = centers[start : start + chunk_size]
            block = buffer[: p.shape[0] * c.shape[0]].view(p.shape[0], c.shape[0])
            torch.addmm(c_sq[None, start : start + chunk_size], p, c.T, alpha=-2.0, out=block)
            torch.minimum(row_best, block.amin(dim=1), out=row_best)
    return best.add_((points * points).sum(1)).clamp_min_(0)


def k_center_greedy(
    points: torch.Tensor, centers: torch.Tensor | None, k: int, chunk_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick k points, each the farthest (Euclidean) from all centers so far.

    Returns (positions, distance of each pick to its nearest center at the time it was picked).
    A running min-distance vector is updated per pick: O(k·n·d) time, O(n) extra memory.
    """
    if k > points.shape[0]:
        raise ValueError(f"cannot pick {k} of {points.shape[0]} points")
    points = points.float()
    if centers is not None and centers.shape[0] > 0:
        min_dist = min_sq_distances(points, centers.float().to(points.device), chunk_size)
    else:  # no labeled set: start from the point farthest from the mean
        min_dist = ((points - points.mean(0, keepdim=True)) ** 2).sum(1)
    p_sq = (points * points).sum(1)
    picks = torch.empty(k, dtype=torch.long, device=points.device)
    dists = torch.empty(k, dtype=points.dtype, device=points.device)
    for i in range(k):  # no host sync inside: j stays a device tensor
        j = torch.argmax(min_dist)
        picks[i], dists[i] = j, min_dist[j]
        new = torch.addmv(p_sq + p_sq[j], points, points[j], alpha=-2.0).clamp_min_(0)  # ||p - p_j||², one pass
        torch.minimum(min_dist, new, out=min_dist)
        min_dist[j] = -1.0  # never pick the same point twice
    return picks.cpu(), dists.sqrt().cpu()


def kmeans_pp_seeding(
    gradients: GradientEmbedding, k: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE's k-means++ seeding: the largest gradient first, then each next point drawn with probability
    proportional to its squared distance to the nearest point picked so far.

    As in BADGE's reference code (`init_centers`, JordanAsh/badge): first pick argmax ||g||, then D²
    sampling without replacement. Returns (positions, distance of each pick to its nearest earlier pick;
    the first pick's own norm). All k uniforms are drawn at once from `generator` (CPU), so the loop has
    no host sync and the picks are the same on CPU and CUDA up to floating-point ties.
    """
    n = len(gradients)
    if k > n:
        raise ValueError(f"cannot pick {k} of {n} points")
    g = GradientEmbedding(gradients.loss_gradient.float(), gradients.features.float())
    device = g.features.device
    sq = g.sq_norms()
    uniforms = torch.rand(k, generator=generator, dtype=torch.float64).to(device)
    picks = torch.empty(k, dtype=torch.long, device=device)
    dists = torch.empty(k, dtype=torch.float32, device=device)
    unpicked = torch.ones(n, dtype=torch.bool, device=device)
    j = torch.argmax(sq)
    picks[0], dists[0] = j, sq[j].sqrt()
    min_d2 = torch.full((n,), float("inf"), device=device)
    for i in range(1, k):
        unpicked[j] = False
        torch.minimum(min_d2, (sq + sq[j] - 2.0 * g.dots_with(j)).clamp_min_(0), out=min_d2)
        weights = torch.where(unpicked, min_d2, torch.zeros_like(min_d2)).double()
        cumulative = weights.cumsum(0)
        # all remaining points coincide with picks (zero weights): draw uniformly among the unpicked instead
        cumulative = torch.where(cumulative[-1] > 0, cumulative, unpicked.double().cumsum(0))
        j = torch.searchsorted(cumulative, uniforms[i] * cumulative[-1], right=True).clamp_max_(n - 1)
        picks[i], dists[i] = j, min_d2[j].sqrt()
    return picks.cpu(), dists.cpu()


class BadgeSampler(Sampler):
    """BADGE (Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020):
    k-means++ seeding on the last layer's gradient embedding under the model's own predicted label.

    The gradient embedding is (p - onehot(ŷ)) ⊗ h for the input h of `last_layer` (the classifier), as in
    the reference code (bias gradient left out, as there); large when the model is unsure (uncertainty) and
    spread over directions (diversity)."""

    needs = frozenset({"gradient_embedding"})

    def __init__(self, last_layer: str = "fc"):
        self.last_layer = str(last_layer)

    @property
    def need_options(self) -> dict:
        return {"last_layer": self.last_layer}

    def select(self, candidates, k, generator):
        return kmeans_pp_seeding(candidates.gradient_embedding, k, generator)

    def score(self, candidates, generator):  # pragma: no cover - select is overridden
        raise NotImplementedError("BADGE's picks are defined by the seeding order; use select")

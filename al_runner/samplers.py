"""Selection strategies: each computes scores for candidates; ranking is shared (`top_k`).

Samplers receive model outputs for unlabeled *inputs* only (a `Candidates` record): by
construction they never see a label of an unlabeled point.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class Candidates:
    indices: torch.Tensor  # pool indices of the scored subset
    uncertainty: torch.Tensor | None = None
    predicted_loss: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    labeled_embedding: torch.Tensor | None = None  # core-set centers

    def __len__(self) -> int:
        return self.indices.numel()


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k highest scores; ties keep candidate order (stable) for reproducibility."""
    return torch.argsort(scores, descending=True, stable=True)[:k]


class Sampler(ABC):
    needs: frozenset[str] = frozenset()  # which of uncertainty / predicted_loss / embedding to compute
    needs_labeled_embedding: bool = False

    def select(self, candidates: Candidates, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions into candidates, their scores), best first."""
        scores = self.score(candidates, generator)
        picks = top_k(scores, k)
        return picks, scores[picks]

    @abstractmethod
    def score(self, candidates: Candidates, generator: torch.Generator) -> torch.Tensor: ...


class RandomSampler(Sampler):
    def score(self, candidates, generator):
        return torch.rand(len(candidates), generator=generator)


class EntropySampler(Sampler):
    needs = frozenset({"uncertainty"})

    def score(self, candidates, generator):
        return candidates.uncertainty


class PredictedLossSampler(Sampler):
    """Learning loss (both the ranking and the MSE variant): highest predicted loss first."""

    needs = frozenset({"predicted_loss"})

    def score(self, candidates, generator):
        return candidates.predicted_loss


class CoreSetSampler(Sampler):
    """Core-set (Sener & Savarese) by K-Center-Greedy, with the labeled set as initial centers."""

    needs = frozenset({"embedding"})
    needs_labeled_embedding = True

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


def k_center_greedy(points: torch.Tensor, centers: torch.Tensor | None, k: int, chunk_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
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

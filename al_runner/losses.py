"""Loss-prediction objectives (DESIGN §1, paper Sec. 3.3)."""
from __future__ import annotations

import torch
from torch import nn


def split_into_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint pairs (i, n-1-i) for i < n//2; with odd n the middle sample is left unpaired."""
    first = torch.arange(n // 2)
    return first, n - 1 - first


class MarginRankingLoss(nn.Module):
    """(2/B) Σ_pairs max(0, -s·(l̂_i - l̂_j) + ξ), s = +1 if l_i > l_j else -1.

    The batch is split into B/2 disjoint pairs; predictions and targets are paired with the *same*
    indices (a public reimplementation permuted only one of them). `target_loss` must be the
    per-sample target loss; it is detached here so the module's loss never reaches the target
    through its label. An odd batch leaves its middle sample unpaired (it still trains the target).
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, predicted_loss: torch.Tensor, target_loss: torch.Tensor) -> torch.Tensor:
        predicted_loss, target_loss = predicted_loss.flatten(), target_loss.detach().flatten()
        if predicted_loss.shape != target_loss.shape:
            raise ValueError(f"shape mismatch: predicted {tuple(predicted_loss.shape)} vs target {tuple(target_loss.shape)}")
        if predicted_loss.numel() < 2:
            return predicted_loss.sum() * 0.0
        i, j = split_into_pairs(predicted_loss.numel())
        i, j = i.to(predicted_loss.device), j.to(predicted_loss.device)
        sign = torch.where(target_loss[i] > target_loss[j], 1.0, -1.0).to(predicted_loss.dtype)
        hinge = torch.clamp(-sign * (predicted_loss[i] - predicted_loss[j]) + self.margin, min=0)
        return hinge.mean()  # mean over B/2 pairs == (2/B) Σ


class LossMSE(nn.Module):
    """The paper's "learn loss mse" variant: mean (l̂ - l)²."""

    def forward(self, predicted_loss: torch.Tensor, target_loss: torch.Tensor) -> torch.Tensor:
        return torch.mean((predicted_loss.flatten() - target_loss.detach().flatten()) ** 2)


def ranking_accuracy(predicted: torch.Tensor, real: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of pairs with distinct real losses whose predicted order matches (paper Fig. 5).

    Each unordered pair is counted once, as the ordered pair (i, j) with real_i > real_j; a
    predicted tie counts as a mismatch. Points whose real loss is NaN belong to no pair.

    Exact pair counts in O(n log² n) time and O(n) memory (sort + merge counting, on the tensors'
    device): 10,000 points take milliseconds. A NaN prediction has no place in a sort order, so then
    the chunked O(n²) count is used instead (`chunk` rows at a time, O(chunk · n) memory).
    """
    predicted, real = predicted.flatten().double(), real.flatten().double()
    if predicted.shape != real.shape:
        raise ValueError("predicted and real must have the same length")
    known = ~torch.isnan(real)
    if not bool(known.all()):
        predicted, real = predicted[known], real[known]
    if bool(torch.isnan(predicted).any()):
        return _ranking_accuracy_pairwise(predicted, real, chunk)
    # valid pairs: for each i, the number of j with real_j < real_i
    valid_total = int(torch.searchsorted(torch.sort(real).values, real).sum())
    if valid_total == 0:
        return float("nan")
    # Order by real ascending, ties by prediction descending; then a matching pair is exactly a pair
    # of positions a < b whose predictions increase strictly (within a tie of real losses they never do).
    order = torch.sort(predicted, descending=True, stable=True).indices
    order = order[torch.sort(real[order], stable=True).indices]
    ranks = torch.unique(predicted, return_inverse=True)[1][order]
    return _count_increasing_pairs(ranks) / valid_total


def _count_increasing_pairs(values: torch.Tensor) -> int:
    """#{(a, b): a < b, values[a] < values[b]} for integers in [0, n), by bottom-up merge counting.

    At width s, each block of 2s positions has a sorted left half; every right-half element counts the
    left-half elements below it with one `searchsorted` over all blocks at once (block-offset keys).
    """
    n = values.numel()
    positions = torch.arange(n, device=values.device)
    stride = n + 1  # > any value: keys block * stride + value sort block-major, then by value
    total, width = 0, 1
    while width < n:
        block = torch.div(positions, 2 * width, rounding_mode="floor")
        right = (positions % (2 * width)) >= width
        keys = block * stride + values  # each width-block of `values` is already sorted
        below = torch.searchsorted(keys[~right], keys[right]) - block[right] * width  # earlier blocks hold `width` left elements each
        total += int(below.sum())
        values = torch.sort(keys).values - block * stride  # merge: each 2·width-block now sorted
        width *= 2
    return total


def _ranking_accuracy_pairwise(predicted: torch.Tensor, real: torch.Tensor, chunk: int = 2048) -> float:
    """The same count over all n² ordered pairs, `chunk` rows at a time (NaN predictions never match)."""
    valid_total = 0
    matching_total = 0
    for start in range(0, real.numel(), chunk):
        r_rows, p_rows = real[start : start + chunk, None], predicted[start : start + chunk, None]
        valid = r_rows > real[None, :]
        valid_total += int(valid.sum())
        matching_total += int((valid & (p_rows > predicted[None, :])).sum())
    return float("nan") if valid_total == 0 else matching_total / valid_total

"""Task-independent metrics: ranking accuracy of predicted losses (paper Fig. 5) and classification accuracy."""

from __future__ import annotations

import torch

from al_runner.tasks.base import Metric


class Accuracy(Metric):
    """Top-1 accuracy of class logits [B, C] against labels [B]."""

    def __init__(self):
        self.correct, self.total = 0, 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((outputs.argmax(dim=1) == targets).sum())
        self.total += int(targets.numel())

    def compute(self) -> float:
        return self.correct / max(self.total, 1)


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
        below = (
            torch.searchsorted(keys[~right], keys[right]) - block[right] * width
        )  # earlier blocks hold `width` left elements each
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

import itertools

import pytest
import torch

from al_runner.learning_loss import LossMSE, MarginRankingLoss, ranking_accuracy, split_into_pairs


def test_pairs_are_disjoint_and_cover_the_batch():
    i, j = split_into_pairs(6)
    assert i.tolist() == [0, 1, 2] and j.tolist() == [5, 4, 3]
    i, j = split_into_pairs(5)  # odd: the middle sample is left out
    assert sorted(i.tolist() + j.tolist()) == [0, 1, 3, 4]


def test_margin_ranking_loss_hand_computed():
    # pairs (0,3), (1,2); xi = 1
    pred = torch.tensor([0.5, 2.0, 1.0, 0.0])
    real = torch.tensor([3.0, 1.0, 2.0, 1.0])
    # pair (0,3): real 3 > 1 -> s=+1: max(0, -(0.5-0.0)+1) = 0.5
    # pair (1,2): real 1 < 2 -> s=-1: max(0, +(2.0-1.0)+1) = 2.0
    loss = MarginRankingLoss(margin=1.0)(pred, real)
    assert loss.item() == pytest.approx((0.5 + 2.0) / 2)  # (2/B) * sum over B/2 pairs


def test_margin_ranking_loss_zero_when_order_right_by_margin():
    pred = torch.tensor([5.0, 0.0])
    real = torch.tensor([2.0, 1.0])
    assert MarginRankingLoss(1.0)(pred, real).item() == 0.0


def test_margin_ranking_loss_pairs_predictions_and_targets_identically():
    # Permuting the batch (both tensors together) re-pairs samples but each term must still compare
    # a prediction with its own target: a correctly ordered batch stays at zero loss.
    real = torch.tensor([4.0, 1.0, 3.0, 2.0, 0.0, 5.0])
    pred = real * 10
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert MarginRankingLoss(1.0)(pred[perm], real[perm]).item() == 0.0


def test_target_loss_is_detached_in_module_objectives():
    pred = torch.tensor([1.0, 0.0], requires_grad=True)
    real = torch.tensor([0.0, 1.0], requires_grad=True)
    (MarginRankingLoss(1.0)(pred, real) + LossMSE()(pred, real)).backward()
    assert real.grad is None and pred.grad is not None


def test_mse_variant():
    assert LossMSE()(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx((1 + 4) / 2)


def brute_force_ranking_accuracy(pred, real):
    valid = matching = 0
    for a, b in itertools.combinations(range(len(real)), 2):
        if real[a] == real[b]:
            continue
        valid += 1
        hi, lo = (a, b) if real[a] > real[b] else (b, a)
        matching += pred[hi] > pred[lo]
    return matching / valid


@pytest.mark.parametrize("n,chunk", [(50, 7), (200, 2048), (301, 64)])
def test_ranking_accuracy_matches_brute_force_pair_count(n, chunk):
    g = torch.Generator().manual_seed(n)
    real = torch.randint(0, 20, (n,), generator=g).float()  # many ties in the real loss
    pred = torch.randint(0, 10, (n,), generator=g).float()  # and ties in the prediction
    expected = brute_force_ranking_accuracy(pred.tolist(), real.tolist())
    assert ranking_accuracy(pred, real, chunk=chunk) == pytest.approx(expected)


def test_ranking_accuracy_extremes():
    real = torch.arange(10.0)
    assert ranking_accuracy(real * 2, real) == 1.0
    assert ranking_accuracy(-real, real) == 0.0

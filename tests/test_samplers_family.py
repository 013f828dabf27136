"""Known answers for each sampler of the family, on synthetic inputs (no training)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import xlogy
from scipy.stats import entropy as scipy_entropy

from al_runner.samplers import (
    BadgeSampler,
    BALDSampler,
    Candidates,
    GradientEmbedding,
    LeastConfidenceSampler,
    MarginSampler,
    PredictedLossThenCoreSet,
    TrueLossOracle,
    bald_scores,
    entropy_scores,
    k_center_greedy,
    kmeans_pp_seeding,
    least_confidence_scores,
    margin_scores,
)

TABLE = torch.tensor(
    [
        [0.50, 0.40, 0.10],  # margin 0.10, max 0.50
        [0.90, 0.05, 0.05],  # margin 0.85, max 0.90
        [0.34, 0.33, 0.33],  # margin 0.01, max 0.34
        [0.60, 0.00, 0.40],  # margin 0.20, max 0.60
    ]
)


def test_margin_and_least_confidence_known_answers():
    assert torch.allclose(margin_scores(TABLE), -torch.tensor([0.10, 0.85, 0.01, 0.20]))
    assert torch.allclose(least_confidence_scores(TABLE), torch.tensor([0.50, 0.10, 0.66, 0.40]))
    gen = torch.Generator()
    picks, _ = MarginSampler().select(Candidates(probabilities=TABLE), 3, gen)
    assert picks.tolist() == [2, 0, 3]
    picks, scores = LeastConfidenceSampler().select(Candidates(probabilities=TABLE), 2, gen)
    assert picks.tolist() == [2, 0] and torch.allclose(scores, torch.tensor([0.66, 0.50]))


def test_entropy_scores_equal_scipys_entropy_with_zero_probabilities():
    expected = torch.from_numpy(scipy_entropy(TABLE.double().numpy(), axis=1))
    assert torch.allclose(entropy_scores(TABLE.double()), expected)


def baal_bald(predictions: np.ndarray) -> np.ndarray:
    """baal's published BALD.compute_score formula ([N, C, T]), re-typed for the cross-check."""
    expected_entropy = -np.mean(np.sum(xlogy(predictions, predictions), axis=1), axis=-1)
    expected_p = np.mean(predictions, axis=-1)
    entropy_expected_p = -np.sum(xlogy(expected_p, expected_p), axis=1)
    return entropy_expected_p - expected_entropy


def test_bald_matches_baals_formula_on_random_passes():
    rng = np.random.default_rng(0)
    passes = rng.dirichlet(np.ones(10) * 0.3, size=(50, 20)).transpose(0, 2, 1)  # [N, C, T]
    ours = bald_scores(torch.from_numpy(passes))
    assert np.allclose(ours.numpy(), baal_bald(passes), atol=1e-12)


def test_bald_known_answers():
    agree = torch.tensor([0.7, 0.2, 0.1])[None, :, None].expand(1, 3, 4)  # every pass says the same
    disagree = torch.eye(4)[None, :, :]  # pass t is certain of class t: H[mean] = log 4, E[H] = 0
    assert bald_scores(agree).abs().item() < 1e-6
    assert bald_scores(disagree).item() == pytest.approx(math.log(4))


def _baal_fixture(means, stds, dims=10, n_iterations=50, n_trials=100, seed=1338):
    """baal's tests/active/heuristic_test.py `_make_3d_fake_dist`: histograms of rounded normal draws."""
    rng = np.random.RandomState(seed)
    passes = []
    for _ in range(n_iterations):
        rows = []
        for m, std in zip(means, stds):
            dist = np.zeros(dims)
            for _ in range(n_trials):
                dist[int(np.round(np.clip(rng.normal(m, std), 0, dims - 1)))] += 1
            rows.append(dist / n_trials)
        passes.append(rows)
    return np.stack(passes).transpose(1, 2, 0)  # [n_sample, n_class, n_iter]


def test_bald_ranks_baals_test_fixture_as_baal_does():
    # baal's test asserts the ranking [1, 2, 0] for means [5, 6, 9], stds [0.1, 4, 2]
    passes = torch.from_numpy(_baal_fixture([5, 6, 9], [0.1, 4, 2]))
    picks, _ = BALDSampler().select(Candidates(mc_probabilities=passes), 3, torch.Generator())
    assert picks.tolist() == [1, 2, 0]


def test_bald_refuses_bad_settings():
    with pytest.raises(ValueError, match="at least 2"):
        BALDSampler(passes=1)
    with pytest.raises(ValueError, match="dropout"):
        BALDSampler(dropout=1.0)


def _gradients(n=40, c=4, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, c, generator=g) * 2, dim=1)
    a = p - torch.nn.functional.one_hot(p.argmax(1), c).float()
    return GradientEmbedding(a, torch.randn(n, d, generator=g).relu())


def test_factored_gradient_distances_equal_the_dense_ones():
    grads = _gradients()
    dense = grads.dense()
    assert torch.allclose(grads.sq_norms(), (dense * dense).sum(1), atol=1e-5)
    j = torch.tensor(7)
    assert torch.allclose(grads.dots_with(j), dense @ dense[7], atol=1e-5)
    both = GradientEmbedding.cat([grads, _gradients(seed=1)])
    assert len(both) == 80 and torch.equal(both.dense()[:40], dense)


def reference_kmeans_pp(dense: np.ndarray, k: int, uniforms: np.ndarray) -> list[int]:
    """BADGE's init_centers on dense vectors (argmax norm first, then D² sampling), with given uniforms
    instead of scipy's rv_discrete draws, so that the picks can be compared one to one."""
    picks = [int(np.argmax(np.linalg.norm(dense, axis=1)))]
    d2 = np.full(len(dense), np.inf)
    for i in range(1, k):
        d2 = np.minimum(d2, ((dense - dense[picks[-1]]) ** 2).sum(1))
        weights = d2.copy()
        weights[picks] = 0
        cumulative = np.cumsum(weights)
        picks.append(int(np.searchsorted(cumulative, uniforms[i] * cumulative[-1], side="right")))
    return picks


def test_kmeans_pp_seeding_matches_a_dense_reference_with_the_same_draws():
    grads = _gradients(n=200, c=10, d=16)
    picks, dists = kmeans_pp_seeding(grads, 25, torch.Generator().manual_seed(3))
    uniforms = torch.rand(25, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    assert picks.tolist() == reference_kmeans_pp(grads.dense().double().numpy(), 25, uniforms)
    assert len(set(picks.tolist())) == 25
    assert dists[0] == pytest.approx(grads.sq_norms()[picks[0]].sqrt().item(), rel=1e-5)


def test_badge_picks_one_point_per_far_apart_cluster():
    # four tight clusters far apart in gradient space: D² sampling visits each before any repeat
    centers = torch.tensor([[10.0, 0], [0, 10.0], [-10.0, 0], [0, -10.0]])
    g = torch.Generator().manual_seed(0)
    features = (centers[:, None, :] + 0.01 * torch.randn(4, 10, 2, generator=g)).reshape(40, 2)
    grads = GradientEmbedding(torch.ones(40, 1), features)
    picks, _ = BadgeSampler().select(Candidates(gradient_embedding=grads), 4, torch.Generator().manual_seed(1))
    assert sorted(p // 10 for p in picks.tolist()) == [0, 1, 2, 3]


def test_badge_with_duplicate_points_still_picks_distinct_ones():
    grads = GradientEmbedding(torch.ones(6, 1), torch.ones(6, 3))  # all identical: zero D² everywhere after one pick
    picks, _ = kmeans_pp_seeding(grads, 6, torch.Generator().manual_seed(0))
    assert sorted(picks.tolist()) == list(range(6))


def test_hybrid_shortlists_by_predicted_loss_then_spreads_by_core_set():
    # predicted loss keeps positions 0-3 (beta * K = 4); among them K-Center-Greedy from the labeled
    # point at 0 takes the farthest (pos 1 at 10), then the one farthest from {0, 10} (pos 2 at 5).
    # Position 4 is the farthest of all but has the lowest predicted loss: never considered.
    embedding = torch.tensor([[1.0], [10.0], [5.0], [9.0], [100.0]])
    predicted = torch.tensor([4.0, 3.0, 2.0, 5.0, 0.0])
    c = Candidates(predicted_loss=predicted, embedding=embedding, labeled_embedding=torch.zeros(1, 1))
    picks, scores = PredictedLossThenCoreSet(beta=2.0).select(c, 2, torch.Generator())
    assert picks.tolist() == [1, 2] and torch.allclose(scores, torch.tensor([10.0, 5.0]))
    # beta so large that the shortlist is everything: core-set itself
    picks, _ = PredictedLossThenCoreSet(beta=10.0).select(c, 2, torch.Generator())
    assert picks.tolist() == k_center_greedy(embedding, torch.zeros(1, 1), 2)[0].tolist() == [4, 1]
    with pytest.raises(ValueError, match="beta"):
        PredictedLossThenCoreSet(beta=0.5)


def test_true_loss_oracle_is_marked_and_ranks_by_the_real_loss():
    oracle = TrueLossOracle()
    assert oracle.reads_labels and "true_loss" in oracle.needs
    picks, _ = oracle.select(Candidates(true_loss=torch.tensor([0.1, 2.0, 0.5, 1.0])), 2, torch.Generator())
    assert picks.tolist() == [1, 3]

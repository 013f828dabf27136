import pytest
import torch

from al_runner.pool import Pool
from al_runner.samplers import (
    Candidates,
    CoreSetSampler,
    EntropySampler,
    PredictedLossSampler,
    RandomSampler,
    Sampler,
    k_center_greedy,
    min_sq_distances,
    top_k,
)
from al_runner.samplers.needs import NEEDS


def brute_force_k_center(points, centers, k):
    dist = torch.cdist(points.double(), centers.double()).min(1).values
    picks = []
    for _ in range(k):
        j = int(torch.argmax(dist))
        picks.append(j)
        dist = torch.minimum(dist, torch.cdist(points.double(), points[j : j + 1].double()).squeeze(1))
        dist[j] = -1
    return picks


def test_k_center_greedy_matches_brute_force_on_random_features():
    g = torch.Generator().manual_seed(0)
    points, centers = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    picks, dists = k_center_greedy(points, centers, 25, chunk_size=7)
    assert picks.tolist() == brute_force_k_center(points, centers, 25)
    # reported distance = distance to the nearest center at pick time, so non-increasing
    assert torch.all(dists[1:] <= dists[:-1] + 1e-5)


def test_min_sq_distances_chunked_equals_full():
    g = torch.Generator().manual_seed(1)
    p, c = torch.randn(40, 5, generator=g), torch.randn(33, 5, generator=g)
    assert torch.allclose(min_sq_distances(p, c, chunk_size=4), torch.cdist(p, c).min(1).values ** 2, atol=1e-4)


def test_k_center_greedy_known_answer():
    # centers at 0; candidates on a line: the farthest (10) first, then the one farthest from {0, 10}
    points = torch.tensor([[1.0], [10.0], [5.0], [6.0]])
    picks, _ = k_center_greedy(points, torch.zeros(1, 1), 2)
    assert picks.tolist() == [1, 2]


def test_top_k_known_answer_and_stable_ties():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.3])
    assert top_k(scores, 3).tolist() == [1, 3, 2]


def test_score_based_samplers_rank_highest_first():
    gen = torch.Generator().manual_seed(0)
    ent = Candidates(uncertainty=torch.tensor([0.2, 0.1, 0.7, 0.3, 0.6]))
    assert EntropySampler().select(ent, 2, gen)[0].tolist() == [2, 4]
    pl = Candidates(predicted_loss=torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0]))
    picks, scores = PredictedLossSampler().select(pl, 3, gen)
    assert picks.tolist() == [3, 4, 0] and scores.tolist() == [5.0, 4.0, 3.0]


def test_random_sampler_is_seeded():
    c = Candidates(count=100)
    a = RandomSampler().select(c, 10, torch.Generator().manual_seed(3))[0]
    b = RandomSampler().select(c, 10, torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, b) and a.unique().numel() == 10


def test_candidates_hold_the_declared_needs_only_and_no_pool_index():
    candidates = Candidates(uncertainty=torch.rand(5))
    assert len(candidates) == 5 and candidates.predicted_loss is None and candidates.given() == ["uncertainty"]
    candidates.labeled_embedding = torch.rand(3, 2)  # over the labeled set: its own number of rows
    for name in ("indices", "pool_indices", "labels"):
        assert name not in NEEDS
        with pytest.raises(AttributeError, match="no pool index"):
            setattr(candidates, name, torch.arange(5))
        with pytest.raises(AttributeError):
            getattr(candidates, name)
    with pytest.raises(TypeError):
        Candidates(torch.arange(5))  # pool indices were its first field once: no longer
    with pytest.raises(ValueError, match="4 rows for 5 candidates"):
        Candidates(count=5, embedding=torch.rand(4, 2))
    with pytest.raises(ValueError, match="count"):
        Candidates(labeled_embedding=torch.rand(3, 2))


def test_a_sampler_needing_an_undeclared_need_is_refused_at_definition():
    with pytest.raises(TypeError, match="pool_indices: not declared"):

        class ReadsPoolIndices(Sampler):
            needs = frozenset({"pool_indices"})

            def score(self, candidates, generator):
                return candidates.pool_indices


def test_coreset_sampler_uses_labeled_embedding_as_centers():
    c = Candidates(embedding=torch.tensor([[1.0], [10.0], [5.0], [6.0]]), labeled_embedding=torch.tensor([[9.0]]))
    picks, _ = CoreSetSampler().select(c, 1, torch.Generator())
    assert picks.tolist() == [0]  # farthest from the labeled point at 9


def test_pool_bookkeeping():
    pool = Pool(10)
    init = pool.label_initial(3, torch.Generator().manual_seed(0))
    assert pool.n_labeled == 3 and sorted(pool.labeled_in(0).tolist()) == sorted(init.tolist())
    rest = pool.unlabeled_indices[:2]
    pool.label(rest, 1)
    assert pool.labeled_in(1).tolist() == sorted(rest.tolist())
    assert pool.n_labeled == 5 and pool.unlabeled_indices.numel() == 5
    assert set(pool.labeled_indices.tolist()).isdisjoint(pool.unlabeled_indices.tolist())
    try:
        pool.label(init[:1], 2)
    except ValueError as e:
        assert "already labeled" in str(e)
    else:
        raise AssertionError("relabeling must fail")
    state = pool.state_dict()
    other = Pool(10)
    other.load_state_dict(state)
    assert torch.equal(other.labeled_cycle, pool.labeled_cycle)


def test_initial_set_depends_only_on_seed():
    a = Pool(1000).label_initial(50, torch.Generator().manual_seed(7))
    b = Pool(1000).label_initial(50, torch.Generator().manual_seed(7))
    c = Pool(1000).label_initial(50, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)

"""The Python API for people with their own training loop (al_runner.api): the same classes al-run uses,
attached to any nn.Module by layer names, and the example under examples/ run end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from al_runner import api, samplers
from al_runner.errors import ConfigError
from al_runner.learning_loss import LossPredictionModule, MarginRankingLoss

REPO = Path(__file__).resolve().parent.parent


def own_model() -> nn.Module:
    """Not one of al_runner's models: a plain Sequential named by index."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def test_the_module_attaches_to_any_model_by_layer_names_and_is_the_runners_module():
    model, x = own_model(), torch.randn(6, 1, 8, 8)
    predictor = api.attach_loss_module(model, ["1", "3"], example_input=x[:2])
    assert isinstance(predictor.module, LossPredictionModule)
    assert all(not isinstance(p, nn.parameter.UninitializedParameter) for p in predictor.parameters())
    model(x)
    assert predictor.predicted_loss().shape == (6,) and predictor.predicted_loss().dtype == torch.float32
    with pytest.raises(ConfigError, match=r"'relu' \(close: .*\)"):
        api.attach_loss_module(model, ["relu"])
    assert api.PredictedLossSampler is samplers.PredictedLossSampler and api.top_k is samplers.top_k


def test_the_loss_term_is_lambda_times_the_papers_ranking_loss_and_detaches_on_time():
    model, x, y = own_model(), torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    predictor = api.attach_loss_module(model, ["1", "3"], example_input=x[:2], weight=0.5, detach_epoch=3)
    per_sample = F.cross_entropy(model(x), y, reduction="none")
    term = predictor.loss(per_sample, epoch=0)
    expected = 0.5 * MarginRankingLoss(1.0)(predictor.predicted_loss(), per_sample)
    assert torch.allclose(term, expected) and torch.allclose(
        api.ranking_loss(predictor.predicted_loss(), per_sample), expected / 0.5
    )
    first_conv = model[0].weight
    assert torch.autograd.grad(term, first_conv, retain_graph=True)[0].abs().sum() > 0  # before: shapes the model
    late = predictor.loss(per_sample, epoch=3)
    assert torch.autograd.grad(late, first_conv, allow_unused=True)[0] is None  # from detach_epoch on: not any more
    assert torch.autograd.grad(predictor.loss(per_sample, epoch=3), predictor.module.head.weight)[0].abs().sum() > 0


def test_scoring_reads_inputs_only_in_loader_order_and_leaves_the_model_as_it_was():
    model, x = own_model(), torch.randn(10, 1, 8, 8)
    predictor = api.attach_loss_module(model, ["1", "3"], example_input=x[:2])
    poisoned = TensorDataset(x, torch.full((10,), float("nan")))  # labels a sampler must never read
    model.train()
    candidates = api.score_unlabeled(
        model, predictor, DataLoader(poisoned, batch_size=4), probabilities=True, embedding_layer="3"
    )
    assert model.training and len(model[3]._forward_hooks) == 1  # mode restored; only the predictor's own hook left
    model.eval()
    with torch.no_grad():
        logits = model(x)
        expected = predictor.predicted_loss()
        features = model[:4](x).mean(dim=(2, 3))
    assert len(candidates) == 10 and not hasattr(candidates, "indices")  # positions in loader order, no ids
    assert torch.allclose(candidates.predicted_loss, expected, atol=1e-6)
    assert torch.allclose(candidates.probabilities, logits.softmax(1), atol=1e-6)
    assert torch.allclose(candidates.embedding, features, atol=1e-6)
    positions, scores = api.select(api.PredictedLossSampler(), candidates, 3)
    assert torch.equal(positions, api.top_k(expected, 3)) and torch.allclose(scores, expected[positions])


def test_the_hybrid_needs_the_labeled_embedding_and_says_how_to_give_it():
    model, x = own_model(), torch.randn(12, 1, 8, 8)
    predictor = api.attach_loss_module(model, ["1", "3"], example_input=x[:2])
    candidates = api.score_unlabeled(
        model, predictor, DataLoader(TensorDataset(x[:8]), batch_size=4), embedding_layer="3"
    )
    hybrid = api.PredictedLossThenCoreSet(beta=2.0)
    with pytest.raises(ValueError, match=r"needs labeled_embedding .*embed\(model, labeled_loader, layer\)"):
        api.select(hybrid, candidates, 2)
    candidates.labeled_embedding = api.embed(model, DataLoader(TensorDataset(x[8:]), batch_size=4), "3")
    positions, _ = api.select(hybrid, candidates, 2)
    shortlist = set(api.top_k(candidates.predicted_loss, 4).tolist())
    assert len(set(positions.tolist())) == 2 and set(positions.tolist()) <= shortlist
    assert torch.equal(
        api.select(api.RandomSampler(), candidates, 3, seed=5)[0],
        api.select(api.RandomSampler(), candidates, 3, seed=5)[0],
    )


def test_the_own_training_loop_example_runs_two_cycles_and_learns():
    spec = importlib.util.spec_from_file_location("own_training_loop", REPO / "examples" / "own_training_loop.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    try:
        result = example.main([])
    finally:
        torch.set_num_threads(threads)
    history = result["history"]
    assert [row["labeled"] for row in history] == [100, 200, 300]
    labeled = result["labeled"]
    assert len(set(labeled)) == 300  # every pick was unlabeled when picked
    for row in history[:-1]:
        assert len(row["picked"]) == 100
    assert history[-1]["ranking_loss"] < history[0]["ranking_loss"]  # the module learned to rank
    assert history[-1]["accuracy"] > 0.5  # chance is 0.1

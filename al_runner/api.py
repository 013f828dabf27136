"""Learning loss from your own training loop: a small public API over the classes al-run itself uses.

For people who keep their own model, data and loop (as modAL or baal users do) and want the method, not the
runner. Nothing here is a second implementation: the module is `learning_loss.LossPredictionModule`, the
taps are `models.taps.FeatureTaps` (forward hooks), the ranking loss is `learning_loss.MarginRankingLoss`
with λ and the detach point applied by `learning_loss.LearningLoss`, and the samplers are those of
`al_runner.samplers`. Walkthrough: docs/api.md; a runnable example: examples/own_training_loop.py.

    from al_runner import api

    predictor = api.attach_loss_module(model, ["layer1", "layer2", "layer3"], example_input=x[:2])
    optimizer = torch.optim.SGD([*model.parameters(), *predictor.parameters()], lr=0.1)
    for x, y in labeled_loader:                          # your loop
        per_sample = F.cross_entropy(model(x), y, reduction="none")
        loss = per_sample.mean() + predictor.loss(per_sample, epoch=epoch)
        ...
    scored = api.score_unlabeled(model, predictor, unlabeled_loader)
    picks = api.top_k(scored.predicted_loss, k=100)      # positions in the unlabeled loader's order
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from al_runner.learning_loss import MODULE_KINDS, LearningLoss, LossMSE, MarginRankingLoss
from al_runner.models.taps import FeatureTaps, global_average_pool
from al_runner.samplers import (
    Candidates,
    CoreSetSampler,
    EntropySampler,
    MarginSampler,
    PredictedLossSampler,
    PredictedLossThenCoreSet,
    RandomSampler,
    Sampler,
    entropy_scores,
    top_k,
)

__all__ = [
    "LossPredictor",
    "attach_loss_module",
    "ranking_loss",
    "mse_loss",
    "score_unlabeled",
    "embed",
    "select",
    "top_k",
    "Candidates",
    "Sampler",
    "PredictedLossSampler",
    "PredictedLossThenCoreSet",
    "EntropySampler",
    "MarginSampler",
    "CoreSetSampler",
    "RandomSampler",
]


class LossPredictor(nn.Module):
    """The loss-prediction module attached to `model` by layer names (no change to the model).

    Forward hooks keep the named layers' outputs of the model's last forward pass; `predicted_loss()` reads
    them and returns l̂, one value per sample, in fp32. `loss(per_sample_loss, epoch)` is the term to add to
    your training loss: weight · objective(l̂, l), with the features detached from `detach_epoch` on so that
    the module stops shaping the model (the paper: λ = 1, margin ξ = 1, detach after 120 of 200 epochs).

    Its parameters are the module's only (`predictor.parameters()`): give them to your optimizer beside the
    model's, after the first forward (`attach_loss_module(..., example_input=...)` runs one), since the
    module's first layers take their sizes from the features they first see.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: list[str],
        *,
        hidden: int = 128,
        margin: float = 1.0,
        weight: float = 1.0,
        detach_epoch: int | None = None,
        objective: str = "margin_ranking",
        kind: str = "eager",
    ):
        super().__init__()
        if not layers:
            raise ValueError("name at least one layer of the model to attach the loss-prediction module to")
        if objective not in ("margin_ranking", "mse"):
            raise ValueError(f"objective={objective!r} not supported, choose from margin_ranking, mse")
        self.layers = list(layers)
        self.taps = FeatureTaps(model, self.layers)  # refuses an unknown layer name, with close matches
        self.method = LearningLoss(
            objective=MarginRankingLoss(margin) if objective == "margin_ranking" else LossMSE(),
            weight=float(weight),
            detach_epoch=detach_epoch if detach_epoch is not None else 2**62,
            hidden=hidden,
        )
        self.module = self.method.new_module(len(self.layers), kind)

    def features(self) -> list[torch.Tensor]:
        """The tapped layers' outputs of the model's last forward pass, in `layers` order."""
        return self.taps.features(self.layers)

    def predicted_loss(self) -> torch.Tensor:
        """l̂ [B] for the model's last forward pass, fp32 (outside any autocast)."""
        return LearningLoss.predict(self.module, self.features())

    def forward(self) -> torch.Tensor:
        return self.predicted_loss()

    def loss(self, per_sample_loss: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """weight · objective(l̂, l) for the model's last forward pass; `per_sample_loss` is your loss per sample
        (e.g. `F.cross_entropy(..., reduction="none")`), used detached as the target. Add it to your loss."""
        return self.method.loss(self.module, self.features(), per_sample_loss, epoch)

    def remove(self) -> None:
        """Take the hooks off the model (the predictor is unusable afterwards)."""
        self.taps.remove()


def _first(batch):
    """A loader's batch as the model's input: the batch itself, or the first element of a (x, y, ...) tuple."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def attach_loss_module(
    model: nn.Module, layers: list[str], *, example_input: torch.Tensor | None = None, **options
) -> LossPredictor:
    """`LossPredictor(model, layers, **options)`; with `example_input` (a batch of two or more inputs), one
    forward pass in eval mode without gradients gives the module's layers their sizes, so that
    `predictor.parameters()` can go to an optimizer at once. Options: hidden, margin, weight (λ), detach_epoch,
    objective ("margin_ranking" or "mse"), kind ("eager", "fused", "compiled": `learning_loss.MODULE_KINDS`)."""
    if options.get("kind", "eager") not in MODULE_KINDS:
        raise ValueError(f"kind={options['kind']!r} not supported, choose from {', '.join(MODULE_KINDS)}")
    predictor = LossPredictor(model, layers, **options)
    if example_input is not None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example_input)
            predictor.predicted_loss()
        model.train(was_training)
        device = next((p.device for p in model.parameters()), None)
        if device is not None:
            predictor.to(device)
    return predictor


def ranking_loss(predicted_loss: torch.Tensor, target_loss: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The paper's loss-prediction loss (Sec. 3.3) for one batch: the batch split into B/2 disjoint pairs,
    mean over pairs of max(0, −sign(l_i − l_j)·(l̂_i − l̂_j) + margin); `target_loss` is detached."""
    return MarginRankingLoss(margin)(predicted_loss, target_loss)


def mse_loss(predicted_loss: torch.Tensor, target_loss: torch.Tensor) -> torch.Tensor:
    """The paper's "learn loss mse" variant: mean (l̂ − l)²; `target_loss` is detached."""
    return LossMSE()(predicted_loss, target_loss)


@torch.inference_mode()
def score_unlabeled(
    model: nn.Module,
    predictor: LossPredictor | None,
    loader: Iterable,
    *,
    probabilities: bool = False,
    embedding_layer: str | None = None,
    device: torch.device | str | None = None,
) -> Candidates:
    """One pass over an unlabeled loader in eval mode, without labels (a batch's first element is the input;
    anything else in it is ignored), as al-run scores its pool. Returns what a sampler may see
    (`samplers.Candidates`), N positions 0..N−1 in the loader's order (no ids: map the positions a sampler
    returns to your own, as al-run maps them to pool indices): `predicted_loss` (with a predictor),
    `probabilities` (softmax of the model's outputs, for entropy), `embedding` (the global-average-pooled
    output of `embedding_layer`, for core-set and the hybrid). The model is left in the mode it was in."""
    device = (
        torch.device(device)
        if device is not None
        else next((p.device for p in model.parameters()), torch.device("cpu"))
    )
    extra = FeatureTaps(model, [embedding_layer]) if embedding_layer else None
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    n = 0
    try:
        for batch in loader:
            inputs = _first(batch).to(device)
            n += len(inputs)
            outputs = model(inputs)
            if predictor is not None:
                parts.setdefault("predicted_loss", []).append(predictor.predicted_loss().cpu())
            if probabilities:
                parts.setdefault("probabilities", []).append(torch.softmax(outputs.float(), dim=1).cpu())
            if extra is not None:
                parts.setdefault("embedding", []).append(
                    global_average_pool(extra.features([embedding_layer])[0]).float().cpu()
                )
    finally:
        model.train(was_training)
        if extra is not None:
            extra.remove()
    values = {name: torch.cat(chunks) for name, chunks in parts.items()}
    if probabilities:
        values["uncertainty"] = entropy_scores(values["probabilities"])  # softmax entropy, as EntropySampler reads it
    return Candidates(count=n, **values)


def embed(model: nn.Module, loader: Iterable, layer: str, *, device: torch.device | str | None = None) -> torch.Tensor:
    """[N, C]: the global-average-pooled output of `layer` for every input of `loader` (eval mode, no labels
    read): the labeled set's embedding that core-set and the hybrid take as their initial centers."""
    return score_unlabeled(model, None, loader, embedding_layer=layer, device=device).embedding


def select(sampler: Sampler, candidates: Candidates, k: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions into the candidates, their scores), best first, from any of al_runner's samplers; `seed`
    drives a sampler's randomness (random, ties), through its own generator."""
    missing = [need for need in sampler.needs if getattr(candidates, need) is None]
    if missing:
        raise ValueError(
            f"{type(sampler).__name__} needs {', '.join(sorted(missing))} in the candidates "
            "(score_unlabeled(..., probabilities=True / embedding_layer=...); "
            "candidates.labeled_embedding = embed(model, labeled_loader, layer))"
        )
    return sampler.select(candidates, k, torch.Generator().manual_seed(seed))

"""Learning loss (Yoo & Kweon, CVPR 2019): the whole method in one place.

- `LossPredictionModule`: per tapped feature map GAP -> FC(C -> hidden) -> ReLU; concatenate -> FC(-> 1).
- Objectives: `MarginRankingLoss` (the paper's, Sec. 3.3) and `LossMSE` ("learn loss mse", Fig. 4).
- `LearningLoss`: the training hook. Given the tapped features and the per-sample target loss of the
  same forward pass, it returns λ · objective(l̂, l), detaching the features from `detach_epoch` on.
  It always computes in fp32, outside autocast, whatever precision the backbone ran in.
- `build_learning_loss`: the builder from config (`schedule.learning_loss` holds the numbers,
  `sampler.loss_objective` names the objective; baselines have none and train the plain model).

What is *not* here: the per-sample target loss (the task's `per_sample_loss`), the taps (forward hooks,
`al_runner.models.taps`) and the sampler that ranks by predicted loss (`al_runner.samplers`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from al_runner.errors import ConfigError
from al_runner.models.taps import global_average_pool


class LossPredictionModule(nn.Module):
    """Per tapped map: GAP -> FC(C -> hidden) -> ReLU; concatenate -> FC(-> 1) = predicted loss (Sec. 3.2).

    Lazy linear layers take any channel count, and GAP takes any spatial size, so the same module
    attaches to ResNet stages, SSD source maps or hourglass outputs. Call it once on real features
    (`Learner.materialize`) before building the optimizer.
    """

    def __init__(self, num_taps: int, hidden: int = 128):
        super().__init__()
        if num_taps < 1:
            raise ValueError("the loss-prediction module needs at least one tapped layer")
        self.branches = nn.ModuleList(
            nn.Sequential(nn.LazyLinear(hidden), nn.ReLU(inplace=True)) for _ in range(num_taps)
        )
        self.head = nn.Linear(hidden * num_taps, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} feature maps, got {len(features)}")
        hidden = [branch(global_average_pool(f)) for branch, f in zip(self.branches, features)]
        return self.head(torch.cat(hidden, dim=1)).squeeze(1)


def split_into_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint pairs (i, n-1-i) for i < n//2; with odd n the middle sample is left unpaired."""
    first = torch.arange(n // 2)
    return first, n - 1 - first


class MarginRankingLoss(nn.Module):
    """(2/B) Σ_pairs max(0, -s·(l̂_i - l̂_j) + ξ), s = +1 if l_i > l_j else -1 (Sec. 3.3).

    The batch is split into B/2 disjoint pairs; predictions and targets are paired with the *same*
    indices (a public reimplementation permuted only one of them). `target_loss` must be the
    per-sample target loss; it is detached here so the module's loss never reaches the target
    through its label. An odd batch leaves its middle sample unpaired (it still trains the target).
    """

    needs_even_batches = True

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

    needs_even_batches = False

    def forward(self, predicted_loss: torch.Tensor, target_loss: torch.Tensor) -> torch.Tensor:
        return torch.mean((predicted_loss.flatten() - target_loss.detach().flatten()) ** 2)


@dataclass
class LearningLoss:
    """How the loss-prediction module trains beside the target: L_target + weight · objective(l̂, l)."""

    objective: nn.Module
    weight: float  # λ
    detach_epoch: int  # from this epoch on the module's gradient no longer reaches the target model
    hidden: int = 128

    def new_module(self, num_taps: int) -> LossPredictionModule:
        return LossPredictionModule(num_taps, self.hidden)

    @staticmethod
    def predict(module: LossPredictionModule, features: list[torch.Tensor]) -> torch.Tensor:
        """l̂ in fp32 outside autocast: bf16 would round 1,000 distinct predictions to ~100-160 values."""
        with torch.autocast(features[0].device.type, enabled=False):
            return module([f.float() for f in features])

    def loss(self, module: LossPredictionModule, features: list[torch.Tensor], per_sample_loss: torch.Tensor,
             epoch: int) -> torch.Tensor:
        """λ · objective(l̂, l) for one batch; l (the task's per-sample loss) is the detached target."""
        if epoch >= self.detach_epoch:  # the module keeps learning, the target model gets no gradient from it
            features = [f.detach() for f in features]
        predicted = self.predict(module, features)
        return self.weight * self.objective(predicted, per_sample_loss.detach().float())


# The objectives a sampler may name in `loss_objective`, and the λ key of `schedule.learning_loss` each uses.
OBJECTIVES = {
    "margin_ranking": (lambda spec: MarginRankingLoss(margin=float(spec.margin)), "weight"),
    "mse": (lambda spec: LossMSE(), "weight_mse"),
}


def fraction_to_epoch(fraction: float, epochs: int, key: str) -> int:
    """A schedule point given as a fraction of the epochs (0.6 of 200 -> 120), so `epochs=50` keeps the shape."""
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ConfigError(f"{key}={fraction} must be a fraction of schedule.epochs in [0, 1] (e.g. 0.6 = 120 of 200 epochs)")
    return int(round(fraction * epochs))


def build_learning_loss(objective_name: str | None, spec, epochs: int, batch_size: int) -> LearningLoss | None:
    """From `sampler.loss_objective` and `schedule.learning_loss`; None for baselines (plain target model)."""
    if objective_name is None:
        return None
    if objective_name not in OBJECTIVES:
        raise ConfigError(f"sampler.loss_objective={objective_name} not supported, choose from {', '.join(OBJECTIVES)} (or null)")
    make_objective, weight_key = OBJECTIVES[objective_name]
    objective = make_objective(spec)
    if objective.needs_even_batches and batch_size % 2:
        raise ConfigError(
            f"schedule.batch_size={batch_size} is odd: the margin ranking loss splits each batch into "
            f"B/2 disjoint pairs, so use an even batch size"
        )
    return LearningLoss(
        objective=objective, weight=float(spec[weight_key]),
        detach_epoch=fraction_to_epoch(spec.detach_at, epochs, "schedule.learning_loss.detach_at"),
        hidden=int(spec.hidden),
    )

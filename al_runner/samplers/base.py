"""What every sampler shares: the candidates it sees, the ranking, and the interface.

Samplers receive model outputs for unlabeled *inputs* only (a `Candidates` record): by construction
they never see a label of an unlabeled point. The one exception is an oracle (`reads_labels = True`,
`al_runner.samplers.oracle`), a diagnostic that reads the real loss of the candidates on purpose and
must be named `oracle_*` in its config so that no table can mistake it for a method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class GradientEmbedding:
    """BADGE's gradient embedding of the last layer, kept factored: g_i = loss_gradient_i ⊗ features_i.

    For the cross-entropy loss at the predicted label ŷ, the gradient with respect to the last linear
    layer's weight is (p - onehot(ŷ)) ⊗ h, where h is that layer's input. The dense C·d vector is never
    built: ||g_i||² = ||a_i||²·||h_i||² and <g_i, g_j> = <a_i, a_j>·<h_i, h_j>, so distances cost
    O(N·(C + d)) memory instead of O(N·C·d) (5,120-d at C = 10, d = 512).
    """

    loss_gradient: torch.Tensor  # [N, C]: p - onehot(argmax p)
    features: torch.Tensor  # [N, d]: the last layer's input

    def __len__(self) -> int:
        return self.loss_gradient.shape[0]

    @classmethod
    def cat(cls, parts: list["GradientEmbedding"]) -> "GradientEmbedding":
        return cls(torch.cat([p.loss_gradient for p in parts]), torch.cat([p.features for p in parts]))

    def sq_norms(self) -> torch.Tensor:
        return (self.loss_gradient * self.loss_gradient).sum(1) * (self.features * self.features).sum(1)

    def dots_with(self, j: torch.Tensor) -> torch.Tensor:
        """<g_i, g_j> for every i (j a 0-d index tensor; stays on the device, no host sync)."""
        return (self.loss_gradient @ self.loss_gradient[j]) * (self.features @ self.features[j])

    def dense(self) -> torch.Tensor:
        """[N, C·d]: only for tests and small N."""
        return (self.loss_gradient[:, :, None] * self.features[:, None, :]).flatten(1)


@dataclass
class Candidates:
    """What a sampler may see about the scored subset; each field is filled only if the sampler needs it."""

    indices: torch.Tensor  # pool indices of the scored subset
    uncertainty: torch.Tensor | None = None  # [N]: the task's uncertainty (classification: softmax entropy)
    probabilities: torch.Tensor | None = None  # [N, C] class probabilities
    mc_probabilities: torch.Tensor | None = None  # [N, C, T] class probabilities of T stochastic passes
    gradient_embedding: GradientEmbedding | None = None
    predicted_loss: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    labeled_embedding: torch.Tensor | None = None  # core-set centers
    true_loss: torch.Tensor | None = None  # ORACLE ONLY: the real loss, read through the task's labeled path

    def __len__(self) -> int:
        return self.indices.numel()


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k highest scores; ties keep candidate order (stable) for reproducibility."""
    return torch.argsort(scores, descending=True, stable=True)[:k]


class Sampler(ABC):
    """A query strategy. `needs` names what it reads from `Candidates`; the learner's table of needs
    (`al_runner.learner.NEEDS`) computes them and refuses, before training, what a task cannot give."""

    needs: frozenset[str] = frozenset()
    needs_labeled_embedding: bool = False
    reads_labels: bool = False  # True only for oracles (diagnostics, never methods)

    @property
    def need_options(self) -> dict:
        """Settings of parameterised needs (the last layer's name, the number of stochastic passes)."""
        return {}

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

"""What every sampler shares: the ranking and the interface.

Samplers receive model outputs for unlabeled *inputs* only (a `Candidates` record, `al_runner.samplers.needs`),
by position: by construction they never see a label of an unlabeled point, nor a pool index (which can encode
one). The one exception is an oracle (`reads_labels = True`, `al_runner.samplers.oracle`), a diagnostic that
reads the real loss of the candidates on purpose and must be named `oracle_*` in its config so that no table
can mistake it for a method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from al_runner.samplers.needs import LABELED, NEEDS, Candidates, unknown_needs


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k highest scores; ties keep candidate order (stable) for reproducibility."""
    return torch.argsort(scores, descending=True, stable=True)[:k]


class Sampler(ABC):
    """A query strategy. `needs` names what it reads from `Candidates`, from the declarations of
    `al_runner.samplers.needs.NEEDS`; the learner computes them and refuses, before training, what a task
    cannot give."""

    needs: frozenset[str] = frozenset()
    reads_labels: bool = False  # True only for oracles (diagnostics, never methods)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if unknown := unknown_needs(cls.needs):
            raise TypeError(f"{cls.__name__} needs {', '.join(unknown)}: not declared in samplers.needs.NEEDS")

    @property
    def needs_labeled_embedding(self) -> bool:
        """Whether the candidates must also carry values over the labeled set (core-set's centers): for users
        who build `Candidates` themselves (`al_runner.api`)."""
        return any(NEEDS[name].over == LABELED for name in self.needs)

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

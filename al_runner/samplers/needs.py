"""What a sampler may need, declared once: `NEEDS`, one `Need` per name, and `Candidates`, which holds them.

A `Need` says what the value is, how the learner computes it from one eval-mode forward pass over a batch
(`compute`), why a task or learner might be unable to give it (`missing`, asked at build time, before
training), whether it reads labels (oracles only) and over which points it is computed: the candidates, or
the labeled set (core-set's initial centers). A sampler names what it reads (`Sampler.needs`); the loop
computes exactly that (`al_runner.loop.select`) and hands it over as `Candidates`, whose keys are the names
declared here and nothing else. Adding a need is one entry of `NEEDS`.

`Candidates` holds no pool index: a sampler sees positions 0..n-1 only. Pool indices can encode labels (an
ImageFolder pool is ordered by class), so the loop maps positions back to pool indices after selection.

A task gives class probabilities if it defines `class_probabilities(outputs) -> [B, C]` (classification
does; detection and pose do not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # only for annotations: the learner imports this module
    from al_runner.learner import Learner
    from al_runner.tasks.base import Task

CANDIDATES = "candidates"  # computed over the scored candidates: one row per candidate position
LABELED = "labeled"  # computed over the labeled set: one row per labeled point


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


@dataclass(frozen=True)
class ForwardPass:
    """One eval-mode forward pass over a batch, as a need's `compute` reads it."""

    learner: Learner
    task: Task
    outputs: Any  # the model's outputs, fp32
    options: dict  # the sampler's `need_options` (the last layer's name, the number of MC passes)
    generator: torch.Generator | None = None  # drives stochastic passes (MC dropout)
    targets: Any = None  # the batch's labels: given only on the labeled path, to needs that read labels


def available(learner: Learner, task: Task, options: dict) -> str | None:
    """Every task and learner can give it."""
    return None


@dataclass(frozen=True)
class Need:
    """One thing a sampler may read about its candidates (the name is its key in `NEEDS`)."""

    description: str  # what it is, with its shape per batch of B points
    compute: Callable[[ForwardPass], Any]  # -> [B, ...] tensor, or a value with `len` and a `cat` (GradientEmbedding)
    missing: Callable[[Learner, Task, dict], str | None] = available  # why it cannot be given, or None
    reads_labels: bool = False  # oracles only: computed on the task's labeled path (`loop.score_with_labels`)
    over: str = CANDIDATES  # CANDIDATES or LABELED: the points it is computed over


# --- why a need might not be given ----------------------------------------------------------------------
def no_class_probabilities(learner: Learner, task: Task, options: dict) -> str | None:
    if callable(getattr(task, "class_probabilities", None)):
        return None
    return f"task {task.name} gives no class probabilities (classification tasks do)"


def no_last_layer(learner: Learner, task: Task, options: dict) -> str | None:
    layer = options.get("last_layer")
    if layer in dict(learner.model.named_modules()) and isinstance(learner.model.get_submodule(layer), nn.Linear):
        return no_class_probabilities(learner, task, options)
    return (
        f"{type(learner.model).__name__} has no linear layer '{layer}' "
        f"(sampler.strategy.last_layer must name the classifier, e.g. fc)"
    )


def no_loss_module(learner: Learner, task: Task, options: dict) -> str | None:
    if learner.loss_module is not None:
        return None
    return "the loss-prediction module is not trained: set sampler.loss_objective (e.g. margin_ranking)"


# --- how a need is computed from a forward pass -----------------------------------------------------------
def uncertainty(f: ForwardPass) -> torch.Tensor:
    return f.task.uncertainty(f.outputs).float()


def class_probabilities(f: ForwardPass) -> torch.Tensor:
    return f.task.class_probabilities(f.outputs).float()


def mc_probabilities(f: ForwardPass) -> torch.Tensor:
    """[B, C, T]: T passes of the last layer on its input with dropout (MC dropout on the classifier input).

    The backbone ran once; only the last layer is re-run, on T dropout masks drawn from the generator on the
    CPU (the same masks on any device)."""
    if f.generator is None:
        raise ValueError("stochastic passes need a generator")
    layer = f.learner.model.get_submodule(f.options["last_layer"])
    features = f.learner.layer_input(f.options["last_layer"])
    passes, p = int(f.options["mc_passes"]), float(f.options["mc_dropout"])
    keep = torch.bernoulli(torch.full((passes, *features.shape), 1.0 - p), generator=f.generator)
    with torch.autocast(features.device.type, enabled=False):
        logits = layer(features.unsqueeze(0) * keep.to(features.device) / (1.0 - p))  # [T, B, C]
    probabilities = f.task.class_probabilities(logits.flatten(0, 1)).float()
    return probabilities.view(passes, features.shape[0], -1).permute(1, 2, 0)


def gradient_embedding(f: ForwardPass) -> GradientEmbedding:
    """BADGE: the cross-entropy gradient at the predicted label w.r.t. the last layer's weight, factored as
    (p - onehot(ŷ)) ⊗ h (h = that layer's input; the outputs are that layer's logits)."""
    probabilities = f.task.class_probabilities(f.outputs).float()
    predicted = nn.functional.one_hot(probabilities.argmax(1), probabilities.shape[1]).float()
    return GradientEmbedding(probabilities - predicted, f.learner.layer_input(f.options["last_layer"]))


def predicted_loss(f: ForwardPass) -> torch.Tensor:
    return f.learner.predicted_loss()


def embedding(f: ForwardPass) -> torch.Tensor:
    return f.learner.embedding()


def true_loss(f: ForwardPass) -> torch.Tensor:
    return f.task.per_sample_loss(f.outputs, f.targets).float()


NEEDS: dict[str, Need] = {
    "uncertainty": Need("[B]: the task's uncertainty (classification: softmax entropy)", compute=uncertainty),
    "probabilities": Need("[B, C]: class probabilities", compute=class_probabilities, missing=no_class_probabilities),
    "mc_probabilities": Need(
        "[B, C, T]: class probabilities of T stochastic passes (MC dropout on the last layer's input)",
        compute=mc_probabilities,
        missing=no_last_layer,
    ),
    "gradient_embedding": Need(
        "BADGE's last-layer gradient embedding at the predicted label (a GradientEmbedding of B rows)",
        compute=gradient_embedding,
        missing=no_last_layer,
    ),
    "predicted_loss": Need("[B]: the loss-prediction module's l̂", compute=predicted_loss, missing=no_loss_module),
    "embedding": Need(
        "[B, D]: the model's embedding (the configured reduction of one tapped layer)", compute=embedding
    ),
    "labeled_embedding": Need(
        "[L, D]: the embedding of each labeled point (core-set's initial centers)", compute=embedding, over=LABELED
    ),
    "true_loss": Need(
        "[B]: ORACLE ONLY: the real loss, read through the task's labeled path", compute=true_loss, reads_labels=True
    ),
}


def needs_over(names, over: str, *, reads_labels: bool) -> frozenset[str]:
    """Those of `names` computed over `over` (CANDIDATES or LABELED) that do / do not read labels."""
    return frozenset(n for n in names if NEEDS[n].over == over and NEEDS[n].reads_labels == reads_labels)


def unknown_needs(names) -> list[str]:
    return sorted(set(names) - set(NEEDS))


class Candidates:
    """What a sampler may see: the values of its needs, keyed by the names of `NEEDS` and nothing else.

    Candidate-level values have one row per candidate position 0..n-1 (n = `len(candidates)`, from `count` or
    from the values); labeled-set values (`over=LABELED`) one row per labeled point. A need not given reads as
    None. No pool index is held: positions are all a sampler can return.
    """

    def __init__(self, *, count: int | None = None, **values):
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_count", None if count is None else int(count))
        for name, value in values.items():
            setattr(self, name, value)
        if self._count is None:
            raise ValueError("Candidates needs a count or at least one candidate-level need to know its length")

    def __getattr__(self, name: str):
        if name in NEEDS:
            return self._values.get(name)
        raise AttributeError(f"Candidates has no '{name}': it holds only the needs {', '.join(NEEDS)}")

    def __setattr__(self, name: str, value) -> None:
        if name not in NEEDS:
            raise AttributeError(f"'{name}' is not a need (needs: {', '.join(NEEDS)}); Candidates holds no pool index")
        if value is not None and NEEDS[name].over == CANDIDATES:
            self._check_length(name, len(value))
        self._values[name] = value

    def _check_length(self, name: str, length: int) -> None:
        if self._count is None:
            object.__setattr__(self, "_count", length)
        elif length != self._count:
            raise ValueError(f"{name} has {length} rows for {self._count} candidates")

    def __len__(self) -> int:
        return self._count

    def given(self) -> list[str]:
        """The names of the needs given (not None)."""
        return [name for name, value in self._values.items() if value is not None]

    def __repr__(self) -> str:
        return f"Candidates(count={self._count}, needs={self.given()})"

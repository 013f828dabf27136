"""Oracles: diagnostics that read labels ON PURPOSE. Never a method.

An oracle is told the real loss of each candidate through the task's labeled path (the same door the
trainer uses, opened explicitly in `al_runner.loop.score_with_labels`), so it shows what a perfect loss
ranking would select. Its config must be named `oracle_*` (checked at build time) so that every CSV,
table and figure says what it is.
"""

from __future__ import annotations

from al_runner.samplers.base import Sampler


class TrueLossOracle(Sampler):
    """Highest *real* loss first: what learning loss would pick with a perfect loss-prediction module.

    (The public reimplementation's users found it selects worse than the predicted loss: the hardest
    points are often outliers or mislabeled.)"""

    needs = frozenset({"true_loss"})
    reads_labels = True

    def score(self, candidates, generator):
        return candidates.true_loss

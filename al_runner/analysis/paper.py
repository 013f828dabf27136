"""The numbers reported in "Learning Loss for Active Learning" (Yoo & Kweon, CVPR 2019), in one place.

All of them are for the last active-learning cycle of the paper's protocol: 1,000 initial labels + 1,000 per
cycle, 10 cycles, i.e. 10,000 labeled points. Keyed by our task names (`cifar10`, `voc`, `mpii`) and sampler
names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperValue:
    value: float
    source: str
    approximate: bool = False  # True where the number is read off a plot rather than quoted in the text


# All final numbers are at the paper's last cycle: 10 cycles of K = 1,000 (paper Sec. 4.1-4.3).
PAPER_N_LABELED_LAST_CYCLE = 10_000

PAPER_TASKS = ("cifar10", "voc", "mpii")

# Task metric at the last cycle, per task and sampler. The paper gives no final number for the
# "learn loss mse" variant, so it has no entry.
PAPER_LAST_CYCLE_METRIC: dict[str, dict[str, PaperValue]] = {
    # CIFAR-10, classification accuracy: paper Fig. 4 and Sec. 4.1 text.
    "cifar10": {
        "learning_loss": PaperValue(0.9101, "Fig. 4 / Sec. 4.1"),
        "entropy": PaperValue(0.9059, "Fig. 4 / Sec. 4.1"),
        "coreset": PaperValue(0.9010, "Fig. 4 / Sec. 4.1"),
        "random": PaperValue(0.8764, "Fig. 4 / Sec. 4.1"),
    },
    # PASCAL VOC 2007 test, mAP@0.5 (11-point): paper Fig. 6 and Sec. 4.2 text.
    "voc": {
        "learning_loss": PaperValue(0.7338, "Fig. 6 / Sec. 4.2"),
        "entropy": PaperValue(0.7222, "Fig. 6 / Sec. 4.2"),
        "coreset": PaperValue(0.7171, "Fig. 6 / Sec. 4.2"),
        "random": PaperValue(0.7117, "Fig. 6 / Sec. 4.2"),
    },
    # MPII val, PCKh@0.5: paper Fig. 7 and Sec. 4.3 text.
    "mpii": {
        "learning_loss": PaperValue(0.8046, "Fig. 7 / Sec. 4.3"),
        "entropy": PaperValue(0.7899, "Fig. 7 / Sec. 4.3"),
        "coreset": PaperValue(0.7985, "Fig. 7 / Sec. 4.3"),
        "random": PaperValue(0.7862, "Fig. 7 / Sec. 4.3"),
    },
}

# Ranking accuracy of the loss-prediction module (sampler learning_loss) at the last cycle: paper Fig. 5.
PAPER_RANKING_ACCURACY: dict[str, PaperValue] = {
    "cifar10": PaperValue(0.9074, "Fig. 5 / Sec. 4.1"),
    # VOC and MPII are given only as curves: values read off the paper's Fig. 5 (approximate).
    "voc": PaperValue(0.70, "Fig. 5", approximate=True),
    "mpii": PaperValue(0.75, "Fig. 5", approximate=True),
}

# Pearson correlation with the real loss over 2,000 MPII test points of the last cycle: paper Fig. 8.
PAPER_FIG8_CORRELATION: dict[str, dict[str, PaperValue]] = {
    "mpii": {
        "predicted_loss": PaperValue(0.68, "Fig. 8"),
        "uncertainty": PaperValue(0.45, "Fig. 8"),  # the entropy of the joint heatmaps' softmax (Sec. 4.3)
    },
}


__all__ = [
    "PaperValue",
    "PAPER_N_LABELED_LAST_CYCLE",
    "PAPER_TASKS",
    "PAPER_LAST_CYCLE_METRIC",
    "PAPER_RANKING_ACCURACY",
    "PAPER_FIG8_CORRELATION",
    "paper_metric",
    "paper_ranking_accuracy",
]


def paper_metric(paper_task: str | None, sampler: str) -> PaperValue | None:
    """The paper's last-cycle metric for this task/sampler, or None where the paper has none."""
    return PAPER_LAST_CYCLE_METRIC.get(paper_task or "", {}).get(sampler)


def paper_ranking_accuracy(paper_task: str | None, sampler: str) -> PaperValue | None:
    """The paper's ranking accuracy; it only reports one for the margin-ranking ("learn loss") module."""
    if sampler != "learning_loss":
        return None
    return PAPER_RANKING_ACCURACY.get(paper_task or "")

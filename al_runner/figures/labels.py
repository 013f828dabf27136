"""Display names, order and colours shared by every figure and table."""

from __future__ import annotations

# The paper's five samplers, in the paper's legend order.
PAPER_SAMPLERS = ("random", "entropy", "coreset", "learning_loss_mse", "learning_loss")

# Not a paper sampler: trains the module like learning_loss, selects like random (conf/sampler/random_with_module.yaml).
CONTROL_SAMPLER = "random_with_module"

SAMPLER_LABELS = {
    "random": "random",
    "entropy": "entropy",
    "coreset": "core-set",
    "learning_loss_mse": "learn loss mse",
    "learning_loss": "learn loss",
    CONTROL_SAMPLER: "random + module (control)",
    # not the paper's samplers (conf/sampler/; docs/statistics.md)
    "margin": "margin",
    "least_confidence": "least confidence",
    "bald": "BALD",
    "badge": "BADGE",
    "hybrid": "learn loss + core-set",
    "entropy_with_module": "entropy + module (control)",
    "oracle_true_loss": "ORACLE true loss (reads labels)",
}

# Fixed colours so that a sampler looks the same in every figure.
SAMPLER_COLORS = {
    "random": "tab:gray",
    "entropy": "tab:blue",
    "coreset": "tab:green",
    "learning_loss_mse": "tab:purple",
    "learning_loss": "tab:red",
}
_EXTRA_COLORS = ("tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")

TASK_LABELS = {"cifar10": "CIFAR-10", "voc": "VOC", "mpii": "MPII"}

# Which paper figure shows each paper task's learning curve.
PAPER_FIGURE_NUMBER = {"cifar10": 4, "voc": 6, "mpii": 7}
# The same figure number for a task that is not the paper's dataset, by the kind of its metric (the file name
# says "a detection curve" as fig6_<task>); its title then names no paper figure.
METRIC_FIGURE_NUMBER = {"accuracy": 4, "mAP@0.5": 6, "PCKh@0.5": 7}


def figure_number(paper_task: str | None, metric: str) -> int:
    """The paper figure this learning curve corresponds to: the paper task's, else the one for its metric's kind."""
    return PAPER_FIGURE_NUMBER.get(paper_task or "") or METRIC_FIGURE_NUMBER.get(metric, PAPER_FIGURE_NUMBER["cifar10"])


def sampler_label(sampler: str) -> str:
    """Paper legend name; unknown samplers keep their raw name."""
    return SAMPLER_LABELS.get(sampler, sampler)


def sampler_sort_key(sampler: str) -> tuple[int, str]:
    """Paper order first, then unknown samplers alphabetically."""
    if sampler in PAPER_SAMPLERS:
        return (PAPER_SAMPLERS.index(sampler), "")
    return (len(PAPER_SAMPLERS), sampler)


def ordered_samplers(samplers) -> list[str]:
    return sorted(set(samplers), key=sampler_sort_key)


def sampler_colors(samplers) -> dict[str, str]:
    """Colour per sampler: the fixed one for paper samplers, the next spare one otherwise."""
    colors, spare = {}, 0
    for sampler in ordered_samplers(samplers):
        if sampler in SAMPLER_COLORS:
            colors[sampler] = SAMPLER_COLORS[sampler]
        else:
            colors[sampler] = _EXTRA_COLORS[spare % len(_EXTRA_COLORS)]
            spare += 1
    return colors


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def ranking_variant_label(task: str, sampler: str, *, show_task: bool) -> str:
    """Fig. 5 legend: the sampler whose module ranks ("learn loss", "learn loss mse"), prefixed with the task
    when the figure holds several ("CIFAR-10: learn loss")."""
    return f"{task_label(task)}: {sampler_label(sampler)}" if show_task else sampler_label(sampler)

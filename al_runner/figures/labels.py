"""Display names, order and colours shared by every figure and table."""

from __future__ import annotations

from pathlib import Path

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
# Line styles of the samplers that are not the paper's: the paper's five are solid, the others never are, and
# after every spare colour has been used once with a style the next style starts: (colour, style) stays unique.
_EXTRA_STYLES = ("--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))

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


def _extra_style(index: int):
    """The index-th style after the listed ones: a dash pattern no other index gets."""
    if index < len(_EXTRA_STYLES):
        return _EXTRA_STYLES[index]
    dash = 2 + index - len(_EXTRA_STYLES)
    return (0, (dash, 1.5))


def sampler_styles(samplers) -> dict[str, tuple[str, object]]:
    """(colour, line style) per sampler, a different pair for every sampler however many there are: the paper's
    samplers keep their fixed colour, solid; every other sampler takes the next spare colour with a dashed,
    dash-dotted, dotted, ... line (all spare colours with one style, then all with the next)."""
    styles, spare = {}, 0
    for sampler in ordered_samplers(samplers):
        if sampler in SAMPLER_COLORS:
            styles[sampler] = (SAMPLER_COLORS[sampler], "-")
        else:
            styles[sampler] = (_EXTRA_COLORS[spare % len(_EXTRA_COLORS)], _extra_style(spare // len(_EXTRA_COLORS)))
            spare += 1
    return styles


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


# Tasks named after a reader rather than a dataset: their figures name the folder they read instead.
FOLDER_TASKS = ("imagefolder", "voc_folder")  # tasks that read a user's folder: figures name the folder


def dataset_label(task: str, paper_task: str | None = None, roots=()) -> str:
    """What a figure's title calls the data: the paper's name when the runs are on (or mapped to) the paper's
    dataset ("CIFAR-10"), the root folder's name for a reader task such as imagefolder ("my_images"; several
    roots joined with " + "), else the task's own name."""
    if paper_task in TASK_LABELS:
        return TASK_LABELS[paper_task]
    names = sorted({Path(str(root)).name for root in roots if str(root).strip() and Path(str(root)).name})
    if task in FOLDER_TASKS and names:
        return " + ".join(names)
    return task_label(task)


def ranking_variant_label(task: str, sampler: str, *, show_task: bool, dataset: str | None = None) -> str:
    """Fig. 5 legend: the sampler whose module ranks ("learn loss", "learn loss mse"), prefixed with the data
    when the figure holds several tasks ("CIFAR-10: learn loss")."""
    return f"{dataset or task_label(task)}: {sampler_label(sampler)}" if show_task else sampler_label(sampler)

"""PCKh@0.5 in original-image coordinates, as MPII's official evaluation computes it.

A joint is correct when ||prediction - truth|| / head_size < threshold (strict, as bearpaw's
`evaluation/eval_PCKh.py` / `eval_PCKh.m` do; HRNet and mmpose use <=, which differs only on exact ties).
Every *annotated* joint counts, occluded ones included (`jnt_visible = 1 - jnt_missing`). Per-joint
PCKh = correct / counted. The headline "Mean" leaves out pelvis and thorax and, by default, weights
each joint by how many people have it annotated (`mean: weighted`): the MPII toolkit pools all joints
(`computePCK.m`), HRNet / mmpose take `sum(PCKh * jnt_ratio)`. `mean: unweighted` is the plain mean
over the 14 joints that bearpaw's `eval_PCKh.py` prints (`np.mean` of the masked array); the two
differ whenever joints are annotated unequally often (ankles are missing more often than heads).

Head size, per person (the task decides, `details()` reports which was used): the official
ground-truth file's head box (0.6 x diagonal); else a head box in the annotation file; else the
fallback, the head segment upper neck -> head top (MPII's PCKh definition, Andriluka et al. 2014),
which is *not* the official number.
"""

from __future__ import annotations

import torch

from al_runner.errors import ConfigError
from al_runner.tasks.base import Metric
from al_runner.tasks.pose.annotations import JOINT_NAMES, NUM_JOINTS
from al_runner.tasks.pose.geometry import crop_to_image, decode_heatmaps

# Where a person's head size came from; the code is its index (targets["head_size_source"]).
HEAD_SIZE_SOURCES = ("official_gt_file", "annotation_headbox", "head_segment")


def pckh_correct(
    pred: torch.Tensor, truth: torch.Tensor, annotated: torch.Tensor, head_size: torch.Tensor, threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct [J], counted [J]) summed over the batch. pred/truth [B, J, 2], annotated [B, J], head_size [B]."""
    dist = torch.linalg.vector_norm(pred.double() - truth.double(), dim=-1) / head_size.double()[:, None]
    # a person whose head size is unknown (no head box, head joints not annotated) cannot be scored
    counted = annotated.bool() & scored_people(head_size)[:, None]
    correct = (dist < threshold) & counted
    return correct.sum(0), counted.sum(0)


def scored_people(head_size: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(head_size) & (head_size > 0)


def weighted_mean(correct: torch.Tensor, counted: torch.Tensor) -> float:
    """Pooled over joints = sum_j PCKh_j * counted_j / sum counted (the official "Mean")."""
    return float(correct.sum().double() / counted.sum().double()) if counted.sum() > 0 else 0.0


def unweighted_mean(correct: torch.Tensor, counted: torch.Tensor) -> float:
    """Plain mean of the per-joint PCKh; a joint nobody annotated is left out (not counted as 0)."""
    has = counted > 0
    return float((correct[has].double() / counted[has].double()).mean()) if has.any() else 0.0


MEANS = {"weighted": weighted_mean, "unweighted": unweighted_mean}


class PCKh(Metric):
    def __init__(
        self, input_size: int, threshold: float = 0.5, mean_excludes: tuple[int, ...] = (6, 7), mean: str = "weighted"
    ):
        if mean not in MEANS:
            raise ConfigError(f"PCKh mean '{mean}' not supported, choose from {', '.join(MEANS)}")
        self.input_size, self.threshold, self.mean = input_size, threshold, MEANS[mean]
        self.mean_joints = torch.tensor([j for j in range(NUM_JOINTS) if j not in set(mean_excludes)])
        self.correct = torch.zeros(NUM_JOINTS, dtype=torch.long)
        self.counted = torch.zeros(NUM_JOINTS, dtype=torch.long)
        self.people_by_source = torch.zeros(len(HEAD_SIZE_SOURCES), dtype=torch.long)

    def update(self, outputs, targets) -> None:
        heatmaps = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs  # the last stack predicts
        points = decode_heatmaps(heatmaps.float(), self.input_size)
        self.update_points(crop_to_image(points.double(), targets["box"], self.input_size), targets)

    def update_points(self, pred: torch.Tensor, targets: dict) -> None:
        """Predictions [B, 16, 2] already in annotation (1-based image) coordinates."""
        correct, counted = pckh_correct(
            pred, targets["joints"], targets["joints_annotated"], targets["head_size"], self.threshold
        )
        self.correct += correct.cpu()
        self.counted += counted.cpu()
        sources = targets["head_size_source"][scored_people(targets["head_size"])].cpu()
        self.people_by_source += torch.bincount(sources, minlength=len(HEAD_SIZE_SOURCES))

    def per_joint(self) -> torch.Tensor:
        return self.correct.double() / self.counted.clamp(min=1).double()

    def compute(self) -> float:
        return self.mean(self.correct[self.mean_joints], self.counted[self.mean_joints])

    def details(self) -> dict[str, float]:
        """Per-joint PCKh, and the share of scored people per head-size source (official or fallback)."""
        per_joint = self.per_joint()
        details = {f"PCKh_{name}": float(per_joint[j]) for j, name in enumerate(JOINT_NAMES) if self.counted[j] > 0}
        people = self.people_by_source.sum().clamp(min=1)
        details |= {
            f"head_size_source_{name}": float(n.double() / people.double())
            for name, n in zip(HEAD_SIZE_SOURCES, self.people_by_source)
        }
        return details

"""PCKh@0.5 in original-image coordinates, as MPII's official evaluation computes it.

A joint is correct when ||prediction - truth|| / head_size < threshold (strict, as the official
`eval_PCKh` does); only visible (annotated) joints count. Per-joint PCKh = correct / counted; the
headline is the mean over joints, leaving out pelvis and thorax by default (the official "Mean").

Head size: the annotation's head box when the file has one (official: 0.6 * diagonal); otherwise the
head segment, upper neck to head top, MPII's own definition of PCKh (Andriluka et al. 2014). Neither
public json carries head boxes; the reimplementation evaluated against `detections_our_format.mat`
head boxes, which these files do not hold.
"""
from __future__ import annotations

import torch

from al_runner.tasks.base import Metric
from al_runner.tasks.pose.annotations import JOINT_NAMES, NUM_JOINTS
from al_runner.tasks.pose.geometry import crop_to_image, decode_heatmaps


def pckh_correct(pred: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor, head_size: torch.Tensor,
                 threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct [J], counted [J]) summed over the batch. pred/truth [B, J, 2], visible [B, J], head_size [B]."""
    dist = torch.linalg.vector_norm(pred.double() - truth.double(), dim=-1) / head_size.double()[:, None]
    # a person whose head size is unknown (no head box, head joints not annotated) cannot be scored
    counted = visible.bool() & (torch.isfinite(head_size) & (head_size > 0))[:, None]
    correct = (dist < threshold) & counted
    return correct.sum(0), counted.sum(0)


class PCKh(Metric):
    def __init__(self, input_size: int, threshold: float = 0.5, mean_excludes: tuple[int, ...] = (6, 7)):
        self.input_size, self.threshold = input_size, threshold
        self.mean_joints = [j for j in range(NUM_JOINTS) if j not in set(mean_excludes)]
        self.correct = torch.zeros(NUM_JOINTS, dtype=torch.long)
        self.counted = torch.zeros(NUM_JOINTS, dtype=torch.long)

    def update(self, outputs, targets) -> None:
        heatmaps = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs  # the last stack predicts
        points = decode_heatmaps(heatmaps.float(), self.input_size)
        pred = crop_to_image(points.double(), targets["box"], self.input_size)
        correct, counted = pckh_correct(pred, targets["joints"], targets["joints_visible"], targets["head_size"],
                                        self.threshold)
        self.correct += correct.cpu()
        self.counted += counted.cpu()

    def per_joint(self) -> torch.Tensor:
        return self.correct.double() / self.counted.clamp(min=1).double()

    def compute(self) -> float:
        keep = torch.tensor(self.mean_joints)
        keep = keep[self.counted[keep] > 0]  # a joint nobody annotated does not count as 0
        return float(self.per_joint()[keep].mean()) if len(keep) else 0.0

    def details(self) -> dict[str, float]:
        per_joint = self.per_joint()
        return {f"PCKh_{name}": float(per_joint[j]) for j, name in enumerate(JOINT_NAMES) if self.counted[j] > 0}

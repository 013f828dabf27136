"""VOC2007 mAP@0.5 with 11-point interpolated AP, difficult objects ignored.

Hand-written: torchvision has no detection metric (torchmetrics' MeanAveragePrecision is COCO-style,
needs pycocotools, and has no VOC07 11-point mode). This follows the VOC devkit's `VOCevaldet` / the
py-faster-rcnn `voc_eval` that SSD's code reports:
- per class, detections of all images sorted by score (descending);
- a detection is matched to the ground-truth box of its class in its image with the highest IoU; if
  that IoU >= 0.5: a difficult box -> ignored (neither TP nor FP); a box not yet claimed -> TP, else FP
  (duplicate); below 0.5 -> FP;
- recall is over the non-difficult boxes; AP = mean over t in {0, 0.1, ..., 1} (exactly: `RECALL_THRESHOLDS`)
  of the highest precision at recall >= t (0 where recall never reaches t).
IoU: continuous coordinates (torchvision's `box_iou`), which *is* the devkit's "+1" pixel-area IoU: the data
reader maps a devkit box (xmin, ymin, xmax, ymax) to (xmin - 1, ymin - 1, xmax, ymax), so a continuous width
xmax - (xmin - 1) is the devkit's xmax - xmin + 1 (intersections likewise). Boxes live in the resized network
input, which leaves IoU unchanged (axis-aligned scaling) up to float32 rounding. Matching at IoU >= 0.5 is the
devkit's `VOCevaldet.m` (py-faster-rcnn's Python port writes `> 0.5`). Checked against the devkit logic re-typed:
`scripts/fidelity_voc_map.py`, outputs/reference/fidelity/detection_map.md.
A class with no non-difficult ground truth has no AP (NaN in `details()`) and is left out of the mean.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.ops import box_iou

from al_runner.tasks.base import Metric

# The devkit's t = 0:0.1:1, exactly 0.0, 0.1, ..., 1.0: k / 10 is the double nearest to each, whereas
# np.arange(0, 1.1, 0.1) (py-faster-rcnn's voc_ap) gives 0.30000000000000004, 0.6000000000000001 and
# 0.7000000000000001, so a recall of exactly 0.3 (3 of 10 objects) would miss its point.
RECALL_THRESHOLDS = np.arange(11) / 10.0


def voc07_average_precision(
    detections: list[dict], ground_truths: list[dict], num_classes: int, iou_thresh: float = 0.5
) -> list[float]:
    """AP of classes 1..num_classes. detections[i]: boxes, scores, labels; ground_truths[i]: boxes, labels,
    difficult (bool), for the same image i. Returns a list of num_classes APs (NaN: no ground truth)."""
    matches = _best_matches(detections, ground_truths)
    return [_class_ap(matches, c, iou_thresh) for c in range(1, num_classes + 1)]


def _best_matches(detections: list[dict], ground_truths: list[dict]) -> dict[str, np.ndarray]:
    """Per detection: label, score, and its best same-class ground truth in its image (IoU, global index;
    -1 when the image has none). One IoU matrix per image, all classes at once."""
    labels, scores, best_iou, best_gt, gt_labels, gt_difficult = [], [], [], [], [], []
    offset = 0
    for det, gt in zip(detections, ground_truths):
        n, m = len(det["labels"]), len(gt["labels"])
        if n:
            iou, index = np.zeros(n), np.full(n, -1)
            if m:
                same_class = det["labels"][:, None] == gt["labels"][None, :]
                overlap = box_iou(det["boxes"].double(), gt["boxes"].double()).masked_fill(~same_class, -1.0)
                value, where = overlap.max(dim=1)
                has_gt = same_class.any(dim=1).numpy()
                iou[has_gt], index[has_gt] = value.numpy()[has_gt], where.numpy()[has_gt] + offset
            labels.append(det["labels"].numpy())
            scores.append(det["scores"].double().numpy())
            best_iou.append(iou)
            best_gt.append(index)
        gt_labels.append(gt["labels"].numpy())
        gt_difficult.append(gt["difficult"].numpy())
        offset += m

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return {
        "labels": cat(labels, np.int64),
        "scores": cat(scores, np.float64),
        "best_iou": cat(best_iou, np.float64),
        "best_gt": cat(best_gt, np.int64),
        "gt_labels": cat(gt_labels, np.int64),
        "gt_difficult": cat(gt_difficult, bool),
    }


def _class_ap(matches: dict[str, np.ndarray], label: int, iou_thresh: float) -> float:
    num_positive = int(((matches["gt_labels"] == label) & ~matches["gt_difficult"]).sum())
    if num_positive == 0:
        return math.nan
    mine = np.flatnonzero(matches["labels"] == label)
    if mine.size == 0:
        return 0.0
    order = mine[np.argsort(-matches["scores"][mine], kind="stable")]
    tp, fp = _greedy_match(matches["best_gt"][order], matches["best_iou"][order], matches["gt_difficult"], iou_thresh)
    return _eleven_point_ap(tp, fp, num_positive)


def _greedy_match(best_gt: np.ndarray, best_iou: np.ndarray, gt_difficult: np.ndarray, iou_thresh: float):
    """Detections in score order claim their best ground truth (the devkit's sequential loop)."""
    tp, fp = np.zeros(len(best_gt)), np.zeros(len(best_gt))
    claimed = [False] * len(gt_difficult)
    difficult = gt_difficult.tolist()
    for k, (gt, iou) in enumerate(zip(best_gt.tolist(), best_iou.tolist())):
        if gt < 0 or iou < iou_thresh:
            fp[k] = 1
        elif difficult[gt]:
            continue  # matched a difficult object: ignored
        elif not claimed[gt]:
            tp[k], claimed[gt] = 1, True
        else:
            fp[k] = 1  # duplicate detection
    return tp, fp


def _eleven_point_ap(tp: np.ndarray, fp: np.ndarray, num_positive: int) -> float:
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / num_positive
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in RECALL_THRESHOLDS:
        ap += (precision[recall >= t].max() if (recall >= t).any() else 0.0) / 11.0
    return float(ap)


class VOC07MeanAP(Metric):
    """Collects detections (via `detect`, torchvision's post-processing) and ground truth on the host."""

    def __init__(self, class_names: list[str], detect, iou_thresh: float = 0.5):
        self.class_names, self.detect, self.iou_thresh = list(class_names), detect, iou_thresh
        self.detections: list[dict] = []
        self.ground_truths: list[dict] = []
        self._aps: list[float] | None = None

    def update(self, outputs, targets) -> None:
        for det, target in zip(self.detect(outputs), targets):
            self.add(det, target)

    def add(self, detection: dict, target: dict) -> None:
        """One image: detection (boxes, scores, labels); target (boxes, labels [+ difficult_boxes/labels])."""
        empty_boxes = target["boxes"].new_zeros((0, 4))
        difficult_boxes = target.get("difficult_boxes", empty_boxes)
        difficult_labels = target.get("difficult_labels", target["labels"].new_zeros((0,)))
        self.detections.append({k: detection[k].detach().float().cpu() for k in ("boxes", "scores", "labels")})
        self.ground_truths.append(
            {
                "boxes": torch.cat([target["boxes"], difficult_boxes]).detach().float().cpu(),
                "labels": torch.cat([target["labels"], difficult_labels]).cpu(),
                "difficult": torch.cat(
                    [
                        torch.zeros(len(target["labels"]), dtype=torch.bool),
                        torch.ones(len(difficult_labels), dtype=torch.bool),
                    ]
                ),
            }
        )
        self._aps = None

    def class_aps(self) -> list[float]:
        if self._aps is None:
            self._aps = voc07_average_precision(
                self.detections, self.ground_truths, len(self.class_names), self.iou_thresh
            )
        return self._aps

    def compute(self) -> float:
        present = [ap for ap in self.class_aps() if not math.isnan(ap)]
        return float(np.mean(present)) if present else math.nan

    def details(self) -> dict[str, float]:
        return {f"AP/{name}": ap for name, ap in zip(self.class_names, self.class_aps())}

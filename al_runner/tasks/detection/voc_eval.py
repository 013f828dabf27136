"""VOC2007 mAP@0.5 with 11-point interpolated AP, difficult objects ignored.

Hand-written: torchvision has no detection metric (torchmetrics' MeanAveragePrecision is COCO-style,
needs pycocotools, and has no VOC07 11-point mode). This follows the VOC devkit's `VOCevaldet` / the
py-faster-rcnn `voc_eval` that SSD's code reports:
- per class, detections of all images sorted by score (descending);
- a detection is matched to the ground-truth box of its class in its image with the highest IoU; if
  that IoU >= 0.5: a difficult box -> ignored (neither TP nor FP); a box not yet claimed -> TP, else FP
  (duplicate); below 0.5 -> FP;
- recall is over the non-difficult boxes; AP = mean over t in {0, 0.1, ..., 1} of the highest precision
  at recall >= t (0 where recall never reaches t).
Deviation: IoU uses continuous coordinates (torchvision's `box_iou`), not the devkit's "+1" pixel areas;
boxes live in the resized network input, which leaves IoU unchanged (axis-aligned scaling).
A class with no non-difficult ground truth has no AP (NaN in `details()`) and is left out of the mean.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.ops import box_iou

from al_runner.tasks.base import Metric


def voc07_average_precision(detections: list[dict], ground_truths: list[dict], num_classes: int,
                            iou_thresh: float = 0.5) -> list[float]:
    """AP of classes 1..num_classes. detections[i]: boxes, scores, labels; ground_truths[i]: boxes, labels,
    difficult (bool), for the same image i. Returns a list of num_classes APs (NaN: no ground truth)."""
    return [_class_ap(detections, ground_truths, c, iou_thresh) for c in range(1, num_classes + 1)]


def _class_ap(detections, ground_truths, label: int, iou_thresh: float) -> float:
    num_positive = sum(int((~gt["difficult"][gt["labels"] == label]).sum()) for gt in ground_truths)
    if num_positive == 0:
        return math.nan
    scores, images, best_gt, best_iou = [], [], [], []
    difficult_of_image = []
    for image, (det, gt) in enumerate(zip(detections, ground_truths)):
        d = det["labels"] == label
        g = gt["labels"] == label
        difficult_of_image.append(gt["difficult"][g].numpy())
        if not bool(d.any()):
            continue
        n = int(d.sum())
        scores.append(det["scores"][d].double().numpy())
        images.append(np.full(n, image))
        if bool(g.any()):
            iou, index = box_iou(det["boxes"][d].double(), gt["boxes"][g].double()).max(dim=1)
            best_iou.append(iou.numpy())
            best_gt.append(index.numpy())
        else:
            best_iou.append(np.zeros(n))
            best_gt.append(np.full(n, -1))
    if not scores:
        return 0.0
    scores, images = np.concatenate(scores), np.concatenate(images)
    best_gt, best_iou = np.concatenate(best_gt), np.concatenate(best_iou)
    order = np.argsort(-scores, kind="stable")
    tp, fp = _greedy_match(images[order], best_gt[order], best_iou[order], difficult_of_image, iou_thresh)
    return _eleven_point_ap(tp, fp, num_positive)


def _greedy_match(images, best_gt, best_iou, difficult_of_image, iou_thresh):
    tp, fp = np.zeros(len(images)), np.zeros(len(images))
    claimed = [np.zeros(len(d), dtype=bool) for d in difficult_of_image]
    for k, (image, gt, iou) in enumerate(zip(images.tolist(), best_gt.tolist(), best_iou.tolist())):
        if iou < iou_thresh:
            fp[k] = 1
        elif difficult_of_image[image][gt]:
            continue  # matched a difficult object: ignored
        elif not claimed[image][gt]:
            tp[k], claimed[image][gt] = 1, True
        else:
            fp[k] = 1  # duplicate detection
    return tp, fp


def _eleven_point_ap(tp: np.ndarray, fp: np.ndarray, num_positive: int) -> float:
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / num_positive
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):  # the devkit's 0:0.1:1
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
        self.ground_truths.append({
            "boxes": torch.cat([target["boxes"], difficult_boxes]).detach().float().cpu(),
            "labels": torch.cat([target["labels"], difficult_labels]).cpu(),
            "difficult": torch.cat([torch.zeros(len(target["labels"]), dtype=torch.bool),
                                    torch.ones(len(difficult_labels), dtype=torch.bool)]),
        })
        self._aps = None

    def class_aps(self) -> list[float]:
        if self._aps is None:
            self._aps = voc07_average_precision(self.detections, self.ground_truths, len(self.class_names),
                                                self.iou_thresh)
        return self._aps

    def compute(self) -> float:
        present = [ap for ap in self.class_aps() if not math.isnan(ap)]
        return float(np.mean(present)) if present else math.nan

    def details(self) -> dict[str, float]:
        return {f"AP/{name}": ap for name, ap in zip(self.class_names, self.class_aps())}

"""SSD's MultiBox loss per image, detection entropy, and torchvision's post-processing on raw head outputs.

Outputs are the dict the SSD wrappers return: cls_logits [B, A, C+1], bbox_regression [B, A, 4] and
anchors [B, A, 4] (pixels of the network input). Matching, box encoding and hard-negative mining are
torchvision's (`SSDMatcher`, `BoxCoder((10, 10, 5, 5))`, the sort-based 3:1 mining of `SSD.compute_loss`);
only the per-image normalisation is added: image i's loss is divided by *its own* number of matched
anchors, which is the target the loss-prediction module ranks. The batch loss is computed with the very
operations of `SSD.compute_loss` (sum over the batch / all matched anchors), so training is standard SSD.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD
from torchvision.ops import boxes as box_ops

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision SSD's (= SSD's variances 0.1, 0.2)


class MultiBoxLoss:
    def __init__(self, iou_thresh: float = 0.5, neg_to_pos_ratio: float = 3.0):
        self.box_coder = det_utils.BoxCoder(weights=BOX_CODER_WEIGHTS)
        self.matcher = det_utils.SSDMatcher(iou_thresh)
        self.neg_to_pos_ratio = neg_to_pos_ratio

    def match(self, targets: list[dict], anchors: torch.Tensor) -> list[torch.Tensor]:
        """Per image: the matched ground-truth index of each anchor, -1 = background (as `SSD.forward`)."""
        matched = []
        for anchors_per_image, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64,
                                          device=anchors_per_image.device))
                continue
            matched.append(self.matcher(box_ops.box_iou(target["boxes"], anchors_per_image)))
        return matched

    def __call__(self, outputs: dict, targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-image losses [B], batch loss == torchvision's bbox_regression + classification)."""
        cls_logits, bbox_regression, anchors = outputs["cls_logits"], outputs["bbox_regression"], outputs["anchors"]
        matched_idxs = self.match(targets, anchors)
        bbox_loss, cls_targets, num_matched = [], [], []
        for target, regression, anchors_per_image, matched in zip(targets, bbox_regression, anchors, matched_idxs):
            foreground = torch.where(matched >= 0)[0]
            foreground_matched = matched[foreground]
            num_matched.append(foreground_matched.numel())
            target_regression = self.box_coder.encode_single(target["boxes"][foreground_matched],
                                                              anchors_per_image[foreground, :])
            bbox_loss.append(F.smooth_l1_loss(regression[foreground, :], target_regression, reduction="sum"))
            classes = torch.zeros((cls_logits.size(1),), dtype=target["labels"].dtype, device=target["labels"].device)
            classes[foreground] = target["labels"][foreground_matched]
            cls_targets.append(classes)
        bbox_loss, cls_targets = torch.stack(bbox_loss), torch.stack(cls_targets)

        num_classes = cls_logits.size(-1)
        cls_loss = F.cross_entropy(cls_logits.reshape(-1, num_classes), cls_targets.view(-1),
                                   reduction="none").view(cls_targets.size())
        foreground_mask = cls_targets > 0
        background_mask = self._hard_negatives(cls_loss, foreground_mask)

        n_total = max(1, sum(num_matched))
        batch_loss = (bbox_loss.sum() / n_total
                      + (cls_loss[foreground_mask].sum() + cls_loss[background_mask].sum()) / n_total)
        per_image_sum = (bbox_loss + (cls_loss * foreground_mask).sum(1) + (cls_loss * background_mask).sum(1))
        per_image = per_image_sum / torch.tensor(num_matched, device=cls_loss.device).clamp(min=1)
        return per_image, batch_loss

    def _hard_negatives(self, cls_loss: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        """The neg_to_pos_ratio x #positives highest-loss background anchors per image (torchvision's sort)."""
        num_negative = self.neg_to_pos_ratio * foreground.sum(1, keepdim=True)
        negative_loss = cls_loss.clone()
        negative_loss[foreground] = -float("inf")
        _, order = negative_loss.sort(1, descending=True)
        return order.sort(1)[1] < num_negative


def detection_entropy(cls_logits: torch.Tensor, score_thresh: float, top_k: int) -> torch.Tensor:
    """[B] mean entropy of the class softmax (background included) over an image's detections.

    Detections = the top_k anchors by best foreground-class score among those scoring > score_thresh,
    before NMS (NMS only removes near-duplicates of the same object, whose softmaxes are near-identical).
    An image with no anchor above the threshold uses its single best anchor, so the value is defined.
    """
    log_p = F.log_softmax(cls_logits.float(), dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)                      # [B, A]
    best_foreground = log_p[..., 1:].max(-1).values.exp()          # [B, A]
    scores, order = best_foreground.topk(min(top_k, best_foreground.size(1)), dim=1)
    keep = scores > score_thresh
    keep[:, 0] = True
    picked = entropy.gather(1, order)
    return (picked * keep).sum(1) / keep.sum(1)


class SSDPostprocess:
    """torchvision's `SSD.postprocess_detections` (decode, per-class score threshold + top-k, NMS), bound to
    these settings instead of a full SSD module, so it runs on the wrappers' raw outputs."""

    _torchvision_postprocess = SSD.postprocess_detections

    def __init__(self, score_thresh: float = 0.01, nms_thresh: float = 0.45, topk_candidates: int = 400,
                 detections_per_img: int = 200):
        self.box_coder = det_utils.BoxCoder(weights=BOX_CODER_WEIGHTS)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img

    def __call__(self, outputs: dict, image_size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        head = {"cls_logits": outputs["cls_logits"].float(), "bbox_regression": outputs["bbox_regression"].float()}
        anchors = list(outputs["anchors"].float())
        return self._torchvision_postprocess(head, anchors, [tuple(image_size)] * len(anchors))

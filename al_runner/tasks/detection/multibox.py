"""SSD's MultiBox loss per image, detection entropy, and SSD post-processing (torchvision's) on raw head outputs.

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
                matched.append(
                    torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64, device=anchors_per_image.device)
                )
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
            target_regression = self.box_coder.encode_single(
                target["boxes"][foreground_matched], anchors_per_image[foreground, :]
            )
            bbox_loss.append(F.smooth_l1_loss(regression[foreground, :], target_regression, reduction="sum"))
            classes = torch.zeros((cls_logits.size(1),), dtype=target["labels"].dtype, device=target["labels"].device)
            classes[foreground] = target["labels"][foreground_matched]
            cls_targets.append(classes)
        bbox_loss, cls_targets = torch.stack(bbox_loss), torch.stack(cls_targets)

        num_classes = cls_logits.size(-1)
        cls_loss = F.cross_entropy(cls_logits.reshape(-1, num_classes), cls_targets.view(-1), reduction="none").view(
            cls_targets.size()
        )
        foreground_mask = cls_targets > 0
        background_mask = self._hard_negatives(cls_loss, foreground_mask)

        n_total = max(1, sum(num_matched))
        batch_loss = (
            bbox_loss.sum() / n_total + (cls_loss[foreground_mask].sum() + cls_loss[background_mask].sum()) / n_total
        )
        per_image_sum = bbox_loss + (cls_loss * foreground_mask).sum(1) + (cls_loss * background_mask).sum(1)
        per_image = per_image_sum / torch.tensor(num_matched, device=cls_loss.device).clamp(min=1)
        return per_image, batch_loss

    def _hard_negatives(self, cls_loss: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        """The neg_to_pos_ratio x #positives highest-loss background anchors per image (torchvision's sort)."""
        num_negative = self.neg_to_pos_ratio * foreground.sum(1, keepdim=True)
        negative_loss = cls_loss.clone()
        negative_loss[foreground] = -float("inf")
        _, order = negative_loss.sort(1, descending=True)
        return order.sort(1)[1] < num_negative


def anchor_entropy(cls_logits: torch.Tensor) -> torch.Tensor:
    """[B, A] entropy of each anchor's class softmax (background included), fp32."""
    log_p = F.log_softmax(cls_logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def entropy_over_detections(outputs: dict, detect) -> torch.Tensor:
    """[B] mean class-softmax entropy over an image's output boxes, after NMS (the paper's entropy, Sec. 4.2).

    detect(outputs) = the post-processed detections (`SSDPostprocess`: score threshold, top-k, NMS), each
    with the anchor it came from; a box's softmax is its anchor's. An anchor that yields boxes of two
    classes counts twice, as its two boxes do. An image without any box (no class above the detector's
    score threshold) uses its anchor with the highest foreground score, so the value is always defined.
    """
    entropy = anchor_entropy(outputs["cls_logits"])
    fallback = outputs["cls_logits"].float().softmax(-1)[..., 1:].amax(-1).argmax(1)  # [B]
    means = []
    for i, detections in enumerate(detect(outputs)):
        anchors = detections["anchor_index"] if detections["anchor_index"].numel() else fallback[i : i + 1]
        means.append(entropy[i, anchors].mean())
    return torch.stack(means)


def entropy_over_top_anchors(outputs: dict, detect=None, score_thresh: float = 0.01, top_k: int = 200) -> torch.Tensor:
    """[B] the named pre-NMS variant: mean entropy over the top_k anchors by best foreground score among
    those scoring > score_thresh (NMS only removes near-duplicates, whose softmaxes are near-identical).
    An image with no anchor above the threshold uses its single best anchor. `detect` is not used."""
    entropy = anchor_entropy(outputs["cls_logits"])  # [B, A]
    best_foreground = outputs["cls_logits"].float().softmax(-1)[..., 1:].amax(-1)  # [B, A]
    scores, order = best_foreground.topk(min(top_k, best_foreground.size(1)), dim=1)
    keep = scores > score_thresh
    keep[:, 0] = True
    picked = entropy.gather(1, order)
    return (picked * keep).sum(1) / keep.sum(1)


class SSDPostprocess:
    """torchvision's `SSD.postprocess_detections` (decode, per-class score threshold + top-k, NMS) on the
    wrappers' raw outputs, also returning each box's anchor (`anchor_index`).

    Hand-written twin of torchvision's loop, step for step: torchvision's function does not say which
    anchor a box came from, and the entropy baseline needs that anchor's softmax. Tested to return
    torchvision's boxes, scores and labels exactly.
    """

    def __init__(
        self,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        topk_candidates: int = 400,
        detections_per_img: int = 200,
    ):
        self.box_coder = det_utils.BoxCoder(weights=BOX_CODER_WEIGHTS)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img

    def __call__(self, outputs: dict, image_size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        scores = F.softmax(outputs["cls_logits"].float(), dim=-1)
        regressions, anchors = outputs["bbox_regression"].float(), outputs["anchors"].float()
        return [self._one_image(r, s, a, tuple(image_size)) for r, s, a in zip(regressions, scores, anchors)]

    def _one_image(self, regression, scores, anchors, image_size) -> dict[str, torch.Tensor]:
        boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(regression, anchors), image_size)
        kept_anchors, kept_scores, kept_labels = [], [], []
        for label in range(1, scores.size(-1)):
            candidates = torch.where(scores[:, label] > self.score_thresh)[0]
            score, top = scores[candidates, label].topk(min(self.topk_candidates, candidates.numel()))
            kept_anchors.append(candidates[top])
            kept_scores.append(score)
            kept_labels.append(torch.full_like(top, label))
        anchor_index, score, labels = torch.cat(kept_anchors), torch.cat(kept_scores), torch.cat(kept_labels)
        keep = box_ops.batched_nms(boxes[anchor_index], score, labels, self.nms_thresh)[: self.detections_per_img]
        return {
            "boxes": boxes[anchor_index[keep]],
            "scores": score[keep],
            "labels": labels[keep],
            "anchor_index": anchor_index[keep],
        }

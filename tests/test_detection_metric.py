"""VOC07 11-point mAP@0.5 on hand-built cases with known AP, and through torchvision's post-processing."""

import math

import pytest
import torch
from torchvision.models.detection import _utils as det_utils

from al_runner.tasks.detection.multibox import BOX_CODER_WEIGHTS, SSDPostprocess
from al_runner.tasks.detection.voc_eval import VOC07MeanAP, voc07_average_precision

A = [10.0, 10.0, 50.0, 50.0]
B = [60.0, 60.0, 100.0, 100.0]
NEAR_A = [12.0, 11.0, 51.0, 49.0]  # IoU with A ~ 0.88
OFF = [200.0, 200.0, 240.0, 240.0]  # overlaps nothing


def det(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes, labels, difficult=None):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * len(labels), dtype=torch.bool),
    }


def ap1(detections, ground_truths):
    return voc07_average_precision(detections, ground_truths, num_classes=1)[0]


def test_perfect_detections_give_ap_one():
    assert ap1([det([A, B], [0.9, 0.8], [1, 1])], [gt([A, B], [1, 1])]) == pytest.approx(1.0)


def test_false_positive_ranked_first_halves_precision():
    # precision [0, 1/2] at recall [0, 1]: every one of the 11 points sees 0.5
    assert ap1([det([OFF, A], [0.9, 0.8], [1, 1])], [gt([A], [1])]) == pytest.approx(0.5)
    # ranked last it costs nothing (precision 1 is reached at recall 1 first)
    assert ap1([det([A, OFF], [0.9, 0.8], [1, 1])], [gt([A], [1])]) == pytest.approx(1.0)


def test_missed_object_caps_recall():
    # recall reaches 0.5 only: points t = 0, 0.1, ..., 0.5 see precision 1 -> 6/11
    assert ap1([det([A], [0.9], [1])], [gt([A, B], [1, 1])]) == pytest.approx(6 / 11)


def test_duplicate_detection_is_a_false_positive():
    # TP(A) 0.9, duplicate on A 0.8, TP(B) 0.7: precision [1, 1/2, 2/3] at recall [.5, .5, 1]
    value = ap1([det([A, NEAR_A, B], [0.9, 0.8, 0.7], [1, 1, 1])], [gt([A, B], [1, 1])])
    assert value == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)


def test_difficult_objects_are_ignored_not_counted():
    ground_truth = [gt([A, B], [1, 1], [False, True])]
    # a detection on the difficult object is neither TP nor FP; missing it costs no recall
    assert ap1([det([B, A], [0.95, 0.9], [1, 1])], ground_truth) == pytest.approx(1.0)
    assert ap1([det([A], [0.9], [1])], ground_truth) == pytest.approx(1.0)


def test_class_without_ground_truth_is_left_out_of_the_mean():
    metric = VOC07MeanAP(["cat", "dog"], detect=None)
    metric.add(det([A, OFF], [0.9, 0.95], [1, 2]), {"boxes": torch.tensor([A]), "labels": torch.tensor([1])})
    aps = metric.details()
    assert aps["AP/cat"] == pytest.approx(1.0) and math.isnan(aps["AP/dog"])
    assert metric.compute() == pytest.approx(1.0)


def test_detections_in_other_images_and_classes_do_not_match():
    # the right box in the wrong image, and the right box with the wrong class, are false positives
    detections = [det([], [], []), det([A, A], [0.9, 0.8], [1, 2])]
    ground_truths = [gt([A], [1]), gt([B], [1])]
    assert voc07_average_precision(detections, ground_truths, 2)[0] == pytest.approx(0.0)


def test_metric_through_torchvision_postprocess_on_exact_head_outputs():
    """Raw outputs encoding each ground-truth box at one anchor with a confident class -> mAP 1."""
    anchors = torch.tensor([[0.0, 0.0, 40.0, 40.0], [40.0, 40.0, 90.0, 90.0], [0.0, 50.0, 30.0, 100.0]])
    truth = torch.tensor([[5.0, 4.0, 38.0, 41.0], [45.0, 42.0, 88.0, 95.0]])
    coder = det_utils.BoxCoder(weights=BOX_CODER_WEIGHTS)
    regression = torch.zeros(1, 3, 4)
    regression[0, :2] = coder.encode_single(truth, anchors[:2])
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0, 1] = logits[0, 1, 2] = 10.0
    logits[0, 2, 0] = 10.0  # background
    outputs = {"cls_logits": logits, "bbox_regression": regression, "anchors": anchors[None]}
    metric = VOC07MeanAP(["a", "b"], lambda out: SSDPostprocess()(out, (100, 100)))
    metric.update(outputs, [{"boxes": truth, "labels": torch.tensor([1, 2])}])
    assert metric.compute() == pytest.approx(1.0)
    # swapping the two ground-truth labels makes every detection a false positive
    metric = VOC07MeanAP(["a", "b"], lambda out: SSDPostprocess()(out, (100, 100)))
    metric.update(outputs, [{"boxes": truth, "labels": torch.tensor([2, 1])}])
    assert metric.compute() == pytest.approx(0.0)


def boxes_in_a_row(n, y=0.0):
    """n disjoint 20x20 boxes side by side."""
    return [[30.0 * i, y, 30.0 * i + 20.0, y + 20.0] for i in range(n)]


def test_recall_of_exactly_three_tenths_counts_at_the_point_0_3():
    """3 of 10 objects found with precision 1: the points t = 0, 0.1, 0.2 and 0.3 see precision 1 -> 4/11.
    With np.arange(0, 1.1, 0.1) the fourth point is 0.30000000000000004 > 3/10 and the AP drops to 3/11."""
    truth = boxes_in_a_row(10)
    value = ap1([det(truth[:3], [0.9, 0.8, 0.7], [1, 1, 1])], [gt(truth, [1] * 10)])
    assert value == pytest.approx(4 / 11, abs=1e-12)
    # 6 of 10 and 7 of 10: the points 0.6 and 0.7, where arange drifts too
    assert ap1([det(truth[:6], [0.9] * 6, [1] * 6)], [gt(truth, [1] * 10)]) == pytest.approx(7 / 11, abs=1e-12)
    assert ap1([det(truth[:7], [0.9] * 7, [1] * 7)], [gt(truth, [1] * 10)]) == pytest.approx(8 / 11, abs=1e-12)


def test_detections_are_ranked_across_images_not_within_each():
    """Image 1: TP 0.9, FP 0.5; image 2: TP 0.8. Global order TP, TP, FP: precision 1 up to recall 1 -> AP 1.
    Image by image (TP 0.9, FP 0.5, then TP 0.8) precision at recall 1 would be 2/3 -> (6 + 5 * 2/3) / 11."""
    detections = [det([A, OFF], [0.9, 0.5], [1, 1]), det([B], [0.8], [1])]
    ground_truths = [gt([A], [1]), gt([B], [1])]
    assert ap1(detections, ground_truths) == pytest.approx(1.0)
    # the same three detections, the image-2 TP now scored below the FP: the order really is global
    detections[1] = det([B], [0.4], [1])
    assert ap1(detections, ground_truths) == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_postprocess_returns_torchvisions_detections_and_their_anchors():
    """Our twin of SSD.postprocess_detections: the same boxes, scores and labels, in the same order, on random
    head outputs (many candidates, overlapping boxes, so thresholding, top-k and NMS all act)."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite

    generator = torch.Generator().manual_seed(0)
    num_anchors, num_classes = 600, 4
    anchors = torch.rand(num_anchors, 2, generator=generator) * 80
    anchors = torch.cat([anchors, anchors + 10 + torch.rand(num_anchors, 2, generator=generator) * 30], 1)
    outputs = {
        "cls_logits": torch.randn(2, num_anchors, num_classes, generator=generator) * 3,
        "bbox_regression": torch.randn(2, num_anchors, 4, generator=generator),
        "anchors": anchors.expand(2, -1, -1),
    }
    ours_settings = SSDPostprocess(score_thresh=0.05, nms_thresh=0.45, topk_candidates=100, detections_per_img=50)
    ours = ours_settings(outputs, (100, 100))
    reference = tv_ssdlite(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        score_thresh=0.05,
        nms_thresh=0.45,
        topk_candidates=100,
        detections_per_img=50,
    )
    expected = reference.postprocess_detections(
        {"cls_logits": outputs["cls_logits"], "bbox_regression": outputs["bbox_regression"]},
        list(outputs["anchors"]),
        [(100, 100)] * 2,
    )
    for mine, theirs, regression in zip(ours, expected, outputs["bbox_regression"]):
        assert len(mine["scores"]) == 50  # detections_per_img reached: NMS and top-k both cut
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(mine[key], theirs[key]), key
        # each box decodes from the anchor it names
        decoded = ours_settings.box_coder.decode_single(regression[mine["anchor_index"]], anchors[mine["anchor_index"]])
        torch.testing.assert_close(decoded.clamp(0, 100), mine["boxes"])


def test_iou_of_exactly_one_half_is_a_match_as_in_the_devkit():
    """VOCevaldet.m matches at ovmax >= 0.5 (py-faster-rcnn's port writes > 0.5): a third-width shift is IoU 0.5."""
    assert ap1([det([[10.0, 0.0, 40.0, 10.0]], [0.9], [1])], [gt([[0.0, 0.0, 30.0, 10.0]], [1])]) == pytest.approx(1.0)
    assert ap1([det([[11.0, 0.0, 41.0, 10.0]], [0.9], [1])], [gt([[0.0, 0.0, 30.0, 10.0]], [1])]) == pytest.approx(0.0)

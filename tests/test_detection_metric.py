"""VOC07 11-point mAP@0.5 on hand-built cases with known AP, and through torchvision's post-processing."""
import math

import pytest
import torch

from al_runner.tasks.detection.multibox import BOX_CODER_WEIGHTS, SSDPostprocess
from al_runner.tasks.detection.voc_eval import VOC07MeanAP, voc07_average_precision
from torchvision.models.detection import _utils as det_utils

A = [10.0, 10.0, 50.0, 50.0]
B = [60.0, 60.0, 100.0, 100.0]
NEAR_A = [12.0, 11.0, 51.0, 49.0]   # IoU with A ~ 0.88
OFF = [200.0, 200.0, 240.0, 240.0]  # overlaps nothing


def det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}


def gt(boxes, labels, difficult=None):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "difficult": torch.tensor(difficult or [False] * len(labels), dtype=torch.bool)}


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

"""Per-image MultiBox loss vs torchvision's SSD.compute_loss; the loss module learns to rank it; the entropy
baseline (after NMS, and the named pre-NMS variant)."""

import math

import pytest
import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite

from al_runner.learning_loss import LossPredictionModule, MarginRankingLoss
from al_runner.models.taps import FeatureTaps
from al_runner.tasks.detection import (
    SSDPostprocess,
    VOCDetectionTask,
    entropy_over_detections,
    entropy_over_top_anchors,
    ssdlite320_mobilenet_v3_large,
)
from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit
from al_runner.tasks.detection.multibox import MultiBoxLoss

SIZE = 96
TAPS = [f"backbone[{i}]" for i in range(6)]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = generate_vocdevkit(tmp_path_factory.mktemp("voc"), images=24, seed=1)
    return VOCDetectionTask(
        "voc_synth",
        str(root),
        list(CLASSES),
        [[2007, "trainval"], [2012, "trainval"]],
        [[2007, "test"]],
        image_size=SIZE,
    )


def first_batch(task, n, seed=0):
    return next(iter(task.labeled_batches(torch.arange(n), n, torch.Generator().manual_seed(seed))))


def torchvision_loss(ssd, targets, outputs):
    """torchvision's own SSD.compute_loss on the same head outputs, anchors and matching (as SSD.forward)."""
    anchors = list(outputs["anchors"])
    matched = MultiBoxLoss().match(targets, outputs["anchors"])
    losses = ssd.compute_loss(targets, outputs, anchors, matched)
    return sum(losses.values())


def test_batch_loss_is_exactly_torchvision_compute_loss_and_per_image_losses_combine_into_it(task):
    torch.manual_seed(0)
    reference = tv_ssdlite(weights=None, weights_backbone=None, num_classes=len(CLASSES) + 1)
    images, targets, _ = first_batch(task, 6)
    targets[2] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # no object: all background
    outputs = ssdlite320_mobilenet_v3_large(num_classes=len(CLASSES) + 1)(images)
    per_image, batch = task.training_losses(outputs, targets)
    expected = torchvision_loss(reference, targets, outputs)
    assert torch.equal(batch, expected)
    matched = torch.tensor([int((m >= 0).sum()) for m in MultiBoxLoss().match(targets, outputs["anchors"])])
    assert matched[2] == 0 and per_image[2] == 0 and bool((matched[[0, 1, 3, 4, 5]] > 0).all())
    # each image is normalised by its own matched anchors; re-weighted they give the batch loss
    combined = (per_image * matched.clamp(min=1)).sum() / matched.sum().clamp(min=1)
    torch.testing.assert_close(combined, batch, rtol=1e-6, atol=0)
    assert per_image.shape == (6,) and per_image.dtype == torch.float32
    assert len(set(per_image.tolist())) == 6 - 0  # distinct per image: the module has something to rank


def test_wrapper_loss_equals_full_torchvision_ssd_forward():
    """The wrapper (backbone + head + default boxes, normalisation kept) reproduces SSD.forward's losses."""
    torch.manual_seed(0)
    ssd = tv_ssdlite(weights=None, weights_backbone=None, num_classes=3).train()
    from al_runner.tasks.detection.models import SSDHeadOutputs

    wrapper = SSDHeadOutputs(ssd).train()
    images = torch.rand(2, 3, 320, 320)
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 120.0, 200.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[50.0, 50.0, 300.0, 310.0], [0.0, 0.0, 60.0, 40.0]]), "labels": torch.tensor([2, 1])},
    ]
    expected = sum(ssd(list(images), targets).values())
    _, batch = MultiBoxLoss()(wrapper(images), targets)
    torch.testing.assert_close(batch, expected, rtol=1e-5, atol=1e-5)


def test_ranking_loss_is_nonzero_and_trainable_on_a_generated_batch(task):
    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(num_classes=len(CLASSES) + 1).train()
    taps = FeatureTaps(model, TAPS)
    images, targets, _ = first_batch(task, 8)
    outputs = model(images)
    per_image, _ = task.training_losses(outputs, targets)
    features = [f.detach() for f in taps.features(TAPS)]
    module = LossPredictionModule(num_taps=6, hidden=16)
    module(features)  # materialise the lazy layers
    ranking = MarginRankingLoss(margin=1.0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    start = ranking(module(features), per_image).item()
    assert start > 0
    for _ in range(40):
        optimizer.zero_grad()
        loss = ranking(module(features), per_image)
        loss.backward()
        optimizer.step()
    assert ranking(module(features), per_image).item() < 0.5 * start


def entropy_case():
    """Raw outputs of one 100x100 image whose detections are known (zero regression: each box = its anchor).

    anchor 0 on box A: background 0.5 / class 1 0.5 -> a class-1 box, entropy ln 2
    anchor 1 on box A too, class 1 at 0.27 (entropy 0.58): a near-duplicate that NMS removes
    anchor 2 on box B: class 2 at ~1 (entropy ~0)
    anchor 3 on box C: 1/3 each -> a class-1 AND a class-2 box, entropy ln 3 each
    the others: background at ~1, below the 0.01 score threshold
    """
    anchors = torch.tensor(
        [[0.0, 0.0, 40.0, 40.0]] * 2
        + [[50.0, 50.0, 90.0, 90.0], [0.0, 60.0, 30.0, 95.0]]
        + [[60.0, 0.0, 95.0, 30.0]] * 4
    )
    logits = torch.tensor([[10.0, -10.0, -10.0]] * 8)
    logits[0] = torch.tensor([0.0, 0.0, -10.0])
    logits[1] = torch.tensor([1.0, 0.0, -10.0])
    logits[2] = torch.tensor([-10.0, -10.0, 10.0])
    logits[3] = torch.tensor([0.0, 0.0, 0.0])
    return {"cls_logits": logits[None], "bbox_regression": torch.zeros(1, 8, 4), "anchors": anchors[None]}


def detect_100(outputs):
    return SSDPostprocess()(outputs, (100, 100))


def test_entropy_is_averaged_over_the_output_boxes_after_nms():
    outputs = entropy_case()
    boxes = detect_100(outputs)[0]
    assert sorted(zip(boxes["anchor_index"].tolist(), boxes["labels"].tolist())) == [(0, 1), (2, 2), (3, 1), (3, 2)]
    ln2, ln3 = math.log(2), math.log(3)
    assert entropy_over_detections(outputs, detect_100)[0] == pytest.approx((ln2 + 0 + 2 * ln3) / 4, abs=1e-4)
    # the named pre-NMS variant averages over the anchors instead: anchor 1's duplicate counts, anchor 3 once
    h1 = -(0.2689 * math.log(0.2689) + 0.7311 * math.log(0.7311))
    assert entropy_over_top_anchors(outputs)[0] == pytest.approx((ln2 + h1 + 0 + ln3) / 4, abs=1e-3)
    assert entropy_over_top_anchors(outputs, top_k=1)[0] == pytest.approx(0, abs=1e-3)  # the confident anchor 2


def test_entropy_without_any_box_uses_the_best_anchor():
    outputs = entropy_case()
    outputs["cls_logits"][0, :4] = torch.tensor([10.0, -10.0, -10.0])  # no anchor above the threshold
    outputs["cls_logits"][0, 5] = torch.tensor([6.0, 1.0, -10.0])  # the best foreground score (0.0067)
    assert detect_100(outputs)[0]["scores"].numel() == 0
    p = torch.softmax(outputs["cls_logits"][0, 5], -1)
    expected = float(-(p * p.log()).sum())
    assert entropy_over_detections(outputs, detect_100)[0] == pytest.approx(expected, abs=1e-6)
    assert entropy_over_top_anchors(outputs)[0] == pytest.approx(expected, abs=1e-6)


def test_task_entropy_defaults_to_after_nms_and_the_config_names_the_variant(task, monkeypatch):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    outputs = entropy_case()
    monkeypatch.setattr(task, "image_size", 100)  # detect() clips boxes to the network input
    assert task.uncertainty(outputs)[0] == pytest.approx(entropy_over_detections(outputs, detect_100)[0])
    assert instantiate(compose_config(["task=voc"]).task.build.uncertainty).func is entropy_over_detections
    variant = compose_config(
        ["task=voc", "task.build.uncertainty._target_=al_runner.tasks.detection.entropy_over_top_anchors"]
    ).task.build.uncertainty
    assert instantiate(variant)(outputs)[0] == pytest.approx(entropy_over_top_anchors(outputs)[0])


def test_evaluation_post_processes_each_test_batch_once_with_the_same_results(task, monkeypatch):
    """The mAP metric and the entropy after NMS both need a batch's detections: `task.detect` computes them once
    per outputs, and evaluation's metric and entropies are those of post-processing each time."""
    from al_runner.learner import Learner
    from al_runner.loop import evaluate
    from al_runner.runtime import Runtime
    from al_runner.tasks.detection.voc_eval import VOC07MeanAP

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(num_classes=len(CLASSES) + 1)
    learner = Learner(model, TAPS, "backbone[1]", Runtime(torch.device("cpu")), None)
    calls = []
    postprocess = task.postprocess
    monkeypatch.setattr(task, "postprocess", lambda outputs, size: calls.append(1) or postprocess(outputs, size))
    evaluation = evaluate(learner, task, batch_size=4)
    batches = math.ceil(task.test_size / 4)
    assert len(calls) == batches and batches > 1

    def detect(outputs):  # no reuse: post-processed on every call
        return postprocess(outputs, (SIZE, SIZE))

    metric, entropies = VOC07MeanAP(task.classes, detect), []
    learner.eval()
    with torch.inference_mode():
        for images, targets, _ in task.test_batches(4):
            outputs = learner.forward(images)
            metric.update(outputs, targets)
            entropies.append(entropy_over_detections(outputs, detect))
    assert evaluation.details == metric.details() and evaluation.metric == metric.compute()
    assert torch.equal(evaluation.uncertainty, torch.cat(entropies))
    # new outputs (same values, other tensors) are post-processed again
    outputs = entropy_case()
    first = task.detect(outputs)
    assert task.detect(outputs) is first and task.detect(dict(outputs)) is first
    assert task.detect({key: value.clone() for key, value in outputs.items()}) is not first

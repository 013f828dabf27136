"""Per-image MultiBox loss vs torchvision's SSD.compute_loss; the loss module learns to rank it."""
import pytest
import torch

from al_runner.learning_loss import LossPredictionModule, MarginRankingLoss
from al_runner.models.taps import FeatureTaps
from al_runner.tasks.detection import VOCDetectionTask, detection_entropy, ssdlite320_mobilenet_v3_large
from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit
from al_runner.tasks.detection.multibox import MultiBoxLoss
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite

SIZE = 96
TAPS = [f"backbone[{i}]" for i in range(6)]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = generate_vocdevkit(tmp_path_factory.mktemp("voc"), images=24, seed=1)
    return VOCDetectionTask("voc_synth", str(root), list(CLASSES), [[2007, "trainval"], [2012, "trainval"]],
                            [[2007, "test"]], image_size=SIZE)


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
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 120.0, 200.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[50.0, 50.0, 300.0, 310.0], [0.0, 0.0, 60.0, 40.0]]), "labels": torch.tensor([2, 1])}]
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


def test_detection_entropy_uses_top_k_detections_above_threshold():
    logits = torch.full((2, 4, 3), -10.0)
    logits[:, :, 0] = 10.0                             # background everywhere, except:
    logits[0, 0] = torch.tensor([0.0, 0.0, -10.0])   # a 50/50 foreground vs background anchor: entropy ln 2
    logits[0, 1] = torch.tensor([-10.0, 10.0, -10.0])  # a confident detection: entropy ~0
    entropy = detection_entropy(logits, score_thresh=0.01, top_k=200)
    assert entropy[0] == pytest.approx(torch.log(torch.tensor(2.0)).item() / 2, abs=1e-3)
    # nothing above the threshold: the single best anchor is used
    assert 0 <= entropy[1] < 1e-3
    # top_k = 1 keeps only the confident detection
    assert detection_entropy(logits, 0.01, 1)[0] < 1e-3

"""PCKh, the pose losses/uncertainty and the stacked hourglass (al_runner.tasks.pose)."""

from __future__ import annotations

import math

import torch

from al_runner.models.taps import FeatureTaps
from al_runner.tasks.pose.generate import generate
from al_runner.tasks.pose.geometry import head_size_from_box, head_size_from_segment, headbox_for_segment
from al_runner.tasks.pose.hourglass import hourglass
from al_runner.tasks.pose.metric import PCKh, pckh_correct
from al_runner.tasks.pose.task import MPIITask


def _truth(n=2):
    gen = torch.Generator().manual_seed(0)
    joints = torch.rand(n, 16, 2, generator=gen, dtype=torch.float64) * 200 + 20
    joints[:, 8] = torch.tensor([100.0, 50.0])
    joints[:, 9] = torch.tensor([100.0, 10.0])  # head segment = 40 px -> threshold 20 px
    return joints


def test_pckh_all_correct():
    joints = _truth()
    correct, counted = pckh_correct(
        joints + 3.0, joints, torch.ones(2, 16, dtype=torch.bool), head_size_from_segment(joints)
    )
    assert torch.equal(correct, counted) and counted.sum() == 32


def test_pckh_joint_off_by_exactly_the_threshold_is_wrong():
    joints = _truth(1)
    pred = joints.clone()
    pred[0, 4, 0] += 20.0  # exactly 0.5 * head size: not "< 0.5" (official eval is strict)
    pred[0, 5, 1] += 19.999  # just inside
    correct, counted = pckh_correct(pred, joints, torch.ones(1, 16, dtype=torch.bool), torch.tensor([40.0]))
    assert correct[4] == 0 and correct[5] == 1 and counted.sum() == 16


def test_pckh_ignores_unannotated_joints_and_unknown_head_sizes():
    joints = _truth(2)
    pred = joints.clone()
    pred[:, 2] += 500.0  # far off, but not annotated in both people
    annotated = torch.ones(2, 16, dtype=torch.bool)
    annotated[:, 2] = False
    correct, counted = pckh_correct(pred, joints, annotated, torch.tensor([40.0, math.nan]))
    assert counted[2] == 0 and counted.sum() == 15 and torch.equal(correct, counted)


def test_pckh_metric_headline_and_details():
    metric = PCKh(input_size=64, mean_excludes=(6, 7))
    metric.correct = torch.tensor([1] * 6 + [0, 0] + [1] * 6 + [0, 1])
    metric.counted = torch.ones(16, dtype=torch.long)
    assert metric.compute() == 13 / 14  # pelvis and thorax left out of the mean
    details = metric.details()
    assert details["PCKh_l_elbow"] == 0.0 and details["PCKh_head_top"] == 1.0
    assert len([k for k in details if k.startswith("PCKh_")]) == 16


def test_head_size_conventions_agree_on_generated_boxes():
    neck, top = [10.0, 50.0], [13.0, 10.0]
    box = torch.tensor(headbox_for_segment(neck, top), dtype=torch.float64)
    joints = torch.zeros(16, 2, dtype=torch.float64)
    joints[8], joints[9] = torch.tensor(neck), torch.tensor(top)
    assert math.isclose(float(head_size_from_box(box)), float(head_size_from_segment(joints)), rel_tol=1e-9)
    assert math.isclose(float(head_size_from_box(torch.tensor([0.0, 0.0, 30.0, 40.0], dtype=torch.float64))), 0.6 * 50)


def test_perfect_heatmaps_score_one_in_original_coordinates(tmp_path):
    root = generate(tmp_path, people=8, seed=1)
    for annotation, test in (("hourglass.json", None), ("mmpose_train.json", "mmpose_valid.json")):
        task = MPIITask(
            root=str(root),
            annotation_file=annotation,
            image_folder="images",
            input_size=64,
            heatmap_size=16,
            test_annotation_file=test,
        )
        metric = task.new_metric()
        for _, targets, _ in task.test_batches(4):
            inside_crop = targets["weight"].bool() == targets["joints_annotated"]
            assert inside_crop.all()  # generated test people fit their crops
            metric.update([torch.zeros_like(targets["heatmaps"]), targets["heatmaps"]], targets)
        assert metric.compute() == 1.0


def test_per_sample_losses_average_to_the_batch_loss_and_uncertainty_is_entropy(tmp_path):
    root = generate(tmp_path, people=8, seed=2)
    task = MPIITask(
        root=str(root), annotation_file="hourglass.json", image_folder="images", input_size=64, heatmap_size=16
    )
    inputs, targets, _ = next(iter(task.labeled_batches(torch.arange(6), 6, torch.Generator().manual_seed(0))))
    outputs = [torch.randn(6, 16, 16, 16), torch.randn(6, 16, 16, 16)]
    per_sample, batch = task.training_losses(outputs, targets)
    assert per_sample.shape == (6,) and per_sample.dtype == torch.float32
    torch.testing.assert_close(batch, per_sample.mean())
    # by hand for person 0: sum over stacks of the squared error over its weighted maps, divided by all
    # 16 x 16 x 16 map pixels (bearpaw's mean over every pixel of every joint map)
    w = targets["weight"][0].bool()
    assert w.sum() >= 10
    by_hand = sum(((o[0] - targets["heatmaps"][0]) ** 2)[w].sum() / (16 * 16 * 16) for o in outputs)
    torch.testing.assert_close(per_sample[0], by_hand)
    flat = torch.zeros(1, 16, 16, 16)
    peaked = flat.clone()
    peaked[..., 3, 3] = 50.0
    u = task.uncertainty([flat, flat]), task.uncertainty([flat, peaked])
    torch.testing.assert_close(u[0], torch.tensor([math.log(256.0)]))
    assert u[1] < 0.01


def test_hourglass_shapes_and_taps():
    model = hourglass(num_joints=16, stacks=2, blocks=1, features=16, depth=3).eval()
    taps = FeatureTaps(model, ["stacks.0.head", "stacks.1.head"])
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, list) and [o.shape for o in out] == [(2, 16, 16, 16)] * 2
    feats = taps.features(["stacks.0.head", "stacks.1.head"])
    assert [f.shape for f in feats] == [(2, 16, 16, 16)] * 2

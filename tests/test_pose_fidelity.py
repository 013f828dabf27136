"""Pose fidelity to MPII's official evaluation and the hourglass recipe (bearpaw/pytorch-pose) the paper used:
annotated (occluded included) joints in both annotation formats, the official ground-truth .mat, the
count-weighted PCKh mean, bearpaw's augmentation draws and loss normalisation, the exact 2-stack size."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from al_runner.errors import ConfigError, DataError
from al_runner.tasks.pose.annotations import parse
from al_runner.tasks.pose.generate import generate
from al_runner.tasks.pose.geometry import Augment
from al_runner.tasks.pose.hourglass import hourglass
from al_runner.tasks.pose.metric import PCKh
from al_runner.tasks.pose.task import MPIITask
from tests.conftest import compose_config, load_script
from tests.test_pose_data import small_task

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mpii-sample"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real MPII sample not present at {SAMPLE}")
SHARED_IMAGE = "005808361.jpg"
OCCLUDED = (0, 4, 11)  # r_ankle, l_knee, r_elbow of the shared person, marked occluded in the hourglass file


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("mpii_fid"), people=12, seed=5)


def eval_batch(task: MPIITask, n: int | None = None):
    return next(iter(task.test_batches(n or task.test_size)))


# ---- 1. annotated joints, both formats ---------------------------------------------------------
@needs_sample
def test_real_sample_occluded_joints_are_annotated():
    people = parse(SAMPLE / "mpii_annotations_sample.json")
    occluded = people.annotated & ~people.visible
    # the hourglass file's flag 0 with real coordinates: counted by the official evaluation
    assert int(people.annotated.sum()) == 2573 and int(occluded.sum()) == 332
    head_tops_above_frame = people.annotated[:, 9] & (people.joints[:, 9, 1] <= 0)
    assert int(head_tops_above_frame.sum()) == 5  # bearpaw's "y > 0" test would drop these annotated joints


@needs_sample
def test_shared_person_with_occluded_joints_gives_the_same_targets_and_pckh_in_both_formats(tmp_path):
    """Person 005808361.jpg at (966, 340) is in both sample files; three of its joints are marked occluded
    (flag 0, coordinates kept) in the hourglass file. Under the old visible-only reading the hourglass format
    lost their heatmaps, loss weight and PCKh count; the mmpose format (joints_vis = annotated) kept them."""
    (tmp_path / SHARED_IMAGE).symlink_to(SAMPLE / SHARED_IMAGE)
    hourglass_entries = [
        e for e in json.loads((SAMPLE / "mpii_annotations_sample.json").read_text()) if e["img_paths"] == SHARED_IMAGE
    ]
    shared = next(e for e in hourglass_entries if e["objpos"] == [966.0, 340.0])
    for j in OCCLUDED:
        shared["joint_self"][j][2] = 0.0
    (tmp_path / "hourglass.json").write_text(json.dumps(hourglass_entries))
    mmpose = [e for e in json.loads((SAMPLE / "test_mpii.json").read_text()) if e["image"] == SHARED_IMAGE]
    (tmp_path / "mmpose_valid.json").write_text(json.dumps(mmpose))
    other = next(e for e in hourglass_entries if e is not shared)
    (tmp_path / "mmpose_train.json").write_text(
        json.dumps(
            [
                {
                    "image": SHARED_IMAGE,
                    "joints": [j[:2] for j in other["joint_self"]],
                    "joints_vis": [1] * 16,
                    "center": other["objpos"],
                    "scale": other["scale_provided"],
                }
            ]
        )
    )

    tasks = [
        small_task(tmp_path, annotation_file="hourglass.json", image_folder="."),
        small_task(
            tmp_path, annotation_file="mmpose_train.json", test_annotation_file="mmpose_valid.json", image_folder="."
        ),
    ]
    (_, a, _), (_, b, _) = (eval_batch(t) for t in tasks)
    assert tasks[0].test_people.visible[0, list(OCCLUDED)].logical_not().all()
    assert a["joints_annotated"].all() and torch.equal(a["joints_annotated"], b["joints_annotated"])
    torch.testing.assert_close(a["joints"], b["joints"], atol=1e-3, rtol=0)
    torch.testing.assert_close(a["heatmaps"], b["heatmaps"], atol=1e-4, rtol=0)
    assert (a["heatmaps"][0, list(OCCLUDED)].amax((-2, -1)) > 0.5).all()  # occluded joints get a target
    assert torch.equal(a["weight"], b["weight"]) and a["weight"][0, list(OCCLUDED)].eq(1).all()
    torch.testing.assert_close(a["head_size"], b["head_size"], atol=1e-3, rtol=0)
    outputs = [torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))]
    outputs.append(a["heatmaps"] + 0.3 * torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(1)))
    metrics = [t.new_metric() for t in tasks]
    for metric, targets in zip(metrics, (a, b)):
        metric.update(outputs, targets)
    assert torch.equal(metrics[0].counted, metrics[1].counted) and int(metrics[0].counted.sum()) == 16
    assert torch.equal(metrics[0].correct, metrics[1].correct) and metrics[0].compute() == metrics[1].compute()
    torch.testing.assert_close(tasks[0].per_sample_loss(outputs, a), tasks[1].per_sample_loss(outputs, b))


def test_generated_people_agree_across_formats_with_occluded_and_missing_joints(generated):
    tasks = [
        small_task(generated),
        small_task(generated, annotation_file="mmpose_train.json", test_annotation_file="mmpose_valid.json"),
    ]
    (_, a, _), (_, b, _) = (eval_batch(t) for t in tasks)
    people = tasks[0].test_people
    assert (people.annotated & ~people.visible).any() and not people.annotated.all()  # both cases present
    assert torch.equal(a["joints_annotated"], b["joints_annotated"]) and torch.equal(a["weight"], b["weight"])
    torch.testing.assert_close(a["heatmaps"], b["heatmaps"])
    # generated head boxes (3 decimals) equal the head segment
    torch.testing.assert_close(a["head_size"], b["head_size"], atol=1e-3, rtol=0)
    assert torch.equal(a["heatmaps"][~a["joints_annotated"]], torch.zeros_like(a["heatmaps"][~a["joints_annotated"]]))


def test_loss_joints_modes_and_bearpaw_normalisation(generated):
    """annotated / visible / all weight different maps; `all` is bearpaw's MSELoss(size_average=True) over
    every map summed over stacks, `annotated` is 2 x bearpaw's JointsMSELoss (0.5 factor) with those weights."""
    batches = {
        mode: next(
            iter(
                small_task(generated, loss_joints=mode).labeled_batches(
                    torch.arange(9), 9, torch.Generator().manual_seed(0)
                )
            )
        )
        for mode in ("annotated", "visible", "all")
    }
    w = {mode: b[1]["weight"] for mode, b in batches.items()}
    assert torch.equal(batches["annotated"][0], batches["all"][0])  # same augmentation draws
    assert (w["all"] == 1).all() and (w["annotated"] >= w["visible"]).all()
    assert (w["annotated"] > w["visible"]).any() and (w["all"] > w["annotated"]).any()
    targets = batches["annotated"][1]
    gen = torch.Generator().manual_seed(3)
    outputs = [torch.rand(9, 16, 16, 16, generator=gen), torch.rand(9, 16, 16, 16, generator=gen)]
    task = small_task(generated, loss_joints="all")
    _, batch_loss = task.training_losses(outputs, batches["all"][1])
    bearpaw_first = sum(torch.nn.functional.mse_loss(o, targets["heatmaps"]) for o in outputs)
    torch.testing.assert_close(batch_loss, bearpaw_first)
    joint_weight = targets["weight"][..., None, None]
    joints_mse = sum(
        0.5 * torch.nn.functional.mse_loss(o * joint_weight, targets["heatmaps"] * joint_weight) for o in outputs
    )
    _, annotated_loss = small_task(generated).training_losses(outputs, targets)
    torch.testing.assert_close(annotated_loss, 2 * joints_mse)
    _, halved = small_task(generated, loss_scale=0.5).training_losses(outputs, targets)
    torch.testing.assert_close(halved, joints_mse)
    with pytest.raises(ConfigError, match="task.loss_joints 'occluded' not supported, choose from annotated"):
        small_task(generated, loss_joints="occluded")


# ---- 2. official ground-truth file -------------------------------------------------------------
def official_mat(path: Path, people, head_scale: float = 2.0, **override) -> Path:
    """A file in the official layout for `people` (rows in their order); head boxes whose 0.6 x diagonal is
    `head_scale` x the head segment, so official and fallback PCKh differ."""
    joints = people.joints.numpy()
    segment = np.linalg.norm(joints[:, 9] - joints[:, 8], axis=-1)
    half = head_scale * segment / (0.6 * np.sqrt(2)) / 2
    centre = (joints[:, 8] + joints[:, 9]) / 2
    boxes = np.stack([centre - half[:, None], centre + half[:, None]])  # [2, R, 2]
    arrays = {
        "pos_gt_src": joints.transpose(1, 2, 0),
        "jnt_missing": (~people.annotated.numpy()).T.astype(np.float64),
        "headboxes_src": boxes.transpose(0, 2, 1),
        "dataset_joints": np.array(
            [
                [
                    "rank",
                    "rkne",
                    "rhip",
                    "lhip",
                    "lkne",
                    "lank",
                    "pelv",
                    "thor",
                    "neck",
                    "head",
                    "rwri",
                    "relb",
                    "rsho",
                    "lsho",
                    "lelb",
                    "lwri",
                ]
            ],
            dtype=object,
        ),
    } | override
    savemat(path, arrays)
    return path


def test_official_file_gives_official_head_sizes_and_names_its_source(generated, tmp_path):
    fallback = small_task(generated)
    official_file = official_mat(tmp_path / "gt_valid.mat", fallback.test_people)
    official = small_task(generated, official_gt_file=str(official_file))
    (_, f, _), (_, o, _) = eval_batch(fallback), eval_batch(official)
    torch.testing.assert_close(o["head_size"], 2.0 * f["head_size"])
    outputs = [f["heatmaps"], f["heatmaps"].roll(1, dims=-1)]  # one heatmap pixel off: 1/16 of the crop
    results = []
    for task, targets in ((fallback, f), (official, o)):
        metric = task.new_metric()
        metric.update(outputs, targets)
        results.append((metric.compute(), metric.details()))
    assert results[1][0] > results[0][0]  # larger official head boxes: more joints within 0.5 head
    assert results[0][1]["head_size_source_head_segment"] == 1.0
    assert results[0][1]["head_size_source_official_gt_file"] == 0.0
    assert results[1][1]["head_size_source_official_gt_file"] == 1.0


def test_official_file_jnt_missing_decides_what_is_counted(generated, tmp_path):
    task = small_task(generated)
    missing = (~task.test_people.annotated.numpy()).T.astype(np.float64)
    missing[15, 0] = 1.0  # the official file leaves out person 0's l_wrist
    path = official_mat(tmp_path / "gt.mat", task.test_people, head_scale=1.0, jnt_missing=missing)
    assert task.test_people.annotated[0, 15]
    _, targets, _ = eval_batch(small_task(generated, official_gt_file=str(path)))
    assert not targets["joints_annotated"][0, 15]
    assert int(targets["joints_annotated"].sum()) == int(task.test_people.annotated.sum()) - 1


def test_official_rows_follow_the_validation_order_and_survive_skipped_images(generated, tmp_path):
    people = small_task(generated).test_people
    path = official_mat(tmp_path / "gt.mat", people)
    # drop the first validation person's image: the rest keep their rows
    entries = json.loads((generated / "hourglass.json").read_text())
    first_valid = next(i for i, e in enumerate(entries) if e["isValidation"])
    (tmp_path / "images").mkdir()
    for image in (generated / "images").iterdir():
        if image.name != entries[first_valid]["img_paths"]:
            (tmp_path / "images" / image.name).symlink_to(image)
    (tmp_path / "hourglass.json").write_text(json.dumps(entries))
    task = small_task(tmp_path, official_gt_file=str(path), missing_images="skip")
    assert task.test_size == len(people) - 1 and task.test_people.split_rows.tolist() == list(range(1, len(people)))
    _, targets, _ = eval_batch(task)
    torch.testing.assert_close(targets["joints"], people.joints[1:])


def test_official_file_in_another_order_or_layout_is_refused(generated, tmp_path):
    people = small_task(generated).test_people
    shuffled = official_mat(tmp_path / "shuffled.mat", people.select(torch.arange(len(people)).flip(0)))
    with pytest.raises(DataError, match=r"row 0 does not match .*validation order"):
        small_task(generated, official_gt_file=str(shuffled))
    short = official_mat(tmp_path / "short.mat", people.select(torch.arange(2)))
    with pytest.raises(DataError, match="has 2 rows but the test split has at least"):
        small_task(generated, official_gt_file=str(short))
    names = np.array(
        [
            [
                "lank",
                "rkne",
                "rhip",
                "lhip",
                "lkne",
                "rank",
                "pelv",
                "thor",
                "neck",
                "head",
                "rwri",
                "relb",
                "rsho",
                "lsho",
                "lelb",
                "lwri",
            ]
        ],
        dtype=object,
    )
    reordered = official_mat(tmp_path / "names.mat", people, dataset_joints=names)
    with pytest.raises(DataError, match="not in the MPII joint order"):
        small_task(generated, official_gt_file=str(reordered))
    savemat(tmp_path / "other.mat", {"preds": np.zeros((3, 16, 2))})
    with pytest.raises(DataError, match=r"missing \['pos_gt_src', 'jnt_missing', 'headboxes_src'\]"):
        small_task(generated, official_gt_file=str(tmp_path / "other.mat"))
    with pytest.raises(DataError, match="official MPII ground-truth file not found"):
        small_task(generated, official_gt_file="nowhere.mat")


def test_fallback_is_named_in_the_log(generated, caplog):
    with caplog.at_level(logging.INFO, logger="al_runner.tasks.pose"):
        small_task(generated)
    assert any(
        "head_segment for 3 people" in r.getMessage() and "not the official" in r.getMessage() for r in caplog.records
    )


# ---- 3. the weighted mean ----------------------------------------------------------------------
def test_pckh_mean_is_weighted_by_annotated_counts():
    """The official Mean pools the 14 joints (sum PCKh_j * jnt_ratio_j); a plain mean over joints differs
    when joints are annotated unequally often."""
    correct = torch.tensor([0] + [1] * 5 + [0, 0] + [1] * 8)
    counted = torch.tensor([10] + [1] * 5 + [4, 4] + [1] * 8)  # r_ankle annotated 10x, all wrong
    weighted, unweighted = PCKh(64), PCKh(64, mean="unweighted")
    for metric in (weighted, unweighted):
        metric.correct, metric.counted = correct.clone(), counted.clone()
    per_joint = correct.double() / counted.double()
    keep = [j for j in range(16) if j not in (6, 7)]
    jnt_ratio = counted[keep].double() / counted[keep].sum()
    assert weighted.compute() == pytest.approx(float((per_joint[keep] * jnt_ratio).sum())) == pytest.approx(13 / 23)
    assert unweighted.compute() == pytest.approx(13 / 14)
    with pytest.raises(ConfigError, match="PCKh mean 'median' not supported, choose from weighted, unweighted"):
        PCKh(64, mean="median")


# ---- 4. augmentation and the network -----------------------------------------------------------
def test_augmentation_follows_bearpaw_distributions():
    gen = torch.Generator().manual_seed(0)
    draws = [Augment.draw(gen, "clamped_gaussian", 0.25, 30.0, 0.6, 0.5, 0.2) for _ in range(4000)]
    rotation = torch.tensor([d.rotation for d in draws])
    scale = torch.tensor([d.scale for d in draws])
    rotated = rotation != 0
    assert 0.57 < float(rotated.float().mean()) < 0.63  # rotation on 60 % of samples
    assert float(rotation.abs().max()) == 60.0  # sigma 30, clamped to +-60
    assert 0.29 < float((rotation[rotated].abs() > 30).float().mean()) < 0.35  # P(|N(0,1)| > 1) = 0.317
    assert float(rotation[rotated].std()) == pytest.approx(27.6, abs=1.5)  # clamped-N(0, 30) std
    assert scale.min() == 0.75 and scale.max() == 1.25
    assert 0.13 < float((scale == 0.75).float().mean()) < 0.19  # P(N(0,1) < -1) = 0.159 at the clamp
    assert 0.47 < float(torch.tensor([d.flip for d in draws]).float().mean()) < 0.53
    old = [Augment.draw(gen, "uniform", 0.25, 30.0, 0.6, 0.5, 0.2) for _ in range(500)]
    assert max(abs(d.rotation) for d in old) <= 30.0 and all(0.75 < d.scale < 1.25 for d in old)


def test_config_defaults_are_bearpaws():
    task = compose_config(["experiment=fig7_mpii"]).task
    assert dict(task.augmentation) == dict(
        draw="clamped_gaussian",
        scale_factor=0.25,
        rotation_factor=30.0,
        rotation_prob=0.6,
        flip_prob=0.5,
        color_gain=0.2,
    )
    assert (task.loss_joints, task.loss_scale, task.pckh_mean) == ("annotated", 1.0, "weighted")
    assert task.official_gt_file is None and "official_gt_file" in task.build


def test_bad_augmentation_settings_are_refused(generated):
    with pytest.raises(ConfigError, match="task.augmentation.draw 'beta' not supported, choose from clamped_gaussian"):
        small_task(generated, augmentation={"draw": "beta"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['rotation_deg'\]"):
        small_task(generated, augmentation={"rotation_deg": 30.0})


def _bearpaw_hg2_parameter_count(joints: int = 16) -> int:
    """Re-derived from bearpaw pose/models/hourglass.py, hg(num_stacks=2, num_blocks=1, num_classes=16):
    Bottleneck(inplanes, planes) = BN-1x1-BN-3x3-BN-1x1(2 planes), convs with bias, 1x1 downsample when the
    width changes; stem conv7x7(3->64)+BN, layer1 (64->128), layer2 (128), layer3 (128->256); each stack: an
    hourglass of depth 4 with 3 residuals per level + 1 innermost (13), 1 residual, fc (1x1 conv + BN),
    score (1x1 -> 16); fc_ and score_ between the stacks."""

    def conv(cin, cout, k=1):
        return cin * cout * k * k + cout

    def bn(c):
        return 2 * c

    def bottleneck(inplanes, planes):
        return (
            bn(inplanes)
            + conv(inplanes, planes)
            + bn(planes)
            + conv(planes, planes, 3)
            + bn(planes)
            + conv(planes, 2 * planes)
            + (conv(inplanes, 2 * planes) if inplanes != 2 * planes else 0)
        )

    stem = conv(3, 64, 7) + bn(64) + bottleneck(64, 64) + bottleneck(128, 64) + bottleneck(128, 128)
    stack = 13 * bottleneck(256, 128) + bottleneck(256, 128) + conv(256, 256) + bn(256) + conv(256, joints)
    between = conv(256, 256) + conv(joints, 256)
    return stem + 2 * stack + between


def test_paper_hourglass_has_bearpaws_exact_parameter_count():
    assert _bearpaw_hg2_parameter_count() == 6_570_400
    model = hourglass(num_joints=16, stacks=2, blocks=1, features=256, depth=4)
    assert sum(p.numel() for p in model.parameters()) == 6_570_400
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # stem conv + 3 bottlenecks (2 with a 1x1 skip); per stack 13 + 1 bottlenecks, fc, score; 2 merge convs
    assert len(convs) == 1 + 3 * 3 + 2 + 2 * (14 * 3 + 2) + 2
    assert len(norms) == 1 + 3 * 3 + 2 * (14 * 3 + 1)


# ---- 5. the peer check (scripts/fidelity_pose_pckh.py) ---------------------------------------------
def _fidelity_script():
    return load_script("fidelity_pose_pckh")


def test_reference_official_logic_on_a_hand_case():
    script = _fidelity_script()
    gt = np.zeros((16, 2, 2))
    gt[:, 0, :] = 100.0
    missing = np.zeros((16, 2))
    missing[0, 1] = 1  # r_ankle of person 1 not annotated
    boxes = np.zeros((2, 2, 2))
    boxes[1, :, :] = [[30.0, 60.0], [40.0, 80.0]]  # head sizes 0.6 * 50 = 30 and 0.6 * 100 = 60
    pred = gt.copy()
    pred[0, 0, 0] += 16.0  # r_ankle person 0: 16 / 30 > 0.5 -> wrong
    pred[1, 0, 1] += 500.0  # r_knee person 1: wrong
    pred[0, 0, 1] += 500.0  # r_ankle person 1: missing, not counted
    per_joint, mean, unweighted = script.official_pckh(pred, gt, missing, boxes)
    assert per_joint[0] == 0.0 and per_joint[1] == 0.5 and per_joint[2] == 1.0
    assert mean == pytest.approx(25 / 27) and unweighted == pytest.approx((0 + 0.5 + 12) / 14)


def test_peer_check_agrees_with_the_runner_on_generated_cases():
    script = _fidelity_script()
    rows = script.run([0, 1, 2], None)
    for row in rows:
        assert row["occluded_joints"] > 0 and row["missing_joints"] > 0
        assert row["max_abs_diff_mean"] < 1e-12 and row["max_abs_diff_per_joint"] < 1e-12
        assert row["ours_unweighted"] == pytest.approx(row["reference_unweighted"], abs=1e-12)
    # the cases tell the weightings and the old visible-only reading apart
    assert any(abs(r["reference_mean"] - r["reference_unweighted"]) > 1e-4 for r in rows)
    assert any(abs(r["reference_mean"] - r["reference_visible_only"]) > 1e-4 for r in rows)


def test_official_file_is_part_of_the_test_fingerprint(generated, tmp_path):
    people = small_task(generated).test_people
    plain = small_task(generated).fingerprint()
    a = small_task(generated, official_gt_file=str(official_mat(tmp_path / "a.mat", people))).fingerprint()
    b = small_task(generated, official_gt_file=str(official_mat(tmp_path / "b.mat", people, 3.0))).fingerprint()
    assert plain["pool"] == a["pool"] == b["pool"] and len({plain["test"], a["test"], b["test"]}) == 3

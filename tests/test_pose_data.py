"""MPII annotations, crops, augmentation and heatmaps (al_runner.tasks.pose)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torchvision import tv_tensors

from al_runner.errors import ConfigError, DataError
from al_runner.tasks.pose.annotations import parse
from al_runner.tasks.pose.generate import generate
from al_runner.tasks.pose.geometry import (
    crop_person,
    crop_to_image,
    decode_heatmaps,
    flip_person,
    image_to_crop,
    render_heatmaps,
    square_crop_box,
    swap_left_right,
)
from al_runner.tasks.pose.task import MPIITask

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mpii-sample"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real MPII sample not present at {SAMPLE}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("mpii"), people=12, seed=3)


def small_task(root, **kw) -> MPIITask:
    args = dict(root=str(root), annotation_file="hourglass.json", image_folder="images", input_size=64, heatmap_size=16)
    return MPIITask(**(args | kw))


# ---- parsing -----------------------------------------------------------------------------------
@needs_sample
def test_both_formats_agree_on_the_shared_person():
    hourglass = parse(SAMPLE / "mpii_annotations_sample.json")  # format detected from the keys
    mmpose = parse(SAMPLE / "test_mpii.json", "mmpose_json")
    assert len(hourglass) == 168 and int(hourglass.is_validation.sum()) == 16 and len(mmpose) == 5
    in_mmpose = mmpose.images.index("005808361.jpg")
    # the image holds two people in the hourglass file; the mmpose one is the validation person at (966, 340)
    candidates = [k for k, im in enumerate(hourglass.images) if im == "005808361.jpg"]
    k = next(k for k in candidates if hourglass.centers[k].tolist() == mmpose.centers[in_mmpose].tolist())
    torch.testing.assert_close(hourglass.joints[k], mmpose.joints[in_mmpose], atol=1e-3, rtol=0)
    assert torch.equal(hourglass.annotated[k], mmpose.annotated[in_mmpose])
    assert torch.equal(hourglass.visible[k], mmpose.visible[in_mmpose])
    assert abs(float(hourglass.scales[k]) - float(mmpose.scales[in_mmpose])) < 1e-3


@needs_sample
def test_real_sample_builds_a_task_and_skips_missing_images_when_asked(caplog):
    with pytest.raises(DataError, match="image file not found"):
        MPIITask(root=str(SAMPLE), annotation_file="mpii_annotations_sample.json", image_folder=".")
    with caplog.at_level(logging.WARNING, logger="al_runner.tasks.pose"):
        task = MPIITask(
            root=str(SAMPLE),
            annotation_file="mpii_annotations_sample.json",
            image_folder=".",
            test_annotation_file="test_mpii.json",
            missing_images="skip",
            input_size=64,
            heatmap_size=16,
        )
    # a log line, not a Python warning with a source line
    assert any("whose image is missing" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    entries = json.loads((SAMPLE / "mpii_annotations_sample.json").read_text())
    present = [e for e in entries if (SAMPLE / e["img_paths"]).is_file()]
    assert 2 <= len(present) < len(entries)  # at least 005808361.jpg's two people
    assert task.pool_size == len(present) and task.test_size == 5  # all entries as pool; the five mmpose people
    inputs, targets, _ = next(iter(task.test_batches(5)))
    assert inputs.shape == (5, 3, 64, 64) and torch.isfinite(targets["head_size"]).all()


def test_generated_formats_agree(generated):
    hourglass = parse(generated / "hourglass.json")
    train, valid = parse(generated / "mmpose_train.json"), parse(generated / "mmpose_valid.json")
    assert len(train) + len(valid) == len(hourglass) == 12
    torch.testing.assert_close(torch.cat([train.joints, valid.joints]), hourglass.joints)
    # the generator leaves some joints unannotated and some occluded: both formats agree on "annotated"
    assert torch.equal(torch.cat([train.annotated, valid.annotated]), hourglass.annotated)
    assert not hourglass.annotated.all() and (hourglass.annotated & ~hourglass.visible).any()
    assert torch.isfinite(valid.headboxes).all() and torch.isnan(hourglass.headboxes).all()


def test_format_named_in_config_must_exist(generated):
    with pytest.raises(ConfigError, match="not supported, choose from"):
        parse(generated / "hourglass.json", "coco")
    with pytest.raises(DataError, match="cannot tell the MPII annotation format"):
        bad = generated / "other.json"
        bad.write_text(json.dumps([{"file": "a.jpg"}]))
        parse(bad)


# ---- bad input ---------------------------------------------------------------------------------
def _edited(generated: Path, tmp_path: Path, edit) -> Path:
    entries = json.loads((generated / "hourglass.json").read_text())
    edit(entries)
    (tmp_path / "images").symlink_to(generated / "images")
    (tmp_path / "hourglass.json").write_text(json.dumps(entries))
    return tmp_path


def test_scale_zero_is_an_error_naming_the_entry(generated, tmp_path):
    root = _edited(generated, tmp_path, lambda e: e[2].update(scale_provided=0))
    with pytest.raises(DataError, match=r"entry 2 \(000000002.jpg\): person scale must be a positive"):
        small_task(root)


def test_missing_image_is_an_error_naming_the_entry(generated, tmp_path):
    root = _edited(generated, tmp_path, lambda e: e[4].update(img_paths="nowhere.jpg"))
    with pytest.raises(DataError, match=r"entry 4 \(nowhere.jpg\): image file not found"):
        small_task(root)


def test_joint_far_outside_the_image_is_an_error(generated, tmp_path):
    root = _edited(generated, tmp_path, lambda e: e[1]["joint_self"][3].__setitem__(0, 1.0e6))
    with pytest.raises(DataError, match=r"entry 1 .*outside the 192x160 image"):
        small_task(root)


def test_joint_just_outside_the_image_is_kept(generated, tmp_path):
    # MPII annotates head tops above the frame (see the real sample): kept, no error
    root = _edited(generated, tmp_path, lambda e: e[1]["joint_self"][9].__setitem__(1, -5.0))
    assert small_task(root).pool_size == 9


def test_person_without_annotated_joints_is_skipped_and_losses_stay_finite(generated, tmp_path, caplog):
    def remove(entries):
        for j in entries[0]["joint_self"]:
            j[:] = [0.0, 0.0, 0.0]  # the converter's placeholder for "not annotated"
        for j in entries[1]["joint_self"]:
            j[2] = 0.0  # all occluded but annotated: kept

    root = _edited(generated, tmp_path, remove)
    with caplog.at_level(logging.WARNING, logger="al_runner.tasks.pose"):
        task = small_task(root)
    assert any("skipped 1 person(s) with no annotated joint" in r.getMessage() for r in caplog.records)
    assert task.pool_size == 8 and task.pool_people.annotated[0].all() and not task.pool_people.visible[0].any()
    # a crop whose joints all fall outside (here: a batch with every weight 0) gives loss 0, not NaN
    inputs, targets, _ = next(iter(task.labeled_batches(torch.arange(4), 4, torch.Generator().manual_seed(0))))
    targets["weight"].zero_()
    loss = task.per_sample_loss([torch.randn(4, 16, 16, 16)], targets)
    assert torch.isfinite(loss).all() and (loss == 0).all()


# ---- geometry ----------------------------------------------------------------------------------
def test_heatmap_peaks_decode_to_the_joints():
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(3, 16, 2, generator=gen) * 250 + 3  # input scale (256), heatmap 64
    maps = render_heatmaps(points, torch.ones(3, 16, dtype=torch.bool), 256, 64, sigma=1.0)
    assert maps.shape == (3, 16, 64, 64) and torch.allclose(maps.amax((-2, -1)), torch.ones(3, 16), atol=0.3)
    decoded = decode_heatmaps(maps, 256)
    error_at_heatmap_scale = (decoded - points).abs() / 4
    assert error_at_heatmap_scale.max() <= 0.5  # within a pixel (half a pixel with the quarter shift)


def test_unannotated_joints_get_empty_heatmaps():
    annotated = torch.ones(1, 16, dtype=torch.bool)
    annotated[0, 3] = False
    maps = render_heatmaps(torch.full((1, 16, 2), 100.0), annotated, 256, 64)
    assert maps[0, 3].abs().sum() == 0 and maps[0, 2].max() > 0.5


def test_flip_swaps_left_and_right_and_twice_is_identity():
    image = tv_tensors.Image(torch.randint(0, 255, (3, 40, 50), dtype=torch.uint8))
    pts = torch.rand(16, 2) * torch.tensor([50.0, 40.0])
    points = tv_tensors.KeyPoints(pts, canvas_size=(40, 50))
    visible = torch.arange(16) % 3 != 0
    img1, p1, v1 = flip_person(image, points, visible)
    # r_ankle (0) of the flipped person is the mirrored l_ankle (5) of the original
    assert torch.allclose(p1[0], torch.tensor([50.0 - pts[5, 0], pts[5, 1]]))
    assert torch.allclose(p1[12], torch.tensor([50.0 - pts[13, 0], pts[13, 1]]))
    assert torch.allclose(p1[7], torch.tensor([50.0 - pts[7, 0], pts[7, 1]]))  # thorax has no partner
    assert v1[0] == visible[5] and v1[5] == visible[0]
    assert torch.equal(img1[:, :, 0], image[:, :, -1])
    img2, p2, v2 = flip_person(img1, p1, v1)
    assert torch.equal(img2, image) and torch.allclose(p2, pts) and torch.equal(v2, visible)
    assert torch.equal(swap_left_right(swap_left_right(torch.arange(16))), torch.arange(16))


def test_crop_to_original_round_trips():
    image = tv_tensors.Image(torch.zeros(3, 120, 200, dtype=torch.uint8))
    annotation = torch.tensor([[[30.0, 10.0], [150.5, 99.25], [-4.0, 130.0]]], dtype=torch.float64)  # 1-based px
    box = square_crop_box(95.3, 60.7, 143.6)  # partly outside the image: zero-padded crop
    points = tv_tensors.KeyPoints(annotation[0].float() - 0.5, canvas_size=(120, 200))
    _, in_crop = crop_person(image, points, box, 256)
    boxes = torch.tensor([box], dtype=torch.float64)
    torch.testing.assert_close(image_to_crop(annotation, boxes, 256), in_crop[None].double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(crop_to_image(in_crop[None].double(), boxes, 256), annotation, atol=1e-4, rtol=0)


def test_rotation_moves_image_and_joints_together():
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    image[:, 28:31, 68:71] = 255  # a bright dot centred at continuous (69.5, 29.5)
    points = tv_tensors.KeyPoints(torch.tensor([[69.5, 29.5]]), canvas_size=(100, 100))
    out_img, out_pts = crop_person(tv_tensors.Image(image), points, (0, 0, 100), 100, rotation=30.0)
    y, x = divmod(int(out_img[0].float().flatten().argmax()), 100)
    assert abs(x + 0.5 - float(out_pts[0, 0])) <= 1.5 and abs(y + 0.5 - float(out_pts[0, 1])) <= 1.5


def test_augmentation_is_deterministic_from_the_generator(generated):
    task = small_task(generated)

    def first_batch(seed):
        return next(iter(task.labeled_batches(torch.arange(6), 6, torch.Generator().manual_seed(seed))))

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["heatmaps"], b[1]["heatmaps"]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[0], c[0])
    # eval transform: no augmentation, the same pixels every time
    e1 = next(iter(task.input_batches(torch.arange(3), 3)))[0]
    e2 = next(iter(task.labeled_batches(torch.arange(3), 3, torch.Generator().manual_seed(5), augment=False)))
    order = e2[2].argsort()
    assert torch.equal(e1, e2[0][order])


def test_fingerprint_changes_with_the_annotation_file(generated, tmp_path):
    fp = small_task(generated).fingerprint()
    root = _edited(generated, tmp_path, lambda e: e[0].update(scale_provided=0.61))
    other = small_task(root).fingerprint()
    assert fp["pool"] != other["pool"] and set(fp) == {"pool", "test"}

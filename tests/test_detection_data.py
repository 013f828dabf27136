"""The generated VOC tree through torchvision's VOCDetection, bad input, augmentation seeding, label-blindness."""

import logging
import re
from pathlib import Path

import pytest
import torch
from torchvision.datasets import VOCDetection

from al_runner.errors import ConfigError, DataError
from al_runner.tasks.detection import VOCDetectionTask, ssdlite320_mobilenet_v3_large
from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit
from al_runner.tasks.detection.generate import main as generate_main

POOL, TEST = [[2007, "trainval"], [2012, "trainval"]], [[2007, "test"]]


def make_task(root, **kwargs):
    return VOCDetectionTask(
        "voc_synth", str(root), list(CLASSES), POOL, TEST, image_size=kwargs.pop("image_size", 64), **kwargs
    )


@pytest.fixture
def tree(tmp_path):
    return generate_vocdevkit(tmp_path / "gen", images=12, seed=3)


def xml_of(root, year, image_id):
    return Path(root) / "VOCdevkit" / f"VOC{year}" / "Annotations" / f"{image_id}.xml"


def test_generated_tree_is_read_by_torchvision_vocdetection(tree):
    dataset = VOCDetection(str(tree), year="2007", image_set="trainval")
    image, target = dataset[0]
    objects = target["annotation"]["object"]
    assert image.size == (int(target["annotation"]["size"]["width"]), int(target["annotation"]["size"]["height"]))
    assert {o["name"] for o in objects} <= set(CLASSES)
    task = make_task(tree)
    assert task.pool_size == 4 + 3 and task.test_size == 5  # 40 % / 30 % / rest of 12 images
    first = task.pool.annotations[0]
    assert first.boxes.shape == (len(objects), 4)
    assert first.boxes[0].tolist() == [
        float(objects[0]["bndbox"][k]) - d for k, d in (("xmin", 1), ("ymin", 1), ("xmax", 0), ("ymax", 0))
    ]
    all_objects = [a for a in task.pool.annotations + task.test.annotations]
    assert any(bool(a.difficult.any()) for a in all_objects)  # the generator writes some difficult objects


def test_generator_cli_is_deterministic(tmp_path, capsys):
    generate_main([str(tmp_path / "a"), "--images", "6"])
    generate_main([str(tmp_path / "b"), "--images", "6"])
    assert "task.root=" in capsys.readouterr().out
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


def test_vocdevkit_folder_itself_is_accepted_and_a_missing_year_is_named(tree):
    assert make_task(tree / "VOCdevkit").pool_size == 7
    (tree / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "trainval.txt").unlink()
    with pytest.raises(DataError, match=r"VOC2012 trainval not found: expected .*VOC2012/ImageSets/Main/trainval.txt"):
        make_task(tree)


def test_empty_image_file_is_named(tree):
    (tree / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000002.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty image file \(0 bytes\): .*000002.jpg"):
        make_task(tree)


def test_undecodable_image_is_named_when_its_batch_is_read(tree):
    (tree / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").write_bytes(b"not a jpeg")
    task = make_task(tree)
    with pytest.raises(DataError, match=r"cannot decode image .*000001.jpg"):
        next(iter(task.input_batches(torch.arange(2), 2)))


def test_unknown_class_names_file_and_object(tree):
    path = xml_of(tree, 2012, "2012_000002")
    text = path.read_text()
    path.write_text(text.replace("<name>", "<name>dog", 1))
    with pytest.raises(
        DataError, match=re.escape(str(path)) + r": object 0 \('dog\w+'\): unknown class; known classes: circle"
    ):
        make_task(tree)


def test_box_outside_the_image_names_file_and_object(tree):
    path = xml_of(tree, 2007, "000003")
    text = re.sub(r"<xmin>\d+</xmin>", "<xmin>900</xmin>", path.read_text(), count=1)
    path.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>950</xmax>", text, count=1))
    with pytest.raises(DataError, match=re.escape(str(path)) + r": object 0 .*outside the \d+x\d+ image"):
        make_task(tree)


def test_box_partly_outside_is_clipped(tree, caplog):
    path = xml_of(tree, 2007, "000001")
    path.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>5000</xmax>", path.read_text(), count=1))
    with caplog.at_level(logging.WARNING):
        task = make_task(tree)
    assert task.pool.annotations[0].boxes[0, 2] == task.pool.annotations[0].width
    assert "clipped 1 box" in caplog.text


def test_xml_without_objects_is_skipped_with_a_warning(tree, caplog):
    path = xml_of(tree, 2007, "000004")
    path.write_text(re.sub(r"<object>.*</object>\n", "", path.read_text(), flags=re.S))
    with caplog.at_level(logging.WARNING):
        task = make_task(tree)
    assert task.pool_size == 6 and "000004.xml" in caplog.text and "no <object>" in caplog.text


def test_out_of_memory_names_the_batch_size(monkeypatch):
    model = ssdlite320_mobilenet_v3_large(num_classes=3)

    def out_of_memory(_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.backbone, "forward", out_of_memory)
    with pytest.raises(ConfigError, match=r"batch size 32 .*schedule.batch_size"):
        model(torch.zeros(32, 3, 64, 64))


def test_augmentation_is_reproducible_from_the_generator_with_any_worker_count(tree):
    def epoch(task, seed):
        g = torch.Generator().manual_seed(seed)
        return list(task.labeled_batches(torch.arange(task.pool_size), 3, g))

    single, workers = make_task(tree), make_task(tree, num_workers=2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = epoch(single, 0), epoch(workers, 0), epoch(single, 1)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ia, ib)
        assert all(torch.equal(s["boxes"], t["boxes"]) for s, t in zip(ya, yb))
    assert not all(torch.equal(xa, xc) for (xa, _, _), (xc, _, _) in zip(a, c))
    x, targets, _ = a[0]
    assert x.shape[1:] == (3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    for t in targets:  # sanitised boxes inside the resized image
        assert bool((t["boxes"][:, 2:] > t["boxes"][:, :2]).all()) and bool(
            (t["boxes"] >= 0).all() and (t["boxes"] <= 64).all()
        )


def test_eval_targets_keep_difficult_objects_apart(tree):
    task = make_task(tree)
    boxes = torch.cat([a.boxes for a in task.test.annotations])
    n_difficult = int(torch.cat([a.difficult for a in task.test.annotations]).sum())
    targets = [t for _, batch, _ in task.test_batches(4) for t in batch]
    assert sum(len(t["labels"]) for t in targets) + sum(len(t["difficult_labels"]) for t in targets) == len(boxes)
    assert sum(len(t["difficult_labels"]) for t in targets) == n_difficult


def test_changing_unlabeled_annotations_changes_no_sampler_input(tree):
    """Label permutation: what a sampler sees (inputs, uncertainty) ignores the annotations of unlabeled images."""
    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(num_classes=len(CLASSES) + 1).eval()
    unlabeled = torch.tensor([1, 3, 4, 6])

    def scores(task):
        with torch.no_grad():
            return torch.cat([task.uncertainty(model(x)) for x, _ in task.input_batches(unlabeled, 2)])

    original = make_task(tree)
    before = scores(original)
    for image_id, year in (("000002", 2007), ("2012_000001", 2012)):  # pool images 1 and 4
        path = xml_of(tree, year, image_id)
        text = path.read_text()
        for a, b in zip(CLASSES, CLASSES[1:] + CLASSES[:1]):
            text = text.replace(f"<name>{a}</name>", f"<name>{b.upper()}</name>")
        text = re.sub(r"<xmin>(\d+)</xmin>", lambda m: f"<xmin>{max(1, int(m[1]) - 3)}</xmin>", text.lower())
        path.write_text(text)
    changed = make_task(tree)
    for i in (1, 4):
        assert not torch.equal(changed.pool.annotations[i].labels, original.pool.annotations[i].labels)
        assert not torch.equal(changed.pool.annotations[i].boxes, original.pool.annotations[i].boxes)
    assert torch.equal(scores(changed), before)


def test_backbone_weights_from_a_file_or_a_clear_error(tmp_path, caplog):
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        source = ssdlite320_mobilenet_v3_large(num_classes=3)
    assert "starting from random initialisation" in caplog.text
    torch.save(source.backbone.state_dict(), tmp_path / "backbone.pt")
    torch.manual_seed(1)
    loaded = ssdlite320_mobilenet_v3_large(num_classes=3, weights_backbone=str(tmp_path / "backbone.pt"))
    assert all(
        torch.equal(a, b) for a, b in zip(source.backbone.state_dict().values(), loaded.backbone.state_dict().values())
    )
    with pytest.raises(ConfigError, match="file not found"):
        ssdlite320_mobilenet_v3_large(num_classes=3, weights_backbone=str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="neither a file nor a torchvision weights name"):
        ssdlite320_mobilenet_v3_large(num_classes=3, weights_backbone="ImageNetPlease")
    torch.save({"wrong": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a state dict of this SSD backbone"):
        ssdlite320_mobilenet_v3_large(num_classes=3, weights_backbone=str(tmp_path / "other.pt"))

"""Detection presets and end-to-end runs of every sampler on a generated VOC tree."""

import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from al_runner.build import lr_milestone_epochs
from al_runner.learning_loss import fraction_to_epoch
from al_runner.runner import run_experiment
from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit
from tests.conftest import compose_config

SAMPLERS = ["random", "entropy", "coreset", "learning_loss_mse", "learning_loss"]
TINY = [
    "schedule.cycles=2",
    "schedule.initial_size=8",
    "schedule.query_size=4",
    "schedule.epochs=1",
    "schedule.batch_size=4",
    "schedule.eval_batch_size=16",
    "task.image_size=64",
    "progress=false",
    "runtime.threads=1",
]


def test_fig6_voc_preset_holds_the_papers_numbers():
    cfg = compose_config(["experiment=fig6_voc"], return_hydra_config=True)
    task, model, s = cfg.task, cfg.model, cfg.schedule
    assert task.name == "voc" and task.image_size == 300 and len(task.classes) == 20 and "tvmonitor" in task.classes
    assert [list(x) for x in task.build.pool_sets] == [[2007, "trainval"], [2012, "trainval"]]
    assert [list(x) for x in task.build.test_sets] == [[2007, "test"]]
    assert task.build.loss.neg_to_pos_ratio == 3.0 and task.build.loss.iou_thresh == 0.5
    assert model.net._target_.endswith("ssd300_vgg16")
    assert model.net.weights_backbone == "VGG16_Weights.IMAGENET1K_FEATURES"  # SSD's ImageNet VGG, not random init
    assert compose_config(["experiment=voc_cpu"]).model.net.weights_backbone is None  # the CPU preset: random init
    assert list(model.taps) == [f"backbone[{i}]" for i in range(6)] and model.embedding.layer == "backbone[1]"
    assert (s.cycles, s.initial_size, s.query_size, s.subset_size) == (10, 1000, 1000, None)
    assert (s.epochs, s.batch_size) == (300, 32)
    assert (s.optimizer.lr, s.optimizer.momentum, s.optimizer.weight_decay) == (1.0e-3, 0.9, 5.0e-4)
    assert lr_milestone_epochs(s) == [240] and s.lr_scheduler.gamma == 0.1
    assert fraction_to_epoch(s.learning_loss.detach_at, s.epochs, "detach_at") == 180
    assert s.learning_loss.weight == 1.0 and s.learning_loss.margin == 1.0 and s.learning_loss.hidden == 128
    params = cfg.hydra.sweeper.params
    assert params.seed == "0,1,2" and params.sampler.split(",") == SAMPLERS


def test_generated_classes_match_the_voc_synth_config():
    assert tuple(compose_config(["task=voc_synth"]).task.classes) == CLASSES


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_vocdevkit(tmp_path_factory.mktemp("voc"), images=40, seed=0)


def run(tree, run_dir, sampler, *extra):
    cfg = compose_config(["experiment=voc_cpu", f"task.root={tree}", f"sampler={sampler}", *TINY, *extra])
    run_experiment(cfg, run_dir)
    return run_dir


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_two_cycles_of_each_sampler_on_the_generated_tree(tree, tmp_path, sampler):
    out = run(tree, tmp_path / sampler, sampler)
    cycles = pd.read_csv(out / "cycles.csv")
    assert cycles.n_labeled.tolist() == [8, 12] and set(cycles.metric) == {"mAP@0.5"}
    assert cycles.value.between(0, 1).all() and set(cycles.uncertainty) == {"detection_entropy"}
    details = pd.read_csv(out / "metric_details.csv")
    assert set(details.name) == {f"AP/{c}" for c in CLASSES}
    selected = pd.read_csv(out / "selected.csv")
    initial, picked = selected[selected.cycle == 0].pool_index, selected[selected.cycle == 1].pool_index
    assert len(picked) == 4 and not set(picked) & set(initial)
    scores = pd.read_csv(out / "test_scores.csv")
    assert len(scores) == 12 and (scores.real_loss >= 0).all()  # 30 % of 40 test images
    if sampler.startswith("learning_loss"):
        assert cycles.ranking_accuracy.notna().all()


def test_a_last_training_batch_of_one_image_is_skipped_not_crashing_batchnorm(tree, tmp_path, caplog):
    """Labeled set 9 = 2 x 4 + 1: SSDlite's train-mode BatchNorm cannot take the leftover single image (1x1
    maps); the epoch trains on the two full batches and the shuffle gives that image a full batch later."""
    with caplog.at_level(logging.DEBUG, logger="al_runner.loop"):
        out = run(tree, tmp_path / "odd", "random", "schedule.initial_size=9", "schedule.epochs=2")
    cycles = pd.read_csv(out / "cycles.csv")
    assert cycles.n_labeled.tolist() == [9, 13] and cycles.value.notna().all()  # 13 = 3 x 4 + 1 too
    skipped = [
        r.getMessage() for r in caplog.records if "skipped the last training batch of 1 sample" in r.getMessage()
    ]
    assert len(skipped) == 4  # one per epoch, 2 epochs x 2 cycles
    assert len({m.rsplit("pool index ", 1)[1] for m in skipped}) > 1  # not always the same image


def test_changing_annotations_of_unlabeled_images_does_not_change_the_selection(tmp_path):
    """Label permutation: relabel and move every box of the images left unlabeled -> same picks and scores."""
    tree = generate_vocdevkit(tmp_path / "gen", images=40, seed=0)
    first = run(tree, tmp_path / "a", "learning_loss")
    selected = pd.read_csv(first / "selected.csv")
    initial = set(selected[selected.cycle == 0].pool_index)
    pool_xmls = _pool_annotation_files(tree)
    for index, path in enumerate(pool_xmls):
        if index not in initial:
            text = path.read_text()
            for a, b in zip(CLASSES, CLASSES[1:] + CLASSES[:1]):
                text = text.replace(f"<name>{a}</name>", f"<name>{b.upper()}</name>")
            path.write_text(
                re.sub(r"<ymin>(\d+)</ymin>", lambda m: f"<ymin>{max(1, int(m[1]) - 2)}</ymin>", text.lower())
            )
    second = pd.read_csv(run(tree, tmp_path / "b", "learning_loss") / "selected.csv")
    # the picks and scores (`classes` records the labels the picks were given afterwards: changed here on purpose)
    picked = ["cycle", "pool_index", "item", "score"]
    picks = selected[selected.cycle == 1].reset_index(drop=True)[picked]
    assert second[second.cycle == 1].reset_index(drop=True)[picked].equals(picks)


def _pool_annotation_files(root: Path) -> list[Path]:
    """Pool order of task=voc_synth: VOC2007 trainval, then VOC2012 trainval."""
    files = []
    for year in ("2007", "2012"):
        voc = root / "VOCdevkit" / f"VOC{year}"
        ids = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()
        files += [voc / "Annotations" / f"{i}.xml" for i in ids]
    return files

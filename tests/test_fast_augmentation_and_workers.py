"""Fast data paths: the fast SSD augmentation against torchvision's v2 reference recipe on generated VOC
data (same draws, same boxes, close pixels, same statistics), and DataLoader workers that persist across epochs
for detection and pose without changing a batch."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from al_runner.errors import ConfigError
from al_runner.tasks import loading
from al_runner.tasks.detection import VOCDetectionTask, samples
from al_runner.tasks.detection.generate import CLASSES, generate_vocdevkit
from al_runner.tasks.pose.generate import generate as generate_people
from al_runner.tasks.pose.task import MPIITask

POOL, TEST = [[2007, "trainval"], [2012, "trainval"]], [[2007, "test"]]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_vocdevkit(tmp_path_factory.mktemp("voc"), images=30, seed=5)


def voc_task(root, image_size=96, **kwargs) -> VOCDetectionTask:
    return VOCDetectionTask("voc_synth", str(root), list(CLASSES), POOL, TEST, image_size=image_size, **kwargs)


def augmented(transform, dataset, index: int, seed: int):
    """One training sample as VOCSamples makes it, plus the next number the seeded RNG would give."""
    image = dataset._decode(index)
    a = dataset.split.annotations[index]
    keep = ~a.difficult
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        out, target = transform(image, {"boxes": dataset._boxes(index, image, keep), "labels": a.labels[keep]})
        return out, target, torch.rand(1)


@pytest.fixture(scope="module")
def pairs(tree):
    """(reference, fast) samples: every pool image x 8 seeds, at 96 px output."""
    task = voc_task(tree)
    dataset = task._pool_with_targets
    reference, fast = samples.ssd_train_transform(96, pipeline="reference"), samples.ssd_train_transform(96)
    assert isinstance(fast, samples.FastSSDAugment) and isinstance(reference, v2.Compose)
    return [
        (augmented(reference, dataset, i, 100 * s + i), augmented(fast, dataset, i, 100 * s + i))
        for s in range(8)
        for i in range(task.pool_size)
    ]


def test_fast_augmentation_draws_the_same_numbers_and_gives_the_same_boxes(pairs):
    for (ref_image, ref_target, ref_next), (image, target, following) in pairs:
        assert torch.equal(target["boxes"], ref_target["boxes"]) and torch.equal(target["labels"], ref_target["labels"])
        assert target["boxes"].canvas_size == ref_target["boxes"].canvas_size == (96, 96)
        assert torch.equal(following, ref_next)  # the RNG is left where the reference leaves it
        assert image.shape == ref_image.shape == (3, 96, 96) and image.dtype == ref_image.dtype == torch.float32
    # the draws cover the branches where boxes are dropped (by the crop, or too small at 96 px)
    counts = [len(r[1]["labels"]) for r, _ in pairs]
    assert len(set(counts)) > 1


def test_fast_augmentation_pixels_are_close_to_the_reference_and_their_statistics_match(pairs):
    per_image = torch.tensor([(image - ref).abs().mean().item() for (ref, _, _), (image, _, _) in pairs]) * 255
    # resize before vs after the colour steps, the fill border, the contrast mean from a thumbnail: < 2 levels
    assert float(per_image.median()) < 1.0 and float(per_image.max()) < 4.0
    ref_stack = torch.stack([ref for (ref, _, _), _ in pairs])
    fast_stack = torch.stack([image for _, (image, _, _) in pairs])
    for stat in (
        lambda x: x.mean(dim=(0, 2, 3)),
        lambda x: x.std(dim=(0, 2, 3)),
        lambda x: x.mean(dim=(2, 3)).std(dim=0),
    ):  # per-channel mean, spread, image-to-image spread
        torch.testing.assert_close(stat(fast_stack), stat(ref_stack), atol=2 / 255, rtol=0)


def test_iou_crop_search_equals_torchvisions_make_params():
    crop = v2.RandomIoUCrop()
    g = torch.Generator().manual_seed(0)
    for k in range(60):
        height, width = (int(v) for v in torch.randint(40, 900, (2,), generator=g))
        n = int(torch.randint(0, 6, (1,), generator=g))  # 0: only "leave as is" ends the search
        corner = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) * 0.8
        size = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) * 0.5 + 1
        boxes = tv_tensors.BoundingBoxes(
            torch.cat([corner, corner + size], 1).floor(), format="XYXY", canvas_size=(height, width)
        )
        results = []
        image = tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8))
        for search in (
            lambda: crop.make_params([image, boxes]),
            lambda: samples.iou_crop_params(crop, height, width, boxes),
        ):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(k)
                params = search()
                results.append((params, torch.rand(1)))
        (want, want_next), (got, got_next) = results
        assert set(got) == set(want) and torch.equal(got_next, want_next), k
        for key in want:
            same = torch.equal(got[key], want[key]) if key == "is_within_crop_area" else got[key] == want[key]
            assert same, (k, key)


@pytest.mark.parametrize("hue", [-0.05, -0.011, 0.0, 0.029, 0.05, 0.5])
def test_uint8_hue_shift_is_torchvisions_within_one_level(hue):
    image = torch.randint(0, 256, (3, 60, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    image[:, :5] = 90  # grey pixels: no hue
    difference = (samples.adjust_hue_uint8(image, hue).int() - TF.adjust_hue(image, hue).int()).abs()
    assert int(difference.max()) <= 1 and float((difference > 0).float().mean()) < 1e-3


def test_unknown_augmentation_pipeline_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="augmentation.pipeline=fastest not supported, choose from fast, reference"):
        samples.ssd_train_transform(300, pipeline="fastest")


# ------------------------------------------------------------------ persistent workers


def epochs(task, n_epochs, batch_size=4):
    """`n_epochs` training passes from one generator (as the loop draws them), then a scoring and a test pass."""
    g = torch.Generator().manual_seed(0)
    out = [list(task.labeled_batches(torch.arange(task.pool_size), batch_size, g)) for _ in range(n_epochs)]
    out.append([(x, None, i) for x, i in task.input_batches(torch.arange(task.pool_size), batch_size)])
    out.append(list(task.test_batches(batch_size)))
    return out


def assert_same_passes(a, b, same_target):
    assert len(a) == len(b)
    for pass_a, pass_b in zip(a, b):
        assert len(pass_a) == len(pass_b)
        for (xa, ya, ia), (xb, yb, ib) in zip(pass_a, pass_b):
            assert torch.equal(xa, xb) and torch.equal(ia, ib)
            assert same_target(ya, yb)


def worker_pids(loader: loading.PersistentLoader) -> list[int]:
    return [w.pid for w in loader.loader._iterator._workers]


def test_detection_batches_are_the_same_with_persistent_workers_across_epochs(tree):
    def same(ya, yb):
        return ya is yb is None or all(
            torch.equal(s["boxes"], t["boxes"]) and torch.equal(s["labels"], t["labels"]) for s, t in zip(ya, yb)
        )

    single, workers = voc_task(tree, image_size=64), voc_task(tree, image_size=64, num_workers=2)
    assert_same_passes(epochs(single, 3), epochs(workers, 3), same)
    loader = vars(workers._pool_with_targets)[loading.LOADERS_ATTRIBUTE]["batches"]
    pids = worker_pids(loader)
    assert len(pids) == 2
    list(workers.labeled_batches(torch.arange(workers.pool_size), 4, torch.Generator().manual_seed(1)))
    assert worker_pids(loader) == pids  # the same two processes served every epoch
    assert loading.LOADERS_ATTRIBUTE not in workers._pool_with_targets.__getstate__()  # picklable for spawn


def test_an_unfinished_pass_does_not_leak_into_the_next(tree):
    task = voc_task(tree, image_size=64, num_workers=2)
    g = torch.Generator().manual_seed(0)
    first = next(iter(task.labeled_batches(torch.arange(task.pool_size), 2, g)))  # abandoned after one batch
    again = list(task.labeled_batches(torch.arange(task.pool_size), 2, torch.Generator().manual_seed(0)))
    assert torch.equal(again[0][0], first[0]) and len(again) == (task.pool_size + 1) // 2


def test_pose_batches_are_the_same_with_persistent_workers_across_epochs(tmp_path):
    root = generate_people(tmp_path / "mpii", people=12, seed=3)

    def task(workers):
        return MPIITask(
            root=str(root),
            annotation_file="hourglass.json",
            image_folder="images",
            input_size=64,
            heatmap_size=16,
            num_workers=workers,
        )

    def same(ya, yb):
        return ya is yb is None or all(torch.equal(ya[k], yb[k]) for k in ya)

    single, workers = task(0), task(2)
    assert_same_passes(epochs(single, 2, batch_size=3), epochs(workers, 2, batch_size=3), same)
    pool_loader = vars(workers)[loading.LOADERS_ATTRIBUTE]["pool"]
    pids = worker_pids(pool_loader)
    list(workers.labeled_batches(torch.arange(workers.pool_size), 3, torch.Generator().manual_seed(1)))
    assert worker_pids(pool_loader) == pids and len(pids) == 2


def test_a_worker_limit_caps_new_loaders(tree):
    try:
        loading.limit_workers(1)
        task = voc_task(tree, image_size=64, num_workers=4)
        list(task.test_batches(4))
        assert vars(task._test)[loading.LOADERS_ATTRIBUTE]["batches"].num_workers == 1
    finally:
        loading.limit_workers(None)
    with pytest.raises(ValueError, match="must be >= 0"):
        loading.limit_workers(-1)


@pytest.mark.parametrize("launcher,jobs", [("gpu_shared", 4), ("gpu_shared", 2), ("parallel", 2)])
def test_jobs_sharing_a_machine_share_its_cores_among_loader_workers(launcher, jobs):
    import os

    from al_runner.cli import share_loader_workers
    from tests.conftest import compose_config

    cfg = compose_config([f"hydra/launcher={launcher}", f"hydra.launcher.n_jobs={jobs}"], return_hydra_config=True)
    try:
        share_loader_workers(cfg.hydra)
        share = max(1, (os.cpu_count() or 1) // jobs)
        assert loading.effective_workers(64) == share and loading.effective_workers(0) == 0
    finally:
        loading.limit_workers(None)
    share_loader_workers(compose_config([], return_hydra_config=True).hydra)  # one run alone: the task's count
    assert loading.effective_workers(64) == 64

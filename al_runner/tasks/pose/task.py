"""MPII human pose as an active-learning task (paper Sec. 4.3): the pool unit is a person.

Images are decoded per batch by a DataLoader (`num_workers` from config). Every random number of the
augmentation comes from a per-sample seed drawn in the main process from the loop's generator, so the
batches are identical whatever the number of workers.

Joints: every *annotated* joint (occluded ones included) gets a heatmap target, enters the loss and is
scored by PCKh, as in MPII's official evaluation and the hourglass recipe (see `annotations.py`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from al_runner.errors import ConfigError, DataError
from al_runner.tasks import loading
from al_runner.tasks.base import Metric, Task
from al_runner.tasks.pose.annotations import NUM_JOINTS, People, check_joints_in_range, parse
from al_runner.tasks.pose.generate import generate
from al_runner.tasks.pose.geometry import (
    ANNOTATION_TO_CONTINUOUS,
    DRAWS,
    Augment,
    CropSpec,
    crop_person,
    flip_person,
    gaussian_in_heatmap,
    head_size_from_box,
    head_size_from_segment,
    render_heatmaps,
    square_crop_box,
)
from al_runner.tasks.pose.metric import HEAD_SIZE_SOURCES, MEANS, PCKh
from al_runner.tasks.pose.official import load_official_truth, match_people

NO_AUGMENT = -1  # seed value meaning "eval transform"
log = logging.getLogger(__name__)

# Which joints enter the heatmap loss (task.loss_joints), from the crop's per-joint flags:
# annotated = has coordinates and its Gaussian reaches the heatmap (bearpaw's `draw_labelmap` vis);
# visible = the same, minus joints marked occluded (bearpaw's later JointsMSELoss target_weight);
# all = every map, a missing joint's all-zero map included (bearpaw's first criterion, MSELoss over all maps).
LOSS_JOINTS = {
    "annotated": lambda sample: sample["annotated"] & sample["on_heatmap"],
    "visible": lambda sample: sample["visible"] & sample["on_heatmap"],
    "all": lambda sample: torch.ones_like(sample["annotated"]),
}


@dataclass
class EvalTruth:
    """What PCKh scores a split against, one row per person."""

    joints: torch.Tensor  # [N, 16, 2] annotation coordinates
    annotated: torch.Tensor  # [N, 16] bool
    head_size: torch.Tensor  # [N]; NaN = cannot be scored
    head_size_source: torch.Tensor  # [N] long, index into HEAD_SIZE_SOURCES


class PersonCrops(Dataset):
    """Item (person index, seed) -> the person's crop, its joints at input scale and the crop box."""

    def __init__(
        self,
        people: People,
        image_folder: Path,
        input_size: int,
        heatmap_size: int,
        sigma: float,
        crop: CropSpec,
        augmentation: dict,
        mean: list[float],
        std: list[float],
    ):
        self.people, self.image_folder, self.input_size = people, image_folder, input_size
        self.heatmap_size, self.sigma = heatmap_size, sigma
        self.crop, self.augmentation, self.mean, self.std = crop, augmentation, list(mean), list(std)

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        aug = (
            Augment() if seed == NO_AUGMENT else Augment.draw(torch.Generator().manual_seed(seed), **self.augmentation)
        )
        path = self.image_folder / self.people.images[index]
        try:
            with PILImage.open(path) as im:  # Pillow: torchvision's own decoders are deprecated in 0.29
                image = tv_tensors.Image(F.pil_to_tensor(im.convert("RGB")))
        except OSError as e:
            raise DataError(f"{self.people.entries[index]}: cannot read image {path}: {e}") from None
        cx, cy, side = self.crop.box(self.people.centers[index], float(self.people.scales[index]))
        box = square_crop_box(cx, cy, side * aug.scale)
        points = tv_tensors.KeyPoints(
            self.people.joints[index].float() + ANNOTATION_TO_CONTINUOUS, canvas_size=tuple(image.shape[-2:])
        )
        flags = torch.stack([self.people.annotated[index], self.people.visible[index]])
        image, points = crop_person(image, points, box, self.input_size, aug.rotation)
        if aug.flip:
            image, points, flags = flip_person(image, points, flags)
        pixels = F.to_dtype(image, torch.float32, scale=True)
        if aug.gains != (1.0, 1.0, 1.0):  # the recipe's colour jitter: a random gain per channel
            pixels = (pixels * torch.tensor(aug.gains, dtype=torch.float32)[:, None, None]).clamp_(0, 1)
        points = points.as_subclass(torch.Tensor)
        return {
            "input": F.normalize(pixels.as_subclass(torch.Tensor), self.mean, self.std),
            "points": points,
            "annotated": flags[0],
            "visible": flags[1],
            "on_heatmap": gaussian_in_heatmap(points, self.input_size, self.heatmap_size, self.sigma),
            "box": torch.tensor(box, dtype=torch.float64),
        }


class MPIITask(Task):
    name = "mpii"
    metric_name = "PCKh@0.5"
    uncertainty_name = "heatmap_softmax_entropy"

    def __init__(
        self,
        root: str,
        annotation_file: str,
        image_folder: str = "images",
        format: str = "auto",
        test_annotation_file: str | None = None,
        test_image_folder: str | None = None,
        test_format: str = "auto",
        missing_images: str = "error",
        num_workers: int = 0,
        input_size: int = 256,
        heatmap_size: int = 64,
        sigma: float = 1.0,
        crop: dict | None = None,
        augmentation: dict | None = None,
        mean=(0.4404, 0.4440, 0.4327),
        std=(0.2458, 0.2410, 0.2468),
        loss_joints: str = "annotated",
        loss_scale: float = 1.0,
        official_gt_file: str | None = None,
        pckh_threshold: float = 0.5,
        pckh_mean_excludes=(6, 7),
        pckh_mean: str = "weighted",
        generate_people: int | None = None,
        name: str = "mpii",
    ):
        if input_size != 4 * heatmap_size:
            raise ConfigError(
                f"task.input_size ({input_size}) must be 4x task.heatmap_size ({heatmap_size}): "
                "the hourglass predicts at 1/4 of its input resolution"
            )
        if missing_images not in ("error", "skip"):
            raise ConfigError(f"task.missing_images '{missing_images}' not supported, choose from error, skip")
        for key, value, choices in (("loss_joints", loss_joints, LOSS_JOINTS), ("pckh_mean", pckh_mean, MEANS)):
            if value not in choices:
                raise ConfigError(f"task.{key} '{value}' not supported, choose from {', '.join(choices)}")
        self.name, self.root = name, Path(root)
        self.input_size, self.heatmap_size, self.sigma = input_size, heatmap_size, sigma
        self.num_workers, self.missing_images = num_workers, missing_images
        self.pckh_threshold, self.pckh_mean_excludes = pckh_threshold, tuple(pckh_mean_excludes)
        self.pckh_mean = pckh_mean
        self.loss_joints, self.loss_scale = loss_joints, loss_scale
        self.crop = CropSpec(**(crop or {}))
        self.augmentation = self._augmentation(augmentation)
        annotation = self.root / annotation_file
        if generate_people and not annotation.exists():
            generate(self.root, people=generate_people)
        pool, test = self._load_splits(
            annotation, image_folder, format, test_annotation_file, test_image_folder, test_format
        )
        self.pool_people, self.pool_folder = pool
        self.test_people, self.test_folder = test
        self._files = {
            "pool": annotation,
            "test": self.root / test_annotation_file if test_annotation_file else annotation,
        }
        crops = dict(
            input_size=input_size,
            heatmap_size=heatmap_size,
            sigma=sigma,
            crop=self.crop,
            augmentation=self.augmentation,
            mean=mean,
            std=std,
        )
        self._datasets = {
            "pool": PersonCrops(self.pool_people, self.pool_folder, **crops),
            "test": PersonCrops(self.test_people, self.test_folder, **crops),
        }
        self._official_file = self.root / official_gt_file if official_gt_file else None
        self._truth = {"pool": annotation_truth(self.pool_people), "test": self._test_truth(self._official_file)}
        self.device = torch.device("cpu")

    @staticmethod
    def _augmentation(overrides: dict | None) -> dict:
        # bearpaw/pytorch-pose Mpii defaults (scale_factor 0.25, rot_factor 30, rotation on 60 %, flip 0.5, gain 0.2)
        augmentation = dict(
            draw="clamped_gaussian",
            scale_factor=0.25,
            rotation_factor=30.0,
            rotation_prob=0.6,
            flip_prob=0.5,
            color_gain=0.2,
        ) | dict(overrides or {})
        unknown = set(augmentation) - {
            "draw",
            "scale_factor",
            "rotation_factor",
            "rotation_prob",
            "flip_prob",
            "color_gain",
        }
        if unknown:
            raise ConfigError(
                f"task.augmentation: unknown key(s) {sorted(unknown)}, choose from draw, scale_factor, "
                "rotation_factor, rotation_prob, flip_prob, color_gain"
            )
        if augmentation["draw"] not in DRAWS:
            raise ConfigError(
                f"task.augmentation.draw '{augmentation['draw']}' not supported, choose from {', '.join(DRAWS)}"
            )
        return augmentation

    def _test_truth(self, official_file: Path | None) -> EvalTruth:
        """The test split's PCKh truth: the official file's rows when given, else the annotations (named fallback)."""
        if official_file is None:
            truth = annotation_truth(self.test_people)
            used = torch.bincount(truth.head_size_source, minlength=len(HEAD_SIZE_SOURCES)).tolist()
            log.info(
                "PCKh head sizes: %s (no task.official_gt_file given, so not the official MPII number)",
                ", ".join(f"{name} for {n} people" for name, n in zip(HEAD_SIZE_SOURCES, used) if n),
            )
            return truth
        official = match_people(load_official_truth(official_file), self.test_people, official_file)
        log.info(
            "PCKh head sizes and truth: official ground-truth file %s (%d people)", official_file, len(self.test_people)
        )
        return EvalTruth(
            official.joints,
            official.annotated,
            official.head_sizes,
            torch.full((len(self.test_people),), HEAD_SIZE_SOURCES.index("official_gt_file")),
        )

    # ---- loading -------------------------------------------------------------------------------
    def _load_splits(self, annotation, image_folder, fmt, test_annotation, test_folder, test_fmt):
        people = parse(annotation, fmt)
        folder = self.root / image_folder
        if test_annotation:
            pool, test = people, parse(self.root / test_annotation, test_fmt)
            test_dir = self.root / (test_folder or image_folder)
        else:
            pool, test = people.select(~people.is_validation), people.select(people.is_validation)
            test_dir = folder
            if len(test) == 0:
                raise ConfigError(
                    f"{annotation} has no validation people (isValidation = 1): set task.test_annotation_file"
                )
        return (self._checked(pool, folder), folder), (self._checked(test, test_dir), test_dir)

    def _checked(self, people: People, folder: Path) -> People:
        """Missing images: error naming the entry, or skip (task.missing_images). Then joint range checks."""
        sizes, keep = [], []
        for k, image in enumerate(people.images):
            try:
                with PILImage.open(folder / image) as im:  # reads the header only
                    sizes.append(im.size)
                keep.append(k)
            except FileNotFoundError:
                if self.missing_images == "error":
                    raise DataError(
                        f"{people.entries[k]}: image file not found: {folder / image} "
                        "(set task.missing_images=skip to leave such people out)"
                    ) from None
            except OSError as e:
                raise DataError(f"{people.entries[k]}: unreadable image {folder / image}: {e}") from None
        if len(keep) < len(people):
            log.warning(
                "skipped %d of %d people whose image is missing under %s", len(people) - len(keep), len(people), folder
            )
            if not keep:
                raise DataError(f"none of the {len(people)} people's images is present under {folder}")
            people = people.select(torch.tensor(keep))
        check_joints_in_range(people, sizes, self.crop.pixels_per_scale)
        return people

    # ---- Task contract --------------------------------------------------------------------------
    @property
    def pool_size(self) -> int:
        return len(self.pool_people)

    @property
    def test_size(self) -> int:
        return len(self.test_people)

    def model_kwargs(self) -> dict:
        return {"num_joints": NUM_JOINTS}

    def to(self, device: torch.device) -> "MPIITask":
        self.device = torch.device(device)
        return self

    def fingerprint(self) -> dict[str, str]:
        return {split: self._split_hash(split) for split in ("pool", "test")}

    def _split_hash(self, split: str) -> str:
        people = self.pool_people if split == "pool" else self.test_people
        folder = self.pool_folder if split == "pool" else self.test_folder
        digest = hashlib.sha1(self._files[split].read_bytes())
        if split == "test" and self._official_file is not None:  # the official truth scores the test split
            digest.update(self._official_file.read_bytes())
        for image in sorted(set(people.images)):
            digest.update(f"{image}:{os.path.getsize(folder / image)};".encode())
        return digest.hexdigest()

    def labeled_batches(self, indices, batch_size, generator, augment=True) -> Iterator:
        order = indices[torch.randperm(len(indices), generator=generator)]
        if augment:
            seeds = torch.randint(0, 2**62, (len(order),), generator=generator)
        else:
            seeds = torch.full((len(order),), NO_AUGMENT)
        yield from self._batches("pool", order, seeds, batch_size, with_targets=True)

    def input_batches(self, indices, batch_size) -> Iterator:
        seeds = torch.full((len(indices),), NO_AUGMENT)
        for inputs, _, idx in self._batches("pool", indices, seeds, batch_size, with_targets=False):
            yield inputs, idx

    def test_batches(self, batch_size) -> Iterator:
        indices = torch.arange(self.test_size)
        yield from self._batches("test", indices, torch.full((self.test_size,), NO_AUGMENT), batch_size, True)

    def _batches(self, split: str, indices: torch.Tensor, seeds: torch.Tensor, batch_size: int, with_targets: bool):
        items = list(zip(indices.tolist(), seeds.tolist()))
        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        # workers persist across epochs (al_runner.tasks.loading); items carry their seeds: same batches for any count
        loader = loading.persistent_batches(
            self, split, self._datasets[split], batches, self.num_workers, pin_memory=self.device.type == "cuda"
        )
        for batch, chunk in zip(loader, batches):
            idx = torch.tensor([i for i, _ in chunk])
            inputs = batch["input"].to(self.device, non_blocking=True)
            targets = self._targets(batch, self._truth[split], idx) if with_targets else None
            yield inputs, targets, idx

    def _targets(self, batch: dict, truth: EvalTruth, idx: torch.Tensor) -> dict:
        heatmaps = render_heatmaps(batch["points"], batch["annotated"], self.input_size, self.heatmap_size, self.sigma)
        targets = {
            "heatmaps": heatmaps,
            "weight": LOSS_JOINTS[self.loss_joints](batch).float(),
            "joints": truth.joints[idx],
            "joints_annotated": truth.annotated[idx],
            "head_size": truth.head_size[idx],
            "head_size_source": truth.head_size_source[idx],
            "box": batch["box"],
        }
        return {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}

    # ---- losses, uncertainty, metric -----------------------------------------------------------
    def per_sample_loss(self, outputs, targets) -> torch.Tensor:
        """Heatmap MSE per person, bearpaw's normalisation: the weighted squared error averaged over all
        pixels and all 16 joint maps (a joint with weight 0 adds 0 but still counts in the 16), summed over
        the stacks (intermediate supervision). The batch mean of this is bearpaw's `MSELoss(size_average=True)`
        summed over stacks, the scale the paper's lambda = 1e-4 was set for; `loss_scale` multiplies it."""
        weight = targets["weight"]
        per_joint = sum(((o.float() - targets["heatmaps"]) ** 2).mean(dim=(-2, -1)) for o in outputs)  # [B, J]
        return self.loss_scale * (per_joint * weight).mean(1)

    def uncertainty(self, outputs) -> torch.Tensor:
        """Softmax over each joint's heatmap (last stack), entropy, averaged over joints (paper Sec. 4.3)."""
        last = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        log_p = torch.log_softmax(last.float().flatten(2), dim=-1)
        return -(log_p.exp() * log_p).sum(-1).mean(-1)

    def new_metric(self) -> Metric:
        return PCKh(self.input_size, self.pckh_threshold, self.pckh_mean_excludes, self.pckh_mean)

    def pool_item_names(self, indices) -> list[str]:
        """Image file and person index, e.g. "015601864.jpg#1": the person's place among that image's people in
        the pool, in annotation-file order (MPII annotates several people per image)."""
        seen: dict[str, int] = {}
        person = []
        for image in self.pool_people.images:
            person.append(seen.get(image, 0))
            seen[image] = person[-1] + 1
        return [f"{self.pool_people.images[int(i)]}#{person[int(i)]}" for i in indices]


def annotation_truth(people: People) -> EvalTruth:
    """PCKh truth from the annotation file: its head box when it has one, else the head segment (fallback).
    Without either (no box, upper neck or head top not annotated) the person cannot be scored."""
    boxes = people.headboxes
    has_box = torch.isfinite(boxes).all(-1)
    has_segment = people.annotated[:, 8] & people.annotated[:, 9]
    head_size = torch.where(has_box, head_size_from_box(boxes), head_size_from_segment(people.joints))
    head_size = torch.where(has_box | has_segment, head_size, torch.nan)
    source = torch.where(
        has_box, HEAD_SIZE_SOURCES.index("annotation_headbox"), HEAD_SIZE_SOURCES.index("head_segment")
    )
    return EvalTruth(people.joints, people.annotated, head_size, source)

"""MPII human pose as an active-learning task (paper Sec. 4.3): the pool unit is a person.

Images are decoded per batch by a DataLoader (`num_workers` from config). Every random number of the
augmentation comes from a per-sample seed drawn in the main process from the loop's generator, so the
batches are identical whatever the number of workers.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from al_runner.errors import ConfigError, DataError
from al_runner.tasks.base import Metric, Task
from al_runner.tasks.pose.annotations import NUM_JOINTS, People, check_joints_in_range, parse
from al_runner.tasks.pose.geometry import (ANNOTATION_TO_CONTINUOUS, Augment, CropSpec, crop_person, flip_person,
                                           head_size_from_box, head_size_from_segment, inside, render_heatmaps,
                                           square_crop_box)
from al_runner.tasks.pose.metric import PCKh

NO_AUGMENT = -1  # seed value meaning "eval transform"


class PersonCrops(Dataset):
    """Item (person index, seed) -> the person's crop, its joints at input scale and the crop box."""

    def __init__(self, people: People, image_folder: Path, input_size: int, crop: CropSpec, augmentation: dict,
                 mean: list[float], std: list[float]):
        self.people, self.image_folder, self.input_size = people, image_folder, input_size
        self.crop, self.augmentation, self.mean, self.std = crop, augmentation, list(mean), list(std)

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        aug = Augment() if seed == NO_AUGMENT else Augment.draw(torch.Generator().manual_seed(seed), **self.augmentation)
        path = self.image_folder / self.people.images[index]
        try:
            with PILImage.open(path) as im:  # Pillow: torchvision's own decoders are deprecated in 0.29
                image = tv_tensors.Image(F.pil_to_tensor(im.convert("RGB")))
        except OSError as e:
            raise DataError(f"{self.people.entries[index]}: cannot read image {path}: {e}") from None
        cx, cy, side = self.crop.box(self.people.centers[index], float(self.people.scales[index]))
        box = square_crop_box(cx, cy, side * aug.scale)
        points = tv_tensors.KeyPoints(self.people.joints[index].float() + ANNOTATION_TO_CONTINUOUS,
                                      canvas_size=tuple(image.shape[-2:]))
        visible = self.people.visible[index].clone()
        image, points = crop_person(image, points, box, self.input_size, aug.rotation)
        if aug.flip:
            image, points, visible = flip_person(image, points, visible)
        pixels = F.to_dtype(image, torch.float32, scale=True)
        if aug.gains != (1.0, 1.0, 1.0):  # the recipe's colour jitter: a random gain per channel
            pixels = (pixels * torch.tensor(aug.gains, dtype=torch.float32)[:, None, None]).clamp_(0, 1)
        points = points.as_subclass(torch.Tensor)
        return {
            "input": F.normalize(pixels.as_subclass(torch.Tensor), self.mean, self.std),
            "points": points,
            "visible": visible & inside(points, self.input_size),  # a joint outside the crop gets no target
            "box": torch.tensor(box, dtype=torch.float64),
        }


class MPIITask(Task):
    name = "mpii"
    metric_name = "PCKh@0.5"
    uncertainty_name = "heatmap_softmax_entropy"

    def __init__(self, root: str, annotation_file: str, image_folder: str = "images", format: str = "auto",
                 test_annotation_file: str | None = None, test_image_folder: str | None = None,
                 test_format: str = "auto", missing_images: str = "error", num_workers: int = 0,
                 input_size: int = 256, heatmap_size: int = 64, sigma: float = 1.0, crop: dict | None = None,
                 augmentation: dict | None = None, mean=(0.4404, 0.4440, 0.4327), std=(0.2458, 0.2410, 0.2468),
                 pckh_threshold: float = 0.5, pckh_mean_excludes=(6, 7), generate_people: int | None = None,
                 name: str = "mpii"):
        if input_size != 4 * heatmap_size:
            raise ConfigError(f"task.input_size ({input_size}) must be 4x task.heatmap_size ({heatmap_size}): "
                              "the hourglass predicts at 1/4 of its input resolution")
        if missing_images not in ("error", "skip"):
            raise ConfigError(f"task.missing_images '{missing_images}' not supported, choose from error, skip")
        self.name, self.root = name, Path(root)
        self.input_size, self.heatmap_size, self.sigma = input_size, heatmap_size, sigma
        self.num_workers, self.missing_images = num_workers, missing_images
        self.pckh_threshold, self.pckh_mean_excludes = pckh_threshold, tuple(pckh_mean_excludes)
        self.crop = CropSpec(**(crop or {}))
        self.augmentation = dict(scale_range=0.25, rotation_deg=30.0, rotation_prob=0.4, flip_prob=0.5,
                                 color_gain=0.2) | dict(augmentation or {})
        annotation = self.root / annotation_file
        if generate_people and not annotation.exists():
            from al_runner.tasks.pose.generate import generate
            generate(self.root, people=generate_people)
        pool, test = self._load_splits(annotation, image_folder, format, test_annotation_file, test_image_folder,
                                       test_format)
        self.pool_people, self.pool_folder = pool
        self.test_people, self.test_folder = test
        self._files = {"pool": annotation, "test": self.root / test_annotation_file if test_annotation_file else annotation}
        self._datasets = {
            "pool": PersonCrops(self.pool_people, self.pool_folder, input_size, self.crop, self.augmentation, mean, std),
            "test": PersonCrops(self.test_people, self.test_folder, input_size, self.crop, self.augmentation, mean, std),
        }
        self.device = torch.device("cpu")

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
                raise ConfigError(f"{annotation} has no validation people (isValidation = 1): "
                                  "set task.test_annotation_file")
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
                    raise DataError(f"{people.entries[k]}: image file not found: {folder / image} "
                                    "(set task.missing_images=skip to leave such people out)") from None
            except OSError as e:
                raise DataError(f"{people.entries[k]}: unreadable image {folder / image}: {e}") from None
        if len(keep) < len(people):
            warnings.warn(f"skipped {len(people) - len(keep)} of {len(people)} people whose image is missing "
                          f"under {folder}", stacklevel=3)
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
        loader = DataLoader(self._datasets[split], batch_sampler=batches, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        people = self.pool_people if split == "pool" else self.test_people
        for batch, chunk in zip(loader, batches):
            idx = torch.tensor([i for i, _ in chunk])
            inputs = batch["input"].to(self.device, non_blocking=True)
            targets = self._targets(batch, people, idx) if with_targets else None
            yield inputs, targets, idx

    def _targets(self, batch: dict, people: People, idx: torch.Tensor) -> dict:
        heatmaps = render_heatmaps(batch["points"], batch["visible"], self.input_size, self.heatmap_size, self.sigma)
        boxes = people.headboxes[idx]
        head_size = torch.where(torch.isfinite(boxes).all(-1), head_size_from_box(boxes),
                                head_size_from_segment(people.joints[idx]))
        head_known = people.visible[idx][:, 8] & people.visible[idx][:, 9]
        head_size = torch.where(torch.isfinite(boxes).all(-1) | head_known, head_size, torch.nan)
        targets = {
            "heatmaps": heatmaps, "visible": batch["visible"].float(),
            "joints": people.joints[idx], "joints_visible": people.visible[idx], "head_size": head_size,
            "box": batch["box"],
        }
        return {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}

    # ---- losses, uncertainty, metric -----------------------------------------------------------
    def per_sample_loss(self, outputs, targets) -> torch.Tensor:
        """Heatmap MSE per person: mean over pixels, over visible joints, summed over the stacks
        (intermediate supervision adds one such loss per stack, as the hourglass recipe does)."""
        visible = targets["visible"]
        per_joint = sum(((o.float() - targets["heatmaps"]) ** 2).mean(dim=(-2, -1)) for o in outputs)  # [B, J]
        return (per_joint * visible).sum(1) / visible.sum(1).clamp(min=1.0)

    def uncertainty(self, outputs) -> torch.Tensor:
        """Softmax over each joint's heatmap (last stack), entropy, averaged over joints (paper Sec. 4.3)."""
        last = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        log_p = torch.log_softmax(last.float().flatten(2), dim=-1)
        return -(log_p.exp() * log_p).sum(-1).mean(-1)

    def new_metric(self) -> Metric:
        return PCKh(self.input_size, self.pckh_threshold, self.pckh_mean_excludes)

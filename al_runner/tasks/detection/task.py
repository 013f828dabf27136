"""Object detection on PASCAL VOC (paper Sec. 4.2): the Task the cycle loop drives."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import torch

from al_runner.tasks.base import Metric, Task
from al_runner.tasks.detection import samples
from al_runner.tasks.detection.multibox import MultiBoxLoss, SSDPostprocess, entropy_over_detections
from al_runner.tasks.detection.voc_data import VOCSplit, read_voc_split
from al_runner.tasks.detection.voc_eval import VOC07MeanAP

SEED_RANGE = 2**62
POSTPROCESS_INPUTS = ("cls_logits", "bbox_regression", "anchors")  # what `SSDPostprocess` reads of the outputs


class VOCDetectionTask(Task):
    metric_name = "mAP@0.5"
    uncertainty_name = "detection_entropy"

    def __init__(
        self,
        name: str,
        root: str,
        classes: list[str],
        pool_sets: list,
        test_sets: list,
        image_size: int = 300,
        num_workers: int = 0,
        download: bool = False,
        augmentation: dict | None = None,
        loss: dict | None = None,
        detection: dict | None = None,
        uncertainty=entropy_over_detections,
    ):
        """uncertainty(outputs, detect) -> [B]: the entropy baseline's score (after NMS by default; the
        pre-NMS variant is `multibox.entropy_over_top_anchors`)."""
        classes = list(classes)
        self._build(
            name,
            classes,
            read_voc_split(root, pool_sets, classes, download),
            read_voc_split(root, test_sets, classes, download),
            image_size,
            num_workers,
            augmentation,
            loss,
            detection,
            uncertainty,
        )

    def _build(
        self,
        name: str,
        classes: list[str],
        pool: VOCSplit,
        test: VOCSplit,
        image_size: int,
        num_workers: int,
        augmentation: dict | None,
        loss: dict | None,
        detection: dict | None,
        uncertainty,
    ) -> None:
        """Everything but reading the splits (al-label's `ProjectDetectionTask` gives its own)."""
        self.name, self.classes, self.image_size = name, list(classes), int(image_size)
        self.num_workers = int(num_workers)
        self.pool, self.test = pool, test
        train_transform = samples.ssd_train_transform(self.image_size, **(augmentation or {}))
        self._pool_with_targets = samples.VOCSamples(self.pool, self.image_size, train_transform, with_targets=True)
        self._pool_inputs = samples.VOCSamples(self.pool, self.image_size, None, with_targets=False)
        self._test = samples.VOCSamples(self.test, self.image_size, None, with_targets=True)
        self.loss = MultiBoxLoss(**(loss or {}))
        self.postprocess = SSDPostprocess(**(detection or {}))
        self.image_entropy = uncertainty
        self.device = torch.device("cpu")
        self._last_detections = None  # (weak references to the last outputs' tensors, their detections): `detect`

    @property
    def pool_size(self) -> int:
        return len(self.pool)

    @property
    def test_size(self) -> int:
        return len(self.test)

    def to(self, device: torch.device) -> "VOCDetectionTask":
        self.device = torch.device(device)
        return self

    def model_kwargs(self) -> dict:
        return {"num_classes": len(self.classes) + 1}  # torchvision's count includes the background

    def fingerprint(self) -> dict[str, str]:
        return {"pool": self.pool.fingerprint(), "test": self.test.fingerprint()}

    # --- batches -------------------------------------------------------------------------------------
    def labeled_batches(self, indices, batch_size, generator, augment=True) -> Iterator:
        order = indices[torch.randperm(len(indices), generator=generator)]
        seeds = torch.randint(SEED_RANGE, (len(order),), generator=generator) if augment else None
        items = list(zip(order.tolist(), seeds.tolist() if augment else [None] * len(order)))
        for images, targets, idx in self._batches(self._pool_with_targets, items, batch_size):
            yield images, [self._target_to_device(t) for t in targets], idx

    def input_batches(self, indices, batch_size) -> Iterator:
        items = [(i, None) for i in indices.tolist()]
        for images, _, idx in self._batches(self._pool_inputs, items, batch_size):
            yield images, idx

    def test_batches(self, batch_size) -> Iterator:
        items = [(i, None) for i in range(self.test_size)]
        for images, targets, idx in self._batches(self._test, items, batch_size):
            yield images, [self._target_to_device(t) for t in targets], idx

    def _batches(self, dataset, items, batch_size):
        pin = self.device.type == "cuda"
        for images, targets, idx in samples.batches(dataset, items, batch_size, self.num_workers, pin):
            yield images.to(self.device, non_blocking=pin), targets, idx

    def _target_to_device(self, target: dict) -> dict:
        return {key: value.to(self.device, non_blocking=True) for key, value in target.items()}

    # --- losses, uncertainty, metric -----------------------------------------------------------------
    def per_sample_loss(self, outputs, targets) -> torch.Tensor:
        return self.loss(outputs, targets)[0]

    def training_losses(self, outputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(outputs, targets)

    def uncertainty(self, outputs) -> torch.Tensor:
        return self.image_entropy(outputs, self.detect)

    def detect(self, outputs) -> list[dict[str, torch.Tensor]]:
        """The post-processed detections of one batch's outputs. Those of the last outputs are kept: evaluation
        asks twice per test batch (the mAP metric, the entropy after NMS), and they are computed once. Outputs
        are the same while their tensors are the same objects (a forward pass makes new ones; nothing changes
        them in place)."""
        tensors = [outputs[key] for key in POSTPROCESS_INPUTS]
        if self._last_detections is not None:
            refs, detections = self._last_detections
            if all(ref() is tensor for ref, tensor in zip(refs, tensors)):
                return detections
        detections = self.postprocess(outputs, (self.image_size, self.image_size))
        self._last_detections = ([weakref.ref(tensor) for tensor in tensors], detections)
        return detections

    def new_metric(self) -> Metric:
        return VOC07MeanAP(self.classes, self.detect)

    def labeled_class_names(self, indices) -> list[list[str]]:
        """The class of every annotated object of each labeled image, difficult ones included (selected.csv's
        `classes`; never shown to a sampler)."""
        return [[self.classes[int(label) - 1] for label in self.pool.annotations[int(i)].labels] for i in indices]

    def pool_item_names(self, indices) -> list[str]:
        """VOC year folder and image id, e.g. "VOC2007/000005" (the image is <devkit>/VOC2007/JPEGImages/000005.jpg)."""
        from pathlib import PurePath  # local: this method is the only user

        def name(path: str) -> str:
            image = PurePath(path)
            return f"{image.parent.parent.name}/{image.stem}"

        return [name(self.pool.images[int(i)]) for i in indices]


__all__ = ["VOCDetectionTask", "VOCSplit"]

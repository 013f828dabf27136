"""Image classification on in-memory uint8 tensors (CIFAR-10, ImageFolder trees, mnist5k)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import torch
from torch.nn import functional as F

from al_runner.tasks.base import Metric, Task
from al_runner.tasks.classification.augment import CropFlipNormalize
from al_runner.tasks.classification.metric import Accuracy
from al_runner.tasks.classification.splits import ImageSplits


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


class ClassificationTask(Task):
    metric_name = "accuracy"
    uncertainty_name = "softmax_entropy"  # entropy of the class softmax (the paper's entropy baseline)

    def __init__(self, name: str, data: ImageSplits | Callable[[], ImageSplits], augmentation: CropFlipNormalize):
        self.name = name
        self.data = data() if callable(data) else data
        self.augmentation = augmentation
        if augmentation.mean is None:
            augmentation.fit_statistics(self.data.train_images)
        self.device = torch.device("cpu")

    def fingerprint(self) -> dict[str, str]:
        """Content hashes of the decoded images and labels: any added, removed or changed image shows."""

        def digest(images: torch.Tensor, labels: torch.Tensor) -> str:
            h = hashlib.sha1(images.cpu().contiguous().numpy().tobytes())
            h.update(labels.cpu().numpy().tobytes())
            return f"{images.shape[0]} images, sha1 {h.hexdigest()[:16]}"

        return {
            "pool": digest(self.data.train_images, self.data.train_labels),
            "test": digest(self.data.test_images, self.data.test_labels),
        }

    def model_kwargs(self) -> dict:
        return {"in_channels": self.data.channels, "num_classes": self.data.num_classes}

    @property
    def pool_size(self) -> int:
        return self.data.train_images.shape[0]

    @property
    def test_size(self) -> int:
        return self.data.test_images.shape[0]

    def to(self, device: torch.device) -> "ClassificationTask":
        self.device = torch.device(device)
        d = self.data
        self.data = ImageSplits(
            d.train_images.to(self.device),
            d.train_labels.to(self.device),
            d.test_images.to(self.device),
            d.test_labels.to(self.device),
            d.classes,
            d.train_names,
        )
        return self

    def pool_item_names(self, indices) -> list[str]:
        """The image's name in its dataset: "train/cat/0001.jpg" (ImageFolder), "train/123" (CIFAR-10's train split)."""
        return [self.data.train_name(int(i)) for i in indices]

    def labeled_class_names(self, indices) -> list[list[str]]:
        """The class of each labeled point (selected.csv's `classes`; never shown to a sampler)."""
        labels = self.data.train_labels[torch.as_tensor(indices, dtype=torch.long).to(self.device)].tolist()
        return [[self.data.classes[label]] for label in labels]

    def labeled_batches(self, indices, batch_size, generator, augment=True) -> Iterator:
        order = indices[torch.randperm(len(indices), generator=generator)]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            idx_dev = idx.to(self.device)
            images = self.data.train_images[idx_dev]
            inputs = self.augmentation.train(images, generator) if augment else self.augmentation.eval(images)
            yield inputs, self.data.train_labels[idx_dev], idx

    def input_batches(self, indices, batch_size) -> Iterator:
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            yield self.augmentation.eval(self.data.train_images[idx.to(self.device)]), idx

    def test_batches(self, batch_size) -> Iterator:
        for start in range(0, self.test_size, batch_size):
            idx = torch.arange(start, min(start + batch_size, self.test_size))
            idx_dev = idx.to(self.device)
            yield self.augmentation.eval(self.data.test_images[idx_dev]), self.data.test_labels[idx_dev], idx

    def per_sample_loss(self, outputs, targets) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, reduction="none")

    def uncertainty(self, outputs) -> torch.Tensor:
        return softmax_entropy(outputs)

    def class_probabilities(self, outputs) -> torch.Tensor:
        """[B, C] softmax of the logits: what margin, least confidence, BALD and BADGE rank by."""
        return F.softmax(outputs.float(), dim=1)

    def new_metric(self) -> Metric:
        return Accuracy()

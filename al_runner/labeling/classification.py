"""al-label's classification task: one class per image of a folder.

The model-facing part is al-run's own `ClassificationTask` over `ImageSplits`, built from the project's
files instead of a labeled dataset: the pool is every pool image (decoded once with `decode_images`, cached
in the project), its label tensor holds the class of each labeled image and -1 for the unlabeled ones, which
no code path reads (training batches come from labeled indices only; samplers see `input_batches`, which
carry no labels). The test split is the held-out labeled part, when the user gave one.
"""

from __future__ import annotations

import hashlib
import logging
from xml.sax.saxutils import quoteattr

import torch
from torch.nn import functional as F

from al_runner.atomic import atomic_torch_save
from al_runner.labeling.formats import LS_CONTROL, LS_IMAGE
from al_runner.labeling.project import ImageEntry, Labels, Project
from al_runner.tasks.classification import ClassificationTask, CropFlipNormalize, ImageSplits
from al_runner.tasks.classification.imagefolder import decode_images

log = logging.getLogger(__name__)
UNLABELED = -1  # pool label of an image nobody labeled yet (never read: see the module docstring)
CACHE_DIR = "cache"


class ClassificationLabeling:
    """What al-label needs to know about classification labels (parse, check, guess, show)."""

    label_formats = "a path,label CSV or a Label Studio JSON export"

    def __init__(self, name: str, augmentation: CropFlipNormalize, image_size: int | None = None, channels: int = 3):
        self.name, self.augmentation = name, augmentation
        self.image_size, self.channels = image_size, int(channels)

    # --- labels -------------------------------------------------------------------------------------------
    def check(self, label, entry: ImageEntry, classes: list[str], stated_size) -> str | None:
        """Why this label cannot be taken for this image (None: it can)."""
        if not isinstance(label, str):
            return f"expected one class name for a classification project, got {type(label).__name__}"
        if label not in classes:
            return f"unknown class '{label}'; known classes: {', '.join(classes)}"
        return None

    def classes_of(self, label: str) -> list[str]:
        return [label]

    def describe(self, label: str) -> str:
        return label

    # --- the model's task -------------------------------------------------------------------------------
    def build_task(self, project: Project, labels: Labels) -> ClassificationTask:
        index = {name: i for i, name in enumerate(project.classes)}
        pool_images = self._decode(project, project.pool, "pool")
        pool_labels = torch.tensor(
            [index[labels.pool[e.path]["label"]] if e.path in labels.pool else UNLABELED for e in project.pool],
            dtype=torch.long,
        )
        if project.holdout:
            test_images = self._decode(project, project.holdout, "holdout")
            test_labels = torch.tensor(
                [index[labels.holdout[e.path]["label"]] for e in project.holdout], dtype=torch.long
            )
        else:  # no held-out part: an empty test split (nothing is evaluated)
            test_images = pool_images[:0]
            test_labels = torch.zeros(0, dtype=torch.long)
        splits = ImageSplits(pool_images, pool_labels, test_images, test_labels, classes=list(project.classes))
        return ClassificationTask(self.name, splits, self.augmentation)

    def _decode(self, project: Project, entries: list[ImageEntry], part: str) -> torch.Tensor:
        """uint8 [N, C, H, W], decoded once and cached in the project (keyed by the images' fingerprints)."""
        key = hashlib.sha256(f"{self.channels}|{self.image_size}|".encode())
        for e in entries:
            key.update(f"{e.path}|{e.sha256}\n".encode())
        cache = project.dir / CACHE_DIR / f"{part}-{key.hexdigest()[:16]}.pt"
        if cache.is_file():
            try:
                return torch.load(cache, weights_only=True)
            except Exception as error:  # a damaged cache is decoded again, never trusted
                log.warning("ignoring unreadable cache %s (%s)", cache, error)
        images = decode_images(
            [project.images_root / e.path for e in entries], self.channels, self.image_size, f"decode {part}"
        )
        cache.parent.mkdir(exist_ok=True)
        atomic_torch_save(cache, images)
        return images

    # --- the model's guess --------------------------------------------------------------------------------
    def guesses(self, task: ClassificationTask, outputs: torch.Tensor, entries: list[ImageEntry]) -> list[dict]:
        probabilities = F.softmax(outputs.float(), dim=1)
        best, classes = probabilities.max(dim=1)
        names = task.data.classes
        return [{"guess": names[c], "guess_score": float(p)} for p, c in zip(best.tolist(), classes.tolist())]

    # --- Label Studio ---------------------------------------------------------------------------------------
    def label_config(self, classes: list[str]) -> str:
        choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
        return (
            f'<View>\n  <Image name="{LS_IMAGE}" value="${LS_IMAGE}"/>\n'
            f'  <Choices name="{LS_CONTROL}" toName="{LS_IMAGE}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n"
        )

    def prediction_result(self, pick: dict, entry: ImageEntry) -> list[dict]:
        """The guess as a Label Studio `choices` result (pre-annotation)."""
        return [
            {
                "id": "guess",
                "type": "choices",
                "from_name": LS_CONTROL,
                "to_name": LS_IMAGE,
                "value": {"choices": [pick["guess"]]},
            }
        ]

    def overlay(self, pick: dict, entry: ImageEntry) -> list:
        """Nothing to draw on a classification thumbnail: the caption carries the guess."""
        return []

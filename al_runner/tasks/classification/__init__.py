"""Image classification on in-memory uint8 tensors (CIFAR-10, ImageFolder trees, mnist5k, synthetic).

Its data code lives here: datasets decoded once into uint8 [N, C, H, W] tensors (`splits`, one loader
per source) and batched on-device augmentation (`augment`); its metric, top-1 accuracy (`metric`).
"""

from al_runner.tasks.classification.augment import CropFlipNormalize
from al_runner.tasks.classification.metric import Accuracy
from al_runner.tasks.classification.splits import ImageSplits
from al_runner.tasks.classification.task import ClassificationTask, softmax_entropy

__all__ = ["Accuracy", "ClassificationTask", "CropFlipNormalize", "ImageSplits", "softmax_entropy"]

"""Image datasets decoded once into uint8 tensors, and batched on-device augmentation."""
from al_runner.data.augment import CropFlipNormalize
from al_runner.data.splits import ImageSplits

__all__ = ["CropFlipNormalize", "ImageSplits"]

"""torchvision's SSD300-VGG16 and SSDlite320-MobileNetV3 (not copies), returning raw head outputs.

torchvision's `SSD.forward` resizes and normalises a list of images (GeneralizedRCNNTransform) and returns
losses in train mode and post-processed boxes in eval mode. The loop needs one forward pass that yields
the same raw outputs in every mode (the task turns them into per-image losses, detections or
uncertainty), so `SSDHeadOutputs` runs the SSD's own backbone, head and default-box generator on a batch
that the task has already resized: forward(images [B, 3, S, S] in [0, 1]) ->
{cls_logits [B, A, C+1], bbox_regression [B, A, 4], anchors [B, A, 4]}.

Normalisation is the one step kept in the model: it uses the mean/std that torchvision's builder sets
for that backbone (VGG: 0-255 minus the mean pixel; MobileNet: [-1, 1]), so a pretrained backbone always
sees what it was trained on whatever task feeds it. The backbone (`backbone`) returns its six source maps
as a dict "0".."5", so taps `backbone[0]` ... `backbone[5]` see them.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection import ssd as tv_ssd
from torchvision.models.detection import ssdlite as tv_ssdlite
from torchvision.models.detection.image_list import ImageList

from al_runner.errors import ConfigError

log = logging.getLogger(__name__)


class SSDHeadOutputs(nn.Module):
    def __init__(self, ssd: tv_ssd.SSD):
        super().__init__()
        self.backbone, self.head, self.anchor_generator = ssd.backbone, ssd.head, ssd.anchor_generator
        self.register_buffer("image_mean", torch.tensor(ssd.transform.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(ssd.transform.image_std).view(1, 3, 1, 1), persistent=False)
        self._anchors: dict[tuple, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            features = list(self.backbone((images - self.image_mean) / self.image_std).values())
            head = self.head(features)
        except torch.OutOfMemoryError as error:
            raise ConfigError(
                f"out of memory in the SSD forward pass at batch size {images.shape[0]} "
                f"(inputs {tuple(images.shape[1:])} on {images.device}): lower schedule.batch_size "
                f"(training) or schedule.eval_batch_size (scoring/evaluation). {str(error).splitlines()[0]}"
            ) from None
        anchors = self.default_boxes(images, features)
        return {"cls_logits": head["cls_logits"], "bbox_regression": head["bbox_regression"],
                "anchors": anchors.expand(images.shape[0], -1, -1)}

    def default_boxes(self, images: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """[A, 4] default boxes in input pixels, always fp32 (never bf16 under autocast), cached per size."""
        grids = tuple(tuple(f.shape[-2:]) for f in features)
        key = (tuple(images.shape[-2:]), grids, images.device)
        if key not in self._anchors:
            shapes = [torch.empty(grid, device=images.device) for grid in grids]  # only shapes and dtype are read
            image_list = ImageList(images[:1], [tuple(images.shape[-2:])])
            self._anchors[key] = self.anchor_generator(image_list, shapes)[0]
        return self._anchors[key]


def ssd300_vgg16(num_classes: int, weights_backbone: str | None = None,
                 trainable_backbone_layers: int | None = None) -> SSDHeadOutputs:
    """torchvision's SSD300 / VGG-16 (paper Sec. 4.2). num_classes includes the background."""
    weights, path = _backbone_weights(weights_backbone, "ssd300_vgg16")
    ssd = tv_ssd.ssd300_vgg16(weights=None, weights_backbone=weights, num_classes=num_classes,
                              trainable_backbone_layers=trainable_backbone_layers)
    return _finish(ssd, path)


def ssdlite320_mobilenet_v3_large(num_classes: int, weights_backbone: str | None = None,
                                  trainable_backbone_layers: int | None = None) -> SSDHeadOutputs:
    """torchvision's SSDlite320 / MobileNetV3-Large: the CPU-sized stand-in (not in the paper)."""
    weights, path = _backbone_weights(weights_backbone, "ssdlite320_mobilenet_v3_large")
    ssd = tv_ssdlite.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=weights, num_classes=num_classes,
                                                   trainable_backbone_layers=trainable_backbone_layers)
    return _finish(ssd, path)


def _backbone_weights(spec: str | None, model: str):
    """None -> random init (logged); an existing file -> (None, path); else a torchvision weights name."""
    if spec is None:
        log.warning("%s: no backbone weights given (model.net.weights_backbone=null): starting from random "
                    "initialisation", model)
        return None, None
    if Path(spec).expanduser().is_file():
        return None, Path(spec).expanduser()
    if spec.endswith((".pt", ".pth")) or "/" in spec:
        raise ConfigError(f"model.net.weights_backbone: file not found: {spec}")
    try:
        weights = torchvision.models.get_weight(spec)
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(f"model.net.weights_backbone='{spec}' is neither a file nor a torchvision weights name "
                          f"(e.g. VGG16_Weights.IMAGENET1K_FEATURES, MobileNet_V3_Large_Weights.IMAGENET1K_V1)") from None
    log.info("%s: backbone weights %s (torchvision downloads them once into its cache)", model, spec)
    return weights, None


def _finish(ssd: tv_ssd.SSD, path: Path | None) -> SSDHeadOutputs:
    if path is not None:
        try:
            ssd.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError, KeyError) as error:
            raise ConfigError(f"model.net.weights_backbone={path}: not a state dict of this SSD backbone "
                              f"(model.backbone.state_dict()): {str(error).splitlines()[0]}") from None
        log.info("backbone weights loaded from %s", path)
    return SSDHeadOutputs(ssd)

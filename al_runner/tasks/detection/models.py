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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision import models as tv_models
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
        return {
            "cls_logits": head["cls_logits"],
            "bbox_regression": head["bbox_regression"],
            "anchors": anchors.expand(images.shape[0], -1, -1),
        }

    def default_boxes(self, images: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """[A, 4] default boxes in input pixels, always fp32 (never bf16 under autocast), cached per size."""
        grids = tuple(tuple(f.shape[-2:]) for f in features)
        key = (tuple(images.shape[-2:]), grids, images.device)
        if key not in self._anchors:
            shapes = [torch.empty(grid, device=images.device) for grid in grids]  # only shapes and dtype are read
            image_list = ImageList(images[:1], [tuple(images.shape[-2:])])
            self._anchors[key] = self.anchor_generator(image_list, shapes)[0]
        return self._anchors[key]


# torchvision's default for a pretrained VGG backbone in SSD (`ssd300_vgg16`: 4 of its 5 conv stages train)
VGG_DEFAULT_TRAINABLE_STAGES = 4


def weights_file_name(weights: torchvision.models.WeightsEnum) -> str:
    """The file name torchvision saves these weights under (the last part of their URL)."""
    return Path(urlparse(weights.url).path).name


# the file torchvision downloads for SSD's ImageNet VGG (VGG16_Weights.IMAGENET1K_FEATURES)
VGG16_FILE = weights_file_name(tv_models.VGG16_Weights.IMAGENET1K_FEATURES)


@dataclass(frozen=True)
class BackboneSource:
    model: str
    weights: torchvision.models.WeightsEnum | None = None  # torchvision downloads these (once, into its cache)
    path: Path | None = None  # a local state-dict file


def ssd300_vgg16(
    num_classes: int, weights_backbone: str | None = None, trainable_backbone_layers: int | None = None
) -> SSDHeadOutputs:
    """torchvision's SSD300 / VGG-16 (paper Sec. 4.2). num_classes includes the background.

    weights_backbone: None (random init, logged), a torchvision weights name (SSD's ImageNet VGG is
    `VGG16_Weights.IMAGENET1K_FEATURES`), or a local file: torchvision's VGG-16 state dict (the file that
    name downloads, `features.*` [+ `classifier.*`, unused]) or `model.backbone.state_dict()` of this SSD.
    A file gives the same network as the name: same weights, same frozen first stage.
    """
    source = _backbone_source(weights_backbone, "ssd300_vgg16")
    if source.path is None:
        return SSDHeadOutputs(
            _torchvision_build(
                tv_ssd.ssd300_vgg16,
                source,
                num_classes,
                trainable_backbone_layers,
                f", or give model.net.weights_backbone=<path to {VGG16_FILE}>",
            )
        )
    ssd = tv_ssd.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)
    state = _read_state_dict(source.path)
    if _is_ssd_backbone_state(state):
        _load_backbone(ssd.backbone, state, source.path)
    else:  # VGG's convs only: the L2-norm scale, FC6/FC7 and the extra layers keep torchvision's init
        _load_backbone(
            ssd.backbone, vgg16_state_for_ssd_backbone(state, ssd.backbone, source.path), source.path, strict=False
        )
    freeze_vgg_stages(
        ssd.backbone, VGG_DEFAULT_TRAINABLE_STAGES if trainable_backbone_layers is None else trainable_backbone_layers
    )
    return SSDHeadOutputs(ssd)


def ssdlite320_mobilenet_v3_large(
    num_classes: int, weights_backbone: str | None = None, trainable_backbone_layers: int | None = None
) -> SSDHeadOutputs:
    """torchvision's SSDlite320 / MobileNetV3-Large: the CPU-sized stand-in (not in the paper).

    A local file must be `model.backbone.state_dict()` of this model built without weights (torchvision
    builds a reduced-tail MobileNet then, which ImageNet files do not fit)."""
    source = _backbone_source(weights_backbone, "ssdlite320_mobilenet_v3_large")
    ssd = _torchvision_build(tv_ssdlite.ssdlite320_mobilenet_v3_large, source, num_classes, trainable_backbone_layers)
    if source.path is not None:
        _load_backbone(ssd.backbone, _read_state_dict(source.path), source.path)
    return SSDHeadOutputs(ssd)


def _backbone_source(spec: str | None, model: str) -> BackboneSource:
    """None -> random init (logged); an existing file -> its path; else a torchvision weights name."""
    if spec is None:
        log.warning(
            "%s: no backbone weights given (model.net.weights_backbone=null): starting from random initialisation",
            model,
        )
        return BackboneSource(model)
    if Path(spec).expanduser().is_file():
        return BackboneSource(model, path=Path(spec).expanduser())
    if spec.endswith((".pt", ".pth")) or "/" in spec:
        raise ConfigError(f"model.net.weights_backbone: file not found: {spec}")
    try:
        weights = torchvision.models.get_weight(spec)
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(
            f"model.net.weights_backbone='{spec}' is neither a file nor a torchvision weights name "
            f"(e.g. VGG16_Weights.IMAGENET1K_FEATURES, MobileNet_V3_Large_Weights.IMAGENET1K_V1)"
        ) from None
    log.info("%s: backbone weights %s (from torch's cache, downloaded there once)", model, spec)
    return BackboneSource(model, weights=weights)


def hub_cache_file(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torchvision looks for (and downloads) these weights: torch.hub's `load_state_dict_from_url` rule."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_file_name(weights)


def _torchvision_build(
    builder, source: BackboneSource, num_classes: int, trainable_backbone_layers: int | None, file_hint: str = ""
):
    """torchvision's builder; weights it cannot get (offline, or a broken cached file) stop the run in one line
    (at model build, before any training), saying where to put the file."""
    try:
        return builder(
            weights=None,
            weights_backbone=source.weights,
            num_classes=num_classes,
            trainable_backbone_layers=trainable_backbone_layers,
        )
    except (OSError, RuntimeError) as error:  # URLError/HTTPError/socket errors are OSErrors
        if source.weights is None:
            raise
        cached = hub_cache_file(source.weights)
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"{source.model}: cannot load the backbone weights {source.weights} from torch's cache {cached} "
            f"nor download them from {source.weights.url} ({reason}); offline, put that file there "
            f"(or point $TORCH_HOME at a folder holding hub/checkpoints/{cached.name}){file_hint}"
        ) from None


def _read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError) as error:
        raise ConfigError(
            f"model.net.weights_backbone={path}: not a readable state dict ({str(error).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"model.net.weights_backbone={path}: holds a {type(state).__name__}, not a state dict")
    return state


def _is_ssd_backbone_state(state: dict) -> bool:
    """`model.backbone.state_dict()` of the SSD (it has the SSD-only L2-norm scale and extra layers)."""
    return "scale_weight" in state or any(key.startswith("extra.") for key in state)


def vgg16_state_for_ssd_backbone(state: dict, backbone: nn.Module, path: Path) -> dict:
    """torchvision's VGG-16 state dict -> the keys of torchvision's SSD VGG backbone.

    `SSDFeatureExtractorVGG` keeps VGG's `features[:k]` (up to conv4_3) as its `features` and puts
    `features[k:30]` (pool4 and the conv5 block) at the front of `extra[0]`, k = len(backbone.features);
    the VGG classifier is not used. Every VGG conv of the backbone must be in the file.
    """
    k = len(backbone.features)
    mapped = {}
    for key, value in state.items():
        group, _, rest = key.partition(".")
        index, _, name = rest.partition(".")
        if group != "features" or not index.isdigit():
            continue  # classifier.*: SSD replaces it with FC6/FC7 convolutions
        i = int(index)
        mapped[f"features.{i}.{name}" if i < k else f"extra.0.{i - k}.{name}"] = value
    vgg_part = [f"extra.0.{j}." for j in range(len(backbone.extra[0]) - 1)]  # extra[0] = conv5 block + FC6/FC7
    expected = {
        key for key in backbone.state_dict() if key.startswith("features.") or any(key.startswith(p) for p in vgg_part)
    }
    missing = sorted(expected - set(mapped))
    if missing or set(mapped) - expected:
        problem = (
            f"{len(missing)} VGG conv keys missing (e.g. {missing[0]})"
            if missing
            else f"unexpected key {sorted(set(mapped) - expected)[0]}"
        )
        raise ConfigError(
            f"model.net.weights_backbone={path}: neither a torchvision VGG-16 state dict "
            f"(features.<i>.weight/bias, as {VGG16_FILE}) nor this SSD's model.backbone.state_dict(): "
            f"{problem}"
        )
    return mapped


def freeze_vgg_stages(backbone: nn.Module, trainable_stages: int) -> None:
    """torchvision's rule for a pretrained VGG (`_vgg_extractor`): only the last `trainable_stages` of the five
    conv stages learn. Applied here because torchvision applies it only to weights it loads itself."""
    layers = list(backbone.features) + list(backbone.extra[0])[:-1]  # VGG-16 features[0:30] (SSD drops pool5)
    stage_starts = [0] + [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    if not 0 <= trainable_stages <= len(stage_starts):
        raise ConfigError(
            f"model.net.trainable_backbone_layers={trainable_stages} not supported, choose from 0..{len(stage_starts)}"
        )
    freeze_before = len(layers) if trainable_stages == 0 else stage_starts[len(stage_starts) - trainable_stages]
    for layer in layers[:freeze_before]:
        layer.requires_grad_(False)


def _load_backbone(backbone: nn.Module, state: dict, path: Path, strict: bool = True) -> None:
    try:
        backbone.load_state_dict(state, strict=strict)
    except (RuntimeError, KeyError) as error:
        raise ConfigError(
            f"model.net.weights_backbone={path}: not a state dict of this SSD backbone "
            f"(model.backbone.state_dict()): {str(error).splitlines()[0]}"
        ) from None
    log.info("backbone weights loaded from %s", path)

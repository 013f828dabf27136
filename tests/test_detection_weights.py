"""SSD300's ImageNet VGG-16 start: torchvision's weights name, a local file in torchvision's format, and the
one-line refusal when the weights are neither cached nor downloadable. No test downloads anything."""

from types import SimpleNamespace
from urllib.error import URLError

import pytest
import torch
from torchvision.models import vgg as tv_vgg
from torchvision.models.detection import ssd as tv_ssd

from al_runner.errors import ConfigError
from al_runner.runner import run_experiment
from al_runner.tasks.detection import ssd300_vgg16
from al_runner.tasks.detection.generate import generate_vocdevkit
from al_runner.tasks.detection.models import VGG16_FILE, freeze_vgg_stages, vgg16_state_for_ssd_backbone
from tests.conftest import compose_config

IMAGENET_VGG = "VGG16_Weights.IMAGENET1K_FEATURES"


def vgg16_features():
    return tv_vgg.make_layers(tv_vgg.cfgs["D"])  # torchvision's VGG-16 `features`, without the 100M-weight classifier


def requires_grad(module):
    return {name: p.requires_grad for name, p in module.named_parameters()}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: torch.hub's download raises as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints" / VGG16_FILE


def test_fig6_voc_offline_stops_before_training_with_one_line_naming_the_weights(offline, tmp_path):
    tree = generate_vocdevkit(tmp_path / "voc", images=12, seed=0)
    cfg = compose_config(
        [
            "experiment=fig6_voc",
            "task=voc_synth",
            f"task.root={tree}",
            "schedule.initial_size=4",
            "schedule.query_size=2",
            "schedule.cycles=2",
            "schedule.epochs=1",
            "progress=false",
            "runtime.threads=1",
        ]
    )
    assert cfg.model.net.weights_backbone == IMAGENET_VGG
    with pytest.raises(ConfigError) as error:
        run_experiment(cfg, tmp_path / "run")
    message = str(error.value)
    assert "\n" not in message and IMAGENET_VGG in message and str(offline) in message
    assert f"model.net.weights_backbone=<path to {VGG16_FILE}>" in message
    assert not (tmp_path / "run" / "cycles.csv").exists()


def test_a_torchvision_vgg16_file_gives_the_ssd_its_weights_and_torchvisions_frozen_stage(tmp_path):
    torch.manual_seed(0)
    features = vgg16_features()
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    state["classifier.0.weight"] = torch.full((2, 2), float("nan"))  # torchvision's file: classifier unusable, unused
    torch.save(state, tmp_path / VGG16_FILE)
    torch.manual_seed(1)
    model = ssd300_vgg16(num_classes=3, weights_backbone=str(tmp_path / VGG16_FILE))
    backbone = model.backbone
    assert torch.equal(backbone.features[0].weight, features[0].weight)  # conv1_1
    assert torch.equal(backbone.features[21].weight, features[21].weight)  # conv4_3
    assert torch.equal(backbone.extra[0][1].weight, features[24].weight)  # conv5_1
    assert torch.equal(backbone.extra[0][5].bias, features[28].bias)  # conv5_3
    # trainable_backbone_layers=None -> torchvision's default with weights: conv1 frozen, the rest trains
    frozen = {name for name, trainable in requires_grad(backbone).items() if not trainable}
    assert frozen == {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"}
    # the SSD's own backbone state dict (the older file format) still loads, to the same network
    torch.save(backbone.state_dict(), tmp_path / "backbone.pt")
    again = ssd300_vgg16(num_classes=3, weights_backbone=str(tmp_path / "backbone.pt")).backbone
    assert all(torch.equal(a, b) for a, b in zip(backbone.state_dict().values(), again.state_dict().values()))
    assert requires_grad(again) == requires_grad(backbone)
    # half a VGG is refused by name
    half = {key: value for key, value in state.items() if key < "features.2"}
    with pytest.raises(ConfigError, match="VGG conv keys missing"):
        vgg16_state_for_ssd_backbone(half, backbone, tmp_path / "half.pth")


@pytest.mark.parametrize("trainable", [0, 1, 3, 4, 5])
def test_frozen_stages_match_torchvisions_vgg_extractor(trainable):
    reference = tv_ssd._vgg_extractor(SimpleNamespace(features=vgg16_features()), False, trainable)
    ours = tv_ssd.SSDFeatureExtractorVGG(vgg16_features(), False)
    freeze_vgg_stages(ours, trainable)
    assert requires_grad(ours) == requires_grad(reference)
    assert any(requires_grad(ours).values()) and (trainable == 5) == all(requires_grad(ours).values())


def test_trainable_stages_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="not supported, choose from 0..5"):
        freeze_vgg_stages(tv_ssd.SSDFeatureExtractorVGG(vgg16_features(), False), 6)

import pytest
import torch
from torch import nn

from al_runner.errors import ConfigError
from al_runner.learner import Learner
from al_runner.learning_loss import LearningLoss, LossPredictionModule, MarginRankingLoss
from al_runner.models import FeatureTaps, SmallCNN, resnet18_cifar
from al_runner.runtime import Runtime


def test_resnet18_cifar_stem_and_stage_shapes():
    net = resnet18_cifar(in_channels=3, num_classes=10, width=8)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    taps = FeatureTaps(net, ["layer1", "layer2", "layer3", "layer4"])
    out = net(torch.randn(2, 3, 32, 32))
    shapes = [tuple(f.shape) for f in taps.features(taps.taps)]
    assert out.shape == (2, 10)
    assert shapes == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]


def test_full_width_resnet18_has_512d_embedding():
    net = resnet18_cifar(width=64)
    assert net.fc.in_features == 512


def test_loss_module_accepts_any_spatial_size_channels_and_number_of_taps():
    module = LossPredictionModule(num_taps=3, hidden=128)
    feats = [torch.randn(4, 7, 13, 5), torch.randn(4, 256, 64, 64), torch.randn(4, 33)]
    assert module(feats).shape == (4,)
    assert [b[0].in_features for b in module.branches] == [7, 256, 33]
    assert module.head.in_features == 3 * 128


def test_unknown_tap_name_lists_close_names():
    with pytest.raises(ConfigError) as e:
        FeatureTaps(resnet18_cifar(width=8), ["layer5", "layer1"])
    msg = str(e.value)
    assert "'layer5'" in msg and "layer4" in msg and "layer1" not in msg.split("(close")[0].replace("'layer5'", "")


def test_taps_work_on_nested_module_names_of_any_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 6, 3)))
    taps = FeatureTaps(model, ["0", "1.1"])
    model(torch.randn(2, 1, 9, 9))
    assert [tuple(f.shape) for f in taps.features(["0", "1.1"])] == [(2, 4, 7, 7), (2, 6, 5, 5)]


def make_learner():
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=3, width=4)
    method = LearningLoss(MarginRankingLoss(1.0), weight=1.0, detach_epoch=5, hidden=8)
    learner = Learner(model, ["block1", "block2", "block3"], "block3", Runtime(torch.device("cpu")), method)
    learner.materialize(torch.randn(2, 1, 12, 12))
    return learner


def test_detached_features_stop_the_module_gradient_into_the_target():
    learner = make_learner()
    x = torch.randn(6, 1, 12, 12)

    def target_grads(with_module: bool, detach: bool):
        learner.model.zero_grad()
        learner.loss_module.zero_grad()
        out = learner.forward(x)
        per_sample = out.logsumexp(1)
        loss = per_sample.mean()
        if with_module:  # epoch 5 = detach_epoch: detached; epoch 4: attached
            features = learner.taps.features(learner.tap_names)
            loss = loss + 100.0 * learner.learning_loss.loss(
                learner.loss_module, features, per_sample, 5 if detach else 4
            )
        loss.backward()
        return [p.grad.clone() for p in learner.model.parameters()]

    plain = target_grads(False, False)
    detached = target_grads(True, True)
    attached = target_grads(True, False)
    assert all(torch.allclose(a, b) for a, b in zip(plain, detached))
    assert not all(torch.allclose(a, b) for a, b in zip(plain, attached))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.loss_module.parameters())


def test_embedding_is_gap_of_the_named_layer():
    learner = make_learner()
    x = torch.randn(3, 1, 12, 12)
    learner.eval()
    learner.forward(x)
    expected = learner.model.block3(learner.model.block2(learner.model.block1(x))).mean(dim=(2, 3))
    assert torch.allclose(learner.embedding(), expected, atol=1e-6)

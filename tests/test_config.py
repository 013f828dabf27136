from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate

from al_runner.build import build_method, lr_milestone_epochs
from al_runner.learning_loss import LossPredictionModule
from al_runner.samplers import Sampler
from tests.conftest import CONF_DIR, compose_config

GROUPS = ["task", "model", "sampler", "schedule", "experiment"]


def options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_groups_have_the_required_options():
    assert {"cifar10", "imagefolder", "mnist5k"} <= set(options("task"))
    assert {"resnet18_cifar", "small_cnn"} <= set(options("model"))
    assert set(options("sampler")) == {
        "random",
        "entropy",
        "coreset",
        "learning_loss",
        "learning_loss_mse",
        "random_with_module",
        "margin",
        "least_confidence",
        "bald",
        "badge",
        "hybrid",
        "entropy_with_module",
        "oracle_true_loss",
    }
    assert {"paper_cifar10", "demo", "smoke"} <= set(options("schedule"))
    assert {"fig4_cifar10", "demo"} <= set(options("experiment"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_resolves(group):
    for option in options(group):
        cfg = compose_config(
            [f"{group}={option}", "task.root=/data/x"]
            if group == "task" and option == "imagefolder"
            else [f"{group}={option}"],
            return_hydra_config=False,
        )
        from omegaconf import OmegaConf

        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        assert resolved["task"]["name"] and resolved["model"]["taps"] and resolved["sampler"]["name"]


@pytest.mark.parametrize("sampler", options("sampler"))
def test_every_sampler_instantiates(sampler):
    cfg = compose_config([f"sampler={sampler}"])
    assert isinstance(instantiate(cfg.sampler.strategy), Sampler)
    training = build_method(cfg)
    # baselines: plain target model
    assert (training is None) == (
        sampler in {"random", "entropy", "coreset", "margin", "least_confidence", "bald", "badge"}
    )


# What each model family gets from its task (`Task.model_kwargs`), a small input, and shrinking overrides.
MODEL_FAMILIES = {
    "resnet18_cifar": ({"in_channels": 3, "num_classes": 10}, (2, 3, 32, 32), ["model.net.width=8"]),
    "small_cnn": ({"in_channels": 3, "num_classes": 10}, (2, 3, 32, 32), ["model.net.width=8"]),
    "hourglass": ({"num_joints": 16}, (2, 3, 64, 64), ["model.net.features=16", "model.net.depth=2"]),
    "hourglass_small": ({"num_joints": 16}, (2, 3, 64, 64), ["model.net.features=16", "model.net.depth=2"]),
    "ssd300_vgg16": ({"num_classes": 5}, (2, 3, 300, 300), []),
    "ssdlite320_mobilenet_v3": ({"num_classes": 5}, (2, 3, 128, 128), []),
}


def test_every_model_option_has_a_build_case():
    assert set(options("model")) == set(MODEL_FAMILIES)


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds_and_exposes_its_taps(model):
    import torch

    from al_runner.models import FeatureTaps

    kwargs, shape, shrink = MODEL_FAMILIES[model]
    cfg = compose_config([f"model={model}", *shrink])
    net = instantiate(cfg.model.net)(**kwargs).eval()
    taps = FeatureTaps(net, list(cfg.model.taps) + [cfg.model.embedding.layer])
    with torch.no_grad():
        net(torch.randn(*shape))
        module = LossPredictionModule(len(cfg.model.taps), cfg.schedule.learning_loss.hidden)
        assert module(taps.features(list(cfg.model.taps))).shape == (2,)
        assert instantiate(cfg.model.embedding.reduce)(taps.features([cfg.model.embedding.layer])[0]).dim() == 2


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(MissingConfigException) as e:
        compose_config(["sampler=no_such_sampler"])
    assert "coreset" in str(e.value) and "learning_loss" in str(e.value)


def test_fig4_cifar10_preset_holds_the_papers_numbers():
    cfg = compose_config(["experiment=fig4_cifar10"], return_hydra_config=True)
    s = cfg.schedule
    assert cfg.task.name == "cifar10" and cfg.model.name == "resnet18_cifar"
    assert cfg.model.net.width == 64 and list(cfg.model.taps) == ["layer1", "layer2", "layer3", "layer4"]
    ll = s.learning_loss
    assert ll.hidden == 128
    assert (s.cycles, s.initial_size, s.query_size, s.subset_size) == (10, 1000, 1000, 10000)
    assert (s.epochs, s.batch_size) == (200, 128)
    assert build_method(compose_config(["experiment=fig4_cifar10"])).detach_epoch == 120
    assert (s.optimizer.lr, s.optimizer.momentum, s.optimizer.weight_decay) == (0.1, 0.9, 5e-4)
    assert lr_milestone_epochs(s) == [160] and s.lr_scheduler.gamma == 0.1
    assert (ll.weight, ll.weight_mse, ll.margin) == (1.0, 0.1, 1.0)
    assert s.reinit_each_cycle is False
    aug = cfg.task.build.augmentation
    assert aug.padding == 4 and aug.hflip is True
    params = cfg.hydra.sweeper.params
    assert params.seed == "0,1,2,3,4"
    assert params.sampler.split(",") == ["random", "entropy", "coreset", "learning_loss_mse", "learning_loss"]


def test_paper_numbers_carry_a_section_comment():
    text = (Path(CONF_DIR) / "schedule" / "paper_cifar10.yaml").read_text()
    for key in (
        "cycles",
        "initial_size",
        "query_size",
        "subset_size",
        "epochs",
        "batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "gamma",
        "lr_milestones",
        "hidden",
        "margin",
        "weight",
        "weight_mse",
        "detach_at",
    ):
        line = next(l for l in text.splitlines() if l.strip().startswith(key + ":"))
        assert "Sec." in line, line


def test_demo_preset_sweeps_three_seeds_and_five_samplers():
    cfg = compose_config(["experiment=demo"], return_hydra_config=True)
    assert cfg.task.name == "mnist5k" and cfg.schedule.name == "demo"
    assert len(cfg.hydra.sweeper.params.seed.split(",")) == 3
    assert len(cfg.hydra.sweeper.params.sampler.split(",")) == 5
    s = cfg.schedule
    assert s.initial_size + s.query_size * (s.cycles - 1) <= 4000


def test_cifar10_cpu_preset_keeps_the_papers_structure_and_names_its_reductions():
    # only the protocol's scale changes; every changed number says it is a reduction and why
    cpu = compose_config(["experiment=cifar10_cpu"], return_hydra_config=True)
    paper = compose_config(["experiment=fig4_cifar10"], return_hydra_config=True)
    s, p = cpu.schedule, paper.schedule
    for key in ("initial_size", "subset_size", "epochs", "batch_size", "lr_milestones", "reinit_each_cycle"):
        assert s[key] == p[key], key
    assert s.optimizer == p.optimizer and s.lr_scheduler == p.lr_scheduler and s.learning_loss == p.learning_loss
    assert build_method(compose_config(["experiment=cifar10_cpu"])).detach_epoch == 120
    assert cpu.task.build.augmentation.padding == 4 and list(cpu.model.taps) == list(paper.model.taps)
    params = cpu.hydra.sweeper.params
    assert params.seed == "0,1,2,3,4" and params.sampler == paper.hydra.sweeper.params.sampler
    text = (Path(CONF_DIR) / "schedule" / "cifar10_cpu.yaml").read_text()
    for key in ("cycles", "query_size"):
        assert s[key] != p[key]
        line = next(l for l in text.splitlines() if l.strip().startswith(key + ":"))
        assert "reduction" in line and "Sec." in line, line
    width = next(
        l
        for l in (Path(CONF_DIR) / "experiment" / "cifar10_cpu.yaml").read_text().splitlines()
        if l.strip().startswith("width:")
    )
    assert "reduction" in width and "pilot" in width

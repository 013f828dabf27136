"""The sampler family inside real (tiny) runs: the declared needs, build-time refusals, no label leaks (labels
and pool indices), the oracle's one door to labels, and independent seeds for the initial set and the weights."""

import pytest
import torch
from torch.nn import functional as F

import al_runner.loop as loop_mod
from al_runner.errors import ConfigError
from al_runner.identity import config_hash
from al_runner.loop import score_inputs, score_with_labels, select
from al_runner.runner import ActiveLearningRun
from al_runner.samplers.needs import NEEDS
from al_runner.tasks.classification.task import ClassificationTask

# every sampler that must never read a label of an unlabeled point
METHODS = [
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
]


def trained_run(smoke_cfg, tmp_path, sampler, *overrides):
    run = ActiveLearningRun(smoke_cfg(f"sampler={sampler}", "schedule.cycles=1", *overrides), tmp_path)
    run.run()
    return run


def pick(run, generator_seed=5, subset=40, new_index=None):
    """Select 10 of a random subset of 40; with `new_index` (see `move_pool_points`), the same points under their
    new pool indices, in the same order."""
    unlabeled, labeled = run.pool.unlabeled_indices, run.pool.labeled_indices
    if new_index is not None:
        unlabeled, labeled = new_index[unlabeled], new_index[labeled]
    return select(
        run.learner,
        run.task,
        run.sampler,
        unlabeled,
        labeled,
        10,
        subset,
        64,
        torch.Generator().manual_seed(generator_seed),
    )


def shuffle_unlabeled_labels(run):
    labels, unlabeled = run.task.data.train_labels, run.pool.unlabeled_indices
    perm = unlabeled[torch.randperm(unlabeled.numel(), generator=torch.Generator().manual_seed(0))]
    labels[unlabeled] = (labels[perm] + 1) % 4


def move_pool_points(run):
    """Give every pool point another pool index, its image and label moving with it; returns new_index[old]."""
    data = run.task.data
    new_index = torch.randperm(run.task.pool_size, generator=torch.Generator().manual_seed(1))
    for values in (data.train_images, data.train_labels):
        moved = values.clone()
        moved[new_index.to(values.device)] = values
        values.copy_(moved)
    return new_index


def assert_same_positions(run, picked):
    """Pool indices can encode labels (an ImageFolder pool is ordered by class): moving every point to another
    pool index must change no pick, only the pool index it is reported under."""
    picks, scores = picked
    new_index = move_pool_points(run)
    moved_picks, moved_scores = pick(run, new_index=new_index)
    assert torch.equal(moved_picks, new_index[picks]) and torch.equal(moved_scores, scores)


@pytest.mark.parametrize("sampler", METHODS)
def test_no_sampler_reads_labels_of_unlabeled_points(smoke_cfg, tmp_path, sampler):
    """Label permutation: shuffling the labels of the unlabeled points, or permuting the pool indices of the same
    inputs, changes no position picked."""
    run = trained_run(smoke_cfg, tmp_path, sampler)
    before = pick(run)
    shuffle_unlabeled_labels(run)
    after = pick(run)
    assert torch.equal(before[0], after[0]) and torch.allclose(before[1], after[1])
    assert_same_positions(run, after)


def test_the_oracle_reads_labels_only_through_the_labeled_path(smoke_cfg, tmp_path):
    run = trained_run(smoke_cfg, tmp_path, "oracle_true_loss")
    doors = []
    labeled_batches = run.task.labeled_batches

    def recording(indices, *args, **kwargs):
        doors.append(indices.clone())
        return labeled_batches(indices, *args, **kwargs)

    run.task.labeled_batches = recording
    picked, _ = pick(run)
    assert len(doors) == 1 and set(picked.tolist()) <= set(doors[0].tolist())  # the candidates, explicitly
    shuffle_unlabeled_labels(run)
    relabeled = pick(run)
    assert not torch.equal(relabeled[0], picked)  # it does read them: an oracle, by design
    assert_same_positions(run, relabeled)  # but not pool indices: the labels moved with their points


def test_score_with_labels_returns_the_real_loss_in_candidate_order(smoke_cfg, tmp_path):
    run = trained_run(smoke_cfg, tmp_path, "oracle_true_loss")
    candidates = run.pool.unlabeled_indices[torch.tensor([7, 3, 30, 0, 12])]
    losses = score_with_labels(run.learner, run.task, candidates, batch_size=2)["true_loss"]
    run.learner.eval()
    with torch.no_grad():
        inputs = run.task.augmentation.eval(run.task.data.train_images[candidates])
        expected = F.cross_entropy(
            run.learner.forward(inputs), run.task.data.train_labels[candidates], reduction="none"
        )
    assert torch.allclose(losses, expected, atol=1e-5)


def test_gradient_embedding_is_the_cross_entropy_gradient_of_the_last_layer(smoke_cfg, tmp_path):
    run = trained_run(smoke_cfg, tmp_path, "badge")
    idx = run.pool.unlabeled_indices[:6]
    grads = score_inputs(run.learner, run.task, idx, 4, frozenset({"gradient_embedding"}), {"last_layer": "fc"})
    dense = grads["gradient_embedding"].dense()
    model = run.learner.model
    inputs = run.task.augmentation.eval(run.task.data.train_images[idx])
    for i in range(len(idx)):  # autograd, one point at a time, at the model's own predicted label
        model.zero_grad()
        logits = model(inputs[i : i + 1])
        F.cross_entropy(logits, logits.argmax(1)).backward()
        assert torch.allclose(dense[i], model.fc.weight.grad.flatten(), atol=1e-5)


def test_mc_probabilities_are_seeded_and_reduce_to_the_probabilities_without_dropout(smoke_cfg, tmp_path):
    run = trained_run(smoke_cfg, tmp_path, "bald")
    idx = run.pool.unlabeled_indices[:8]
    options = {"last_layer": "fc", "mc_passes": 5, "mc_dropout": 0.5}

    def passes(seed, **change):
        got = score_inputs(
            run.learner,
            run.task,
            idx,
            3,
            frozenset({"mc_probabilities", "probabilities"}),
            {**options, **change},
            torch.Generator().manual_seed(seed),
        )
        return got["mc_probabilities"], got["probabilities"]

    mc, probabilities = passes(0)
    assert mc.shape == (8, 4, 5) and torch.allclose(mc.sum(1), torch.ones(8, 5))
    assert torch.equal(mc, passes(0)[0]) and not torch.equal(mc, passes(1)[0])
    assert not torch.allclose(mc[..., 0], mc[..., 1])  # the passes differ
    kept, _ = passes(0, mc_dropout=1e-9)  # dropout that drops nothing: every pass is the deterministic model
    assert torch.allclose(kept, probabilities[..., None].expand_as(kept), atol=1e-6)


def refuse_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    # every training epoch runs through loop.train_one_epoch, whichever module calls train_cycle
    monkeypatch.setattr(loop_mod, "train_one_epoch", no_training)


@pytest.mark.parametrize(
    "sampler, overrides, message",
    [
        ("margin", [], "gives no class probabilities"),
        ("bald", [], "gives no class probabilities"),
        ("badge", [], "gives no class probabilities"),
    ],
)
def test_a_need_the_task_cannot_give_is_refused_before_training(
    smoke_cfg, tmp_path, monkeypatch, sampler, overrides, message
):
    refuse_training(monkeypatch)
    monkeypatch.delattr(ClassificationTask, "class_probabilities")  # as a detection or pose task
    with pytest.raises(ConfigError, match=message) as error:
        ActiveLearningRun(smoke_cfg(f"sampler={sampler}", *overrides), tmp_path).run()
    assert "\n" not in str(error.value) and f"sampler {sampler} cannot run on task synthetic" in str(error.value)


@pytest.mark.parametrize(
    "sampler, overrides, message",
    [
        ("bald", ["sampler.strategy.last_layer=block3"], "has no linear layer 'block3'"),
        ("badge", ["sampler.strategy.last_layer=nope"], "has no linear layer 'nope'"),
        ("hybrid", ["sampler.loss_objective=null"], "predicted_loss: the loss-prediction module is not trained"),
        ("learning_loss", ["sampler.loss_objective=null"], "set sampler.loss_objective"),
        ("oracle_true_loss", ["sampler.name=true_loss"], "must start with oracle_"),
    ],
)
def test_bad_sampler_settings_are_refused_before_training(
    smoke_cfg, tmp_path, monkeypatch, sampler, overrides, message
):
    refuse_training(monkeypatch)
    with pytest.raises(ConfigError, match=message) as error:
        ActiveLearningRun(smoke_cfg(f"sampler={sampler}", *overrides), tmp_path).run()
    assert "\n" not in str(error.value)
    assert not (tmp_path / "cycles.csv").exists()


def test_every_sampler_need_is_declared():
    from hydra.utils import instantiate

    from tests.conftest import compose_config
    from tests.test_config import options

    for name in options("sampler"):
        sampler = instantiate(compose_config([f"sampler={name}"]).sampler.strategy)
        assert set(sampler.needs) <= set(NEEDS), name
        assert sampler.reads_labels == name.startswith("oracle_"), name


# --- independent seeds --------------------------------------------------------------------------------
def initial_set_and_weights(smoke_cfg, tmp_path, *overrides):
    run = ActiveLearningRun(smoke_cfg(*overrides), tmp_path)
    initial = sorted(run.pool.label_initial(20, run.init_generator).tolist())
    return initial, run.learner.model.block1[0].weight.detach().clone(), run


def test_seed_data_and_seed_model_each_move_one_source_only(smoke_cfg, tmp_path):
    set0, weights0, _ = initial_set_and_weights(smoke_cfg, tmp_path / "a", "seed=0")
    set1, weights1, _ = initial_set_and_weights(smoke_cfg, tmp_path / "b", "seed=1")
    assert set0 != set1 and not torch.equal(weights0, weights1)
    mixed_set, mixed_weights, run = initial_set_and_weights(smoke_cfg, tmp_path / "c", "seed=1", "seed_data=0")
    assert mixed_set == set0 and torch.equal(
        mixed_weights, weights1
    )  # the initial set of seed 0, the weights of seed 1
    mixed_set, mixed_weights, _ = initial_set_and_weights(smoke_cfg, tmp_path / "d", "seed=0", "seed_model=1")
    assert mixed_set == set0 and torch.equal(mixed_weights, weights1)
    # training order and selection follow `seed`: the seed=1 seed_data=0 run's streams are seed 1's
    assert torch.equal(
        run.train_generator.get_state(),
        initial_set_and_weights(smoke_cfg, tmp_path / "e", "seed=1")[2].train_generator.get_state(),
    )


def test_unset_independent_seeds_leave_the_run_identity_unchanged(smoke_cfg, tmp_path):
    default = ActiveLearningRun(smoke_cfg(), tmp_path / "a").comparable_config()
    assert "seed_data" not in default and "seed_model" not in default
    # the hash a config had before the keys existed: drop them from the composed config and compare
    from omegaconf import OmegaConf

    cfg = smoke_cfg()
    container = OmegaConf.to_container(cfg)
    del container["seed_data"], container["seed_model"]
    legacy = ActiveLearningRun(OmegaConf.create(container), tmp_path / "b").comparable_config()
    assert config_hash(default) == config_hash(legacy)
    pinned = ActiveLearningRun(smoke_cfg("seed_data=0"), tmp_path / "c").comparable_config()
    assert pinned["seed_data"] == 0 and config_hash(pinned) != config_hash(default)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU path is tested above)")
@pytest.mark.parametrize(
    "sampler", ["margin", "least_confidence", "bald", "badge", "hybrid", "entropy_with_module", "oracle_true_loss"]
)
def test_every_new_sampler_selects_on_cuda(smoke_cfg, tmp_path, sampler):
    run = trained_run(smoke_cfg, tmp_path, sampler, "device=cuda")
    picked, scores = pick(run)
    assert picked.device.type == "cpu" and picked.unique().numel() == 10 and torch.isfinite(scores).all()
    assert set(picked.tolist()) <= set(run.pool.unlabeled_indices.tolist())


@pytest.mark.parametrize("sampler", ["bald", "badge"])  # the two that draw random numbers while selecting
def test_reruns_of_the_randomised_samplers_give_identical_picks(smoke_cfg, tmp_path, sampler):
    from al_runner.runner import run_experiment

    for name in ("a", "b"):
        run_experiment(smoke_cfg(f"sampler={sampler}"), tmp_path / name)
    assert (tmp_path / "a" / "selected.csv").read_text() == (tmp_path / "b" / "selected.csv").read_text()

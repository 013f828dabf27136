"""Fast paths for the GPU, checked for equality on the CPU: the fused and compiled loss-prediction
module against the eager one, the slice-paired ranking loss against the index-paired one, and the CUDA-graph
training step's control flow (warm-up, capture, replay, eager fallback, recapture) through an eager stand-in
for the graph backend."""

import contextlib
import warnings

import pytest
import torch
from torch import nn

from al_runner.build import make_runtime
from al_runner.config_schema import check_overrides
from al_runner.cuda_graphs import CudaGraphStep, check_capturable, copy_into, static_copy, static_signature
from al_runner.errors import ConfigError
from al_runner.learner import Learner
from al_runner.learning_loss import (
    MODULE_KINDS,
    CompiledLossPredictionModule,
    FusedLossPredictionModule,
    LearningLoss,
    MarginRankingLoss,
    split_into_pairs,
)
from al_runner.loop import train_one_epoch
from al_runner.models import SmallCNN
from al_runner.runtime import Runtime
from al_runner.tasks.classification import ClassificationTask, CropFlipNormalize
from al_runner.tasks.classification.synthetic import make_synthetic_splits
from tests.conftest import compose_config

warnings.filterwarnings("ignore", message="Lazy modules are a new feature")
# ResNet-18's four stages at width 16 (C, spatial) and a flat [B, C] tap: unequal widths, any spatial size
SHAPES = ((16, 8), (32, 4), (64, 2), (128, 1))
RTOL, ATOL = 1e-5, 1e-6  # the fused GEMM sums in another order: fp32 rounding, nothing more


def feature_maps(batch=10, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(batch, c, s, s, generator=g) for c, s in SHAPES] + [torch.randn(batch, 24, generator=g)]
    if channels_last:
        maps = [m.contiguous(memory_format=torch.channels_last) if m.dim() == 4 else m for m in maps]
    return [m.requires_grad_(True) for m in maps]


def built(kind: str, features, seed=1, hidden=16):
    """A module of `kind` materialized right after construction, as Learner.materialize does."""
    torch.manual_seed(seed)
    module = MODULE_KINDS[kind](len(features), hidden)
    module([f.detach() for f in features])
    return module


# ------------------------------------------------------------------ fused == eager


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_module_equals_the_eager_one_in_values_and_gradients(channels_last):
    features = feature_maps(channels_last=channels_last)
    eager, fused = built("eager", features), built("fused", features)
    for key, value in eager.state_dict().items():  # the same initial values, drawn in the same order
        assert torch.equal(value, fused.state_dict()[key]), key
    target = torch.randn(10)
    outputs = {}
    for name, module in (("eager", eager), ("fused", fused)):
        predicted = module(features)
        loss = MarginRankingLoss(1.0)(predicted, target) + 0.1 * predicted.pow(2).mean()
        outputs[name] = (predicted, torch.autograd.grad(loss, features))
    torch.testing.assert_close(outputs["fused"][0], outputs["eager"][0], rtol=RTOL, atol=ATOL)
    for got, want in zip(outputs["fused"][1], outputs["eager"][1]):  # gradient into the target model's features
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


def test_fused_parameter_gradients_are_the_per_tap_ones_and_zero_off_the_blocks():
    features = feature_maps()
    eager, fused = built("eager", features), built("fused", features)
    for module in (eager, fused):
        module(features).sum().backward()
    for i, (rows, cols) in enumerate(fused.blocks()):
        torch.testing.assert_close(
            fused.weight.grad[rows, cols], eager.branches[i][0].weight.grad, rtol=RTOL, atol=ATOL
        )
        torch.testing.assert_close(fused.bias.grad[rows], eager.branches[i][0].bias.grad, rtol=RTOL, atol=ATOL)
    assert torch.equal(fused.weight.grad[~fused.block_mask], torch.zeros_like(fused.weight.grad[~fused.block_mask]))
    torch.testing.assert_close(fused.head.weight.grad, eager.head.weight.grad, rtol=RTOL, atol=ATOL)


def test_fused_module_trains_like_the_eager_one_and_its_off_block_weights_stay_zero():
    """SGD with momentum and weight decay, 20 steps: same trajectory up to rounding; off-block entries exactly 0."""
    features = [f.detach() for f in feature_maps()]
    target = torch.randn(10)
    modules = {"eager": built("eager", features), "fused": built("fused", features)}
    for module in modules.values():
        optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        for _ in range(20):
            optimizer.zero_grad()
            MarginRankingLoss(1.0)(module(features), target).backward()
            optimizer.step()
    fused = modules["fused"]
    assert torch.count_nonzero(fused.weight.detach()[~fused.block_mask]) == 0
    for key, value in modules["eager"].state_dict().items():
        torch.testing.assert_close(fused.state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_checkpoints_load_across_kinds_including_into_an_unmaterialized_fused_module():
    features = [f.detach() for f in feature_maps()]
    eager = built("eager", features, seed=5)
    with torch.no_grad():
        for p in eager.parameters():
            p.add_(0.5)  # not the initial values
    state = eager.state_dict()
    lazy_fused = FusedLossPredictionModule(len(features), 16)  # never run: the state dict gives its shapes
    lazy_fused.load_state_dict(state)
    fused = built("fused", features, seed=9)
    fused.load_state_dict(state)
    for module in (lazy_fused, fused):
        torch.testing.assert_close(module(features), eager(features), rtol=RTOL, atol=ATOL)
        assert torch.count_nonzero(module.weight.detach()[~module.block_mask]) == 0
    back = built("eager", features, seed=7)
    back.load_state_dict(fused.state_dict())  # fused -> eager: the per-tap keys, exact copies
    for key, value in state.items():
        assert torch.equal(back.state_dict()[key], value), key
    # the saved tensors are the blocks' own copies, not views that would save the whole fused matrix
    assert all(v.numel() == v.untyped_storage().nbytes() // v.element_size() for v in fused.state_dict().values())


def test_fused_module_refuses_a_wrong_number_of_maps():
    features = [f.detach() for f in feature_maps()]
    with pytest.raises(ValueError, match="expected 5 feature maps, got 4"):
        FusedLossPredictionModule(5, 16)(features[:4])


@pytest.mark.slow
def test_compiled_module_equals_the_eager_one():
    """torch.compile (Inductor, C++ on the CPU) of the module and of module + objective; ~1 min to compile."""
    features = feature_maps()
    eager, compiled = built("eager", features), built("compiled", features)
    assert isinstance(compiled, CompiledLossPredictionModule)
    target = torch.randn(10)
    values = {}
    for name, module in (("eager", eager), ("compiled", compiled)):
        value = module.objective_value(MarginRankingLoss(1.0), features, target)
        values[name] = (value, torch.autograd.grad(value, features), module(features).detach())
    torch.testing.assert_close(values["compiled"][0], values["eager"][0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(values["compiled"][2], values["eager"][2], rtol=RTOL, atol=ATOL)
    for got, want in zip(values["compiled"][1], values["eager"][1]):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    assert set(compiled.state_dict()) == set(eager.state_dict())


def test_unknown_module_kind_is_refused_in_one_line():
    method = LearningLoss(MarginRankingLoss(1.0), weight=1.0, detach_epoch=1)
    with pytest.raises(ConfigError, match="runtime.loss_module=cuda not supported, choose from eager, fused, compiled"):
        method.new_module(3, "cuda")
    with pytest.raises(ConfigError, match="runtime.loss_module=cuda not supported"):
        Runtime(torch.device("cpu"), loss_module="cuda")
    with pytest.raises(ConfigError, match="runtime.loss_module=cuda is not valid: .* one of eager, fused, compiled"):
        check_overrides(["runtime.loss_module=cuda"])


# ------------------------------------------------------------------ the ranking loss, paired by slicing


@pytest.mark.parametrize("n", [2, 7, 10, 128])
def test_slice_paired_ranking_loss_equals_the_index_paired_formula_exactly(n):
    g = torch.Generator().manual_seed(n)
    predicted = torch.randn(n, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (n,), generator=g).float()  # ties: s = -1 as in Sec. 3.3's "else"
    i, j = split_into_pairs(n)
    sign = torch.where(target[i] > target[j], 1.0, -1.0)
    expected = torch.clamp(-sign * (predicted[i] - predicted[j]) + 1.0, min=0).mean()
    got = MarginRankingLoss(1.0)(predicted, target)
    assert torch.equal(got, expected)
    assert torch.equal(torch.autograd.grad(got, predicted)[0], torch.autograd.grad(expected, predicted)[0])


# ------------------------------------------------------------------ through the Learner


def make_learner(kind="eager", cuda_graph_backend=None, objective=None) -> Learner:
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=4, width=8)
    method = LearningLoss(objective or MarginRankingLoss(1.0), weight=1.0, detach_epoch=2, hidden=32)
    learner = Learner(
        model,
        ["block1", "block2", "block3"],
        "block3",
        Runtime(torch.device("cpu"), channels_last=True, loss_module=kind),
        method,
    )
    learner.materialize(torch.randn(2, 3, 16, 16))
    if cuda_graph_backend is not None:  # the CUDA-graph path with an eager stand-in for the graph (no GPU here)
        learner._graph_step = CudaGraphStep(learner, warmup_steps=2, backend=cuda_graph_backend)
    return learner


def synthetic_task(n_train=40) -> ClassificationTask:
    return ClassificationTask(
        "synthetic", make_synthetic_splits(n_train=n_train, n_test=8, size=16), CropFlipNormalize(padding=2, hflip=True)
    )


def train(learner, task, epochs=4, lrs=(0.05, 0.05, 0.005, 0.005), batch=16, objective_seed=0):
    """`epochs` epochs of 40 samples in batches of 16 (the third batch is partial), an LR step after epoch 2."""
    generator = torch.Generator().manual_seed(objective_seed)
    optimizer = torch.optim.SGD(learner.parameters(), lr=lrs[0], momentum=0.9, weight_decay=5e-4)
    losses = []
    for epoch in range(epochs):
        optimizer.param_groups[0]["lr"] = lrs[epoch]
        losses.append(train_one_epoch(learner, task, torch.arange(40), optimizer, batch, generator, epoch, 0))
    return losses


def test_learner_trains_the_same_with_the_fused_module():
    task = synthetic_task()
    eager, fused = make_learner("eager"), make_learner("fused")
    assert isinstance(fused.loss_module, FusedLossPredictionModule)
    losses_eager, losses_fused = train(eager, task), train(fused, task)
    assert losses_fused == pytest.approx(losses_eager, rel=1e-4)
    for key, value in eager.state_dict()["model"].items():
        torch.testing.assert_close(fused.state_dict()["model"][key], value, rtol=1e-3, atol=1e-4)


def test_runtime_switches_join_the_run_identity_only_when_set():
    cpu = torch.device("cpu")
    base = {"device_type": "cpu", "amp": False, "channels_last": False, "compile": False}
    assert Runtime(cpu).resolved() == base  # the hash of every earlier run is unchanged
    assert Runtime(cpu, loss_module="fused").resolved() == {**base, "loss_module": "fused"}
    runtime = make_runtime(compose_config(["device=cpu", "runtime.loss_module=compiled"]))
    assert runtime.loss_module == "compiled" and not runtime.cuda_graph


# ------------------------------------------------------------------ the CUDA-graph step's control flow


class EagerGraphs:
    """Stand-in for CudaGraphs: 'capture' keeps the step function and 'replay' runs it, so a replay reads the
    static buffers exactly as the CUDA graph does; counts what happened."""

    def __init__(self):
        self.captured, self.warmups = 0, 0

    def capture(self, step):
        self.captured += 1
        return step

    def warmup(self):
        self.warmups += 1
        return contextlib.nullcontext()


def test_cuda_graph_is_refused_on_the_cpu_in_one_line():
    with pytest.raises(ConfigError, match=r"runtime.cuda_graph=true needs a CUDA device \(device is cpu here\)"):
        make_runtime(compose_config(["device=cpu", "runtime.cuda_graph=true"]))
    with pytest.raises(ConfigError, match="runtime.cuda_graph=yes is not valid"):
        check_overrides(["runtime.cuda_graph=yes"])


def test_static_signature_accepts_tensors_dicts_and_tuples_but_not_lists():
    images = torch.zeros(4, 3, 8, 8)
    assert static_signature((images, torch.zeros(4, dtype=torch.long))) is not None
    pose = {"heatmaps": torch.zeros(4, 16, 8, 8), "visible": torch.ones(4, 16)}
    assert static_signature((images, pose)) == static_signature((images.clone(), {k: v + 1 for k, v in pose.items()}))
    assert static_signature((images[:3], pose)) != static_signature((images, pose))  # the last, partial batch
    channels_last = images.contiguous(memory_format=torch.channels_last)
    assert static_signature((channels_last, pose)) != static_signature((images, pose))
    assert static_signature((images, [{"boxes": torch.zeros(2, 4)}])) is None  # detection: per-image lists
    static = static_copy((images, pose))
    copy_into(static, (images + 2, {k: v * 3 for k, v in pose.items()}))
    assert torch.equal(static[0], images + 2) and torch.equal(static[1]["visible"], pose["visible"] * 3)


def test_graph_step_trains_exactly_like_eager_steps_and_captures_when_constants_change():
    """4 epochs x (16, 16, 8): the two full batches replay, the partial one runs eagerly; the graph is captured
    again after the module's detach point (epoch 2) and after the LR step (epoch 2 too, one capture), never
    per batch; the parameters end bit-identical to plain eager steps."""
    task = synthetic_task()
    backend = EagerGraphs()
    eager, graphed = make_learner(), make_learner(cuda_graph_backend=backend)
    losses_eager, losses_graphed = train(eager, task), train(graphed, task)
    assert losses_graphed == losses_eager
    for key, value in eager.state_dict()["model"].items():
        assert torch.equal(graphed.state_dict()["model"][key], value), key
    for key, value in eager.state_dict()["loss_module"].items():
        assert torch.equal(graphed.state_dict()["loss_module"][key], value), key
    counts = graphed._graph_step.counts
    # 12 batches: 4 partial (eager) + 2 warm-up (eager) + 6 replays; captures: epoch 1 and epoch 2 (lr + detach)
    assert counts == {"eager": 6, "captures": 2, "replays": 6} and backend.captured == 2 and backend.warmups == 2


def test_graph_step_warms_up_again_with_each_new_optimizer_and_refuses_a_host_counting_one():
    task = synthetic_task()
    learner = make_learner(cuda_graph_backend=EagerGraphs())
    train(learner, task, epochs=2, lrs=(0.05, 0.05))  # cycle 0: 2 warm-up + capture, 2 replays, 2 partial
    assert learner._graph_step.counts == {"eager": 4, "captures": 1, "replays": 2}
    train(learner, task, epochs=2, lrs=(0.05, 0.05))  # a new cycle, a new optimiser: warm-up again
    assert learner._graph_step.counts == {"eager": 8, "captures": 2, "replays": 4}
    rmsprop = torch.optim.RMSprop(learner.parameters(), lr=1e-3)
    inputs, targets, _ = next(iter(task.labeled_batches(torch.arange(16), 16, torch.Generator())))
    with pytest.raises(ConfigError, match="RMSprop counts its steps on the host.*capturable=true"):
        learner.train_step(task, inputs, targets, rmsprop, 0)
    check_capturable(torch.optim.Adam([nn.Parameter(torch.zeros(1))], capturable=True))


def test_graph_step_runs_every_batch_eagerly_when_targets_are_lists():
    class ListTargets(ClassificationTask):  # stand-in for detection: per-sample targets in a list
        def labeled_batches(self, indices, batch_size, generator, augment=True):
            for inputs, targets, idx in super().labeled_batches(indices, batch_size, generator, augment):
                yield inputs, list(targets), idx

        def training_losses(self, outputs, targets):
            return super().training_losses(outputs, torch.stack(targets))

    base = synthetic_task()
    task = ListTargets("synthetic", make_synthetic_splits(n_train=40, n_test=8, size=16), base.augmentation)
    learner = make_learner(cuda_graph_backend=EagerGraphs())
    train(learner, task, epochs=2, lrs=(0.05, 0.05))
    assert learner._graph_step.counts == {"eager": 6, "captures": 0, "replays": 0}


# ------------------------------------------------------------------ benchmark 1 for the module options


def test_benchmark_one_compares_the_module_options_at_toy_size(tmp_path):
    import benchmarks
    from benchmarks import cli

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = benchmarks.parse_args(
            [
                "--quick",
                "--device",
                "cpu",
                "--only",
                "1",
                "--out",
                str(tmp_path / "b.csv"),
                "--loss-modules",
                "eager,fused",
                "--steps-per-sample",
                "2",
            ]
        )
        args.widths, args.batch, args.step_warmup, args.step_repeats = [8], 8, 1, 1
        args.option_repeats, args.option_warmup = 6, 1
        res = cli.run_benchmarks(args)
    finally:
        torch.set_num_threads(threads)
    rows = {r["name"]: r for r in res.rows}
    for kind in ("eager", "fused"):
        ratio = rows[f"w8 module {kind} step time / plain"]
        assert ratio["value"] > 0 and ratio["target"] == "<= 1.05" and "95 % CI" in ratio["note"]
        assert rows[f"w8 train module {kind}"]["value"] > 0
    assert "w8 train plain" in rows


def test_schema_names_the_same_module_kinds_as_the_model_code():
    # config_schema repeats the names so that the command line starts without torch
    from al_runner.config_schema import LOSS_MODULE_KINDS

    assert tuple(MODULE_KINDS) == LOSS_MODULE_KINDS

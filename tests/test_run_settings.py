"""The core's contract for every task: schedule points scale with epochs, fp32 numerics around a bf16
backbone, result-changing runtime settings belong to a run's identity, metric details, threads."""

import csv

import pytest
import torch
from torch import nn

import al_runner.cycle as cycle_mod
from al_runner.build import DEFAULT_THREADS, apply_threads, build_method, lr_milestone_epochs, make_scheduler_factory
from al_runner.errors import ConfigError
from al_runner.learner import Learner
from al_runner.learning_loss import LearningLoss, LossPredictionModule, MarginRankingLoss
from al_runner.models import SmallCNN, global_average_pool
from al_runner.runner import run_experiment
from al_runner.runtime import Runtime, to_float32
from al_runner.tasks.classification import ClassificationTask, CropFlipNormalize
from al_runner.tasks.classification.metric import Accuracy
from al_runner.tasks.classification.synthetic import make_synthetic_splits
from tests.conftest import compose_config


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ schedule points follow `epochs`


def test_an_epochs_override_keeps_the_papers_lr_step_and_detach_proportions():
    """The README's `schedule.epochs=50` used to train with no LR decay and no detach (160, 120 >= 50)."""
    cfg = compose_config(["experiment=fig4_cifar10", "schedule.epochs=50"])
    assert lr_milestone_epochs(cfg.schedule) == [40]
    assert build_method(cfg).detach_epoch == 30
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make_scheduler_factory(cfg.schedule)(optimizer)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[39] == pytest.approx(0.1) and lrs[40] == pytest.approx(0.01)


def test_paper_epochs_give_the_papers_exact_epochs():
    cfg = compose_config(["experiment=fig4_cifar10"])
    assert lr_milestone_epochs(cfg.schedule) == [160] and build_method(cfg).detach_epoch == 120


@pytest.mark.parametrize(
    "override,key",
    [
        ("schedule.lr_milestones=[160]", "schedule.lr_milestones"),
        ("schedule.learning_loss.detach_at=120", "schedule.learning_loss.detach_at"),
        ("schedule.learning_loss.detach_at=-0.1", "schedule.learning_loss.detach_at"),
    ],
)
def test_schedule_points_outside_the_epochs_are_refused_before_training(
    smoke_cfg, tmp_path, monkeypatch, override, key
):
    monkeypatch.setattr(cycle_mod, "train_cycle", lambda *a, **k: pytest.fail("trained despite a bad schedule"))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_experiment(smoke_cfg("sampler=learning_loss", override), tmp_path)


def test_unknown_loss_objective_lists_the_choices(smoke_cfg):
    with pytest.raises(ConfigError, match="not supported, choose from margin_ranking, mse"):
        build_method(smoke_cfg("sampler.loss_objective=listnet"))


# ------------------------------------------------------------------ fp32 around a bf16 backbone


def make_learner(amp: bool) -> Learner:
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=4, width=8)
    method = LearningLoss(MarginRankingLoss(1.0), weight=1.0, detach_epoch=10, hidden=128)
    learner = Learner(model, ["block1", "block2", "block3"], "block3", Runtime(torch.device("cpu"), amp=amp), method)
    learner.materialize(torch.randn(2, 3, 16, 16))
    return learner


def synthetic_task() -> ClassificationTask:
    return ClassificationTask(
        "synthetic", make_synthetic_splits(n_train=64, n_test=300, size=16), CropFlipNormalize(padding=2, hflip=True)
    )


@pytest.mark.parametrize("outer_autocast", [False, True])
def test_module_losses_uncertainty_and_embedding_are_fp32_under_bf16_autocast(outer_autocast):
    learner, task = make_learner(amp=True), synthetic_task()
    learner.eval()
    inputs, targets, _ = next(iter(task.test_batches(300)))
    context = torch.autocast("cpu", dtype=torch.bfloat16) if outer_autocast else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), context:
        outputs = learner.forward(inputs)
        features = learner.taps.features(learner.tap_names)
        assert features[0].dtype == torch.bfloat16  # the backbone really ran in bf16
        predicted = learner.predicted_loss()
        per_sample = task.per_sample_loss(outputs, targets)
        uncertainty = task.uncertainty(outputs)
        embedding = learner.embedding()
    assert outputs.dtype == per_sample.dtype == uncertainty.dtype == embedding.dtype == predicted.dtype == torch.float32
    # the module ran in fp32: same numbers as the module applied to the fp32 features outside autocast
    with torch.no_grad():
        reference = learner.loss_module([f.float() for f in features])
        reference_embedding = global_average_pool(learner.taps.features(["block3"])[0].float())
    assert torch.equal(predicted, reference) and torch.equal(embedding, reference_embedding)
    # bf16 has 8 significant bits: 300 predictions rounded to bf16 collapse into far fewer distinct values
    assert predicted.unique().numel() == 300 > predicted.bfloat16().unique().numel()


def test_training_loss_under_bf16_autocast_is_fp32_and_trains_the_module():
    learner, task = make_learner(amp=True), synthetic_task()
    learner.train()
    inputs, targets, _ = next(iter(task.labeled_batches(torch.arange(32), 32, torch.Generator().manual_seed(0))))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = learner.training_loss(task, inputs, targets, epoch=0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in learner.loss_module.parameters())


def test_outputs_of_any_structure_are_cast_to_fp32():
    out = to_float32(
        {
            "logits": torch.ones(2, dtype=torch.bfloat16),
            "anchors": [torch.ones(1, dtype=torch.float16)],
            "ids": torch.ones(2, dtype=torch.long),
            "stacks": (torch.ones(1, dtype=torch.bfloat16),),
        }
    )
    assert out["logits"].dtype == out["anchors"][0].dtype == out["stacks"][0].dtype == torch.float32
    assert out["ids"].dtype == torch.long and isinstance(out["stacks"], tuple)


# ------------------------------------------------------------------ GAP with a channels_last backward


def test_global_average_pool_keeps_values_and_gradients_and_the_memory_format():
    x = torch.randn(3, 5, 6, 7)
    for fmt in (torch.contiguous_format, torch.channels_last):
        a = x.clone().contiguous(memory_format=fmt).requires_grad_(True)
        b = x.clone().contiguous(memory_format=fmt).requires_grad_(True)
        weight = torch.randn(3, 5)
        new, old = global_average_pool(a), b.flatten(2).mean(dim=2)
        assert torch.equal(new, old)
        (new * weight).sum().backward()
        (old * weight).sum().backward()
        assert torch.equal(a.grad, b.grad)
        assert a.grad.is_contiguous(memory_format=fmt)
    assert torch.autograd.gradcheck(
        global_average_pool, torch.randn(2, 3, 4, 4, dtype=torch.double, requires_grad=True)
    )


# (33, 64, 32, 32): a bf16 map averaged in 9 pieces of 4 images
@pytest.mark.parametrize("shape", [(4, 6, 5, 7), (33, 64, 32, 32), (4, 6, 9), (4, 6)])
def test_global_average_pool_of_a_bf16_map_is_fp32_without_a_full_fp32_copy(shape):
    """Same values and gradients as casting the bf16 map to fp32 first, the gradient back in bf16 and in the map's
    memory format; the backward casts no map-sized tensor (only the [B, C] gradient)."""
    x = torch.randn(shape).bfloat16()
    if len(shape) == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    weight = torch.randn(shape[:2])
    new, old = global_average_pool(a.detach()), b.float().flatten(1 if len(shape) == 2 else 2)
    old = old if len(shape) == 2 else old.mean(dim=2)
    assert new.dtype == torch.float32 and torch.equal(new, old)
    pooled = global_average_pool(a)
    with torch.profiler.profile(record_shapes=True) as profile:
        (pooled * weight).sum().backward()
    (old * weight).sum().backward()
    assert a.grad.dtype == torch.bfloat16 and torch.equal(a.grad, b.grad)
    if len(shape) == 4:
        assert a.grad.is_contiguous(memory_format=torch.channels_last)
        casts = [e for e in profile.events() if e.name == "aten::_to_copy"]  # dtype casts
        assert casts and all(list(shape) not in e.input_shapes for e in casts)  # only [B, C] casts


# ------------------------------------------------------------------ run identity


@pytest.mark.parametrize(
    "override,key", [("runtime.amp=true", "runtime.amp"), ("runtime.channels_last=false", "runtime.channels_last")]
)
def test_a_run_does_not_resume_under_result_changing_runtime_settings(smoke_cfg, tmp_path, override, key):
    run_experiment(smoke_cfg("schedule.cycles=1"), tmp_path)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_experiment(smoke_cfg("schedule.cycles=1", override), tmp_path)


def test_settings_that_cannot_change_a_number_may_differ_on_resume(smoke_cfg, tmp_path):
    first = run_experiment(smoke_cfg("schedule.cycles=1"), tmp_path)
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    # runtime.threads spelled as what null resolves to (torch's default): the same run, found finished
    second = run_experiment(
        smoke_cfg(
            "schedule.cycles=1",
            "progress=true",
            f"runtime.threads={DEFAULT_THREADS}",
            "paths.cache=/tmp/elsewhere",
            "device=cpu",
        ),
        tmp_path,
    )
    assert second == first and len(second) == 1  # the finished cycle's row, not a new run's
    assert (tmp_path / "checkpoint.pt").read_bytes() == checkpoint  # nothing retrained or rewritten


def test_run_directory_names_include_result_changing_runtime_settings():
    from omegaconf import OmegaConf

    def run_name(*overrides):  # the last part of hydra.run.dir: <task>-<model>-<sampler>-seed<seed>-<config hash>
        return OmegaConf.select(compose_config(list(overrides), return_hydra_config=True), "hydra.run.dir").rsplit(
            "/", 1
        )[-1]

    base = run_name()
    assert (
        len(
            {
                base,
                run_name("runtime.amp=true"),
                run_name("runtime.compile=true"),
                run_name("runtime.channels_last=false"),
            }
        )
        == 4
    )
    assert run_name("progress=true", "paths.output=/elsewhere", f"runtime.threads={DEFAULT_THREADS}") == base


# ------------------------------------------------------------------ outputs the widened contract adds


def test_metric_details_and_uncertainty_name_reach_the_run_directory(smoke_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(Accuracy, "details", lambda self: {"per_class/0": 0.25, "per_class/1": 0.75})
    run_experiment(smoke_cfg("sampler=entropy"), tmp_path)
    details = read_csv(tmp_path / "metric_details.csv")
    assert [(d["cycle"], d["name"], float(d["value"])) for d in details] == [
        ("0", "per_class/0", 0.25),
        ("0", "per_class/1", 0.75),
        ("1", "per_class/0", 0.25),
        ("1", "per_class/1", 0.75),
    ]
    assert all(r["uncertainty"] == "softmax_entropy" for r in read_csv(tmp_path / "cycles.csv"))
    assert "uncertainty" in read_csv(tmp_path / "test_scores.csv")[0]


def test_runtime_threads_sets_torchs_thread_count(smoke_cfg):
    before = torch.get_num_threads()
    try:
        apply_threads(smoke_cfg("runtime.threads=1"))
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="runtime.threads"):
            apply_threads(smoke_cfg("runtime.threads=0"))
    finally:
        torch.set_num_threads(before)


def test_the_learner_builds_its_own_module_from_the_taps():
    learner = make_learner(amp=False)
    assert isinstance(learner.loss_module, LossPredictionModule) and len(learner.loss_module.branches) == 3
    assert [b[0].in_features for b in learner.loss_module.branches] == [8, 16, 32]


def test_the_csv_schema_and_figure_loading_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, al_runner.schema, al_runner.figures.loading; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_data_errors_inside_instantiate_come_out_unwrapped(smoke_cfg):
    from al_runner.build import build_task, make_runtime
    from al_runner.errors import DataError

    cfg = smoke_cfg("task=imagefolder", "task.root=/nonexistent/images")
    with pytest.raises(DataError, match="image folder root not found: /nonexistent/images"):
        build_task(cfg, make_runtime(cfg))

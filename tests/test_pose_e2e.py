"""The pose path through the real configs: fig7_mpii holds the paper's numbers; two-cycle runs of every
sampler on generated MPII-format data."""

from __future__ import annotations

import csv

import pytest

from al_runner.build import build_method, lr_milestone_epochs
from al_runner.runner import run_experiment
from tests.conftest import compose_config

SAMPLERS = ["random", "entropy", "coreset", "learning_loss_mse", "learning_loss"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fig7_preset_holds_the_papers_numbers():
    cfg = compose_config(["experiment=fig7_mpii"], return_hydra_config=True)
    s = cfg.schedule
    assert (s.cycles, s.initial_size, s.query_size, s.subset_size) == (10, 1000, 1000, 5000)
    assert (s.epochs, s.batch_size) == (125, 6)
    assert s.optimizer._target_ == "torch.optim.RMSprop" and s.optimizer.lr == 2.5e-4
    assert s.lr_scheduler.gamma == 0.1 and lr_milestone_epochs(s) == [100]
    assert build_method(cfg).detach_epoch == 75
    assert s.learning_loss.weight == 1.0e-4 and s.learning_loss.margin == 1.0 and s.learning_loss.hidden == 128
    assert (cfg.model.net.stacks, cfg.model.net.features) == (2, 256)
    assert list(cfg.model.taps) == ["stacks.0.head", "stacks.1.head"] and cfg.model.embedding.layer == "stacks.1.head"
    assert (cfg.task.input_size, cfg.task.heatmap_size, cfg.task.sigma) == (256, 64, 1.0)
    assert cfg.task.build._target_ == "al_runner.tasks.pose.MPIITask"
    sweep = cfg.hydra.sweeper.params
    assert sweep.seed == "0,1,2" and sweep.sampler.split(",") == SAMPLERS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mpii_runs")
    common = [
        "experiment=mpii_cpu",
        f"paths.data={base / 'data'}",
        "progress=false",
        "device=cpu",
        "task.generate_people=40",
        "schedule.initial_size=12",
        "schedule.query_size=6",
        "schedule.subset_size=18",
        "schedule.epochs=2",
        "model.net.features=16",
    ]
    for sampler in SAMPLERS:
        run_experiment(compose_config(common + [f"sampler={sampler}"]), base / sampler)
    run_experiment(compose_config(common + ["sampler=learning_loss"]), base / "learning_loss_again")
    return base


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_two_cycles_of_each_sampler_on_generated_data(runs, sampler):
    rows = read_csv(runs / sampler / "cycles.csv")
    assert [int(r["cycle"]) for r in rows] == [0, 1] and [int(r["n_labeled"]) for r in rows] == [12, 18]
    assert all(r["metric"] == "PCKh@0.5" and 0.0 <= float(r["value"]) <= 1.0 for r in rows)
    assert rows[0]["uncertainty"] == "heatmap_softmax_entropy"
    details = read_csv(runs / sampler / "metric_details.csv")
    assert {d["name"] for d in details} >= {"PCKh_l_wrist", "PCKh_head_top"}
    scores = read_csv(runs / sampler / "test_scores.csv")
    assert len(scores) == 10 and all(float(r["real_loss"]) >= 0 for r in scores)


def test_rerun_gives_identical_results(runs):
    keep = ["cycle", "n_labeled", "value", "ranking_accuracy"]
    a = [{k: r[k] for k in keep} for r in read_csv(runs / "learning_loss" / "cycles.csv")]
    b = [{k: r[k] for k in keep} for r in read_csv(runs / "learning_loss_again" / "cycles.csv")]
    assert a == b
    assert read_csv(runs / "learning_loss" / "selected.csv") == read_csv(runs / "learning_loss_again" / "selected.csv")

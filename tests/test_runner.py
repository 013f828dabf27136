import csv

import pytest
import torch

import al_runner.cycle as cycle_mod  # the phases are called from the cycle module
import al_runner.loop as loop_mod
from al_runner.errors import ConfigError, NonFiniteLossError
from al_runner.loop import TrainingProgress, select
from al_runner.runner import ActiveLearningRun, run_experiment, run_locked
from al_runner.samplers import RandomSampler
from al_runner.schema import TIMING_COLUMNS

SAMPLERS = ["random", "entropy", "coreset", "learning_loss_mse", "learning_loss"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_two_cycle_run_per_sampler_writes_all_outputs(smoke_cfg, tmp_path, sampler):
    cfg = smoke_cfg(f"sampler={sampler}")
    run_experiment(cfg, tmp_path)
    rows = read_csv(tmp_path / "cycles.csv")
    assert [int(r["cycle"]) for r in rows] == [0, 1]
    assert [int(r["n_labeled"]) for r in rows] == [20, 30]
    assert all(r["task"] == "synthetic" and r["sampler"] == sampler and r["metric"] == "accuracy" for r in rows)
    assert all(r["uncertainty"] == "softmax_entropy" for r in rows)
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    has_module = sampler.startswith("learning_loss")
    assert all((r["ranking_accuracy"] != "") == has_module for r in rows)
    selected = read_csv(tmp_path / "selected.csv")
    assert sum(r["cycle"] == "0" for r in selected) == 20 and sum(r["cycle"] == "1" for r in selected) == 10
    assert len({r["pool_index"] for r in selected}) == 30
    scores = read_csv(tmp_path / "test_scores.csv")
    assert len(scores) == 100 and all(r["cycle"] == "1" for r in scores)
    assert all((r["predicted_loss"] != "") == has_module and float(r["real_loss"]) >= 0 for r in scores)
    assert all(float(r["uncertainty"]) >= 0 for r in scores)
    assert (tmp_path / "checkpoint.pt").is_file()


def test_same_seed_same_initial_set_and_weights_across_samplers(smoke_cfg, tmp_path):
    initial, weights = [], []
    for sampler in SAMPLERS:
        run = ActiveLearningRun(smoke_cfg(f"sampler={sampler}", "schedule.cycles=1"), tmp_path / sampler)
        run.run()
        initial.append(sorted(int(r["pool_index"]) for r in read_csv(tmp_path / sampler / "selected.csv")))
        weights.append(
            ActiveLearningRun(smoke_cfg(f"sampler={sampler}"), tmp_path / "x").learner.model.block1[0].weight
        )
    assert all(s == initial[0] for s in initial)
    assert all(torch.equal(w, weights[0]) for w in weights)
    other_seed = ActiveLearningRun(smoke_cfg("seed=1", "schedule.cycles=1"), tmp_path / "seed1")
    other_seed.run()
    assert sorted(int(r["pool_index"]) for r in read_csv(tmp_path / "seed1" / "selected.csv")) != initial[0]


def test_random_with_module_control_labels_what_random_labels_and_trains_the_module(smoke_cfg, tmp_path):
    # The control's point: same selections as random (so accuracy differences are the module's effect on
    # training), same training as learning_loss (so learning_loss - control is what its selections add).
    for sampler in ("random", "random_with_module", "learning_loss"):
        run_experiment(smoke_cfg(f"sampler={sampler}", "schedule.cycles=3"), tmp_path / sampler)
    selected = {s: read_csv(tmp_path / s / "selected.csv") for s in ("random", "random_with_module", "learning_loss")}
    pool = lambda rows: [(r["cycle"], r["pool_index"]) for r in rows]
    assert pool(selected["random_with_module"]) == pool(selected["random"])
    assert pool(selected["learning_loss"]) != pool(selected["random"])
    control = read_csv(tmp_path / "random_with_module" / "cycles.csv")
    with_module = read_csv(tmp_path / "learning_loss" / "cycles.csv")
    assert all(r["ranking_accuracy"] != "" for r in control)
    # cycle 0 has no selection yet: the control is the learning-loss run there, bit for bit
    assert without_timing([control[0]])[0] | {"sampler": ""} == without_timing([with_module[0]])[0] | {"sampler": ""}


def test_reruns_give_identical_csvs(smoke_cfg, tmp_path):
    for d in ("a", "b"):
        run_experiment(smoke_cfg("sampler=learning_loss"), tmp_path / d)
    assert without_timing(read_csv(tmp_path / "a" / "cycles.csv")) == without_timing(
        read_csv(tmp_path / "b" / "cycles.csv")
    )
    for name in ("selected.csv", "test_scores.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


@pytest.mark.parametrize("sampler", ["learning_loss", "coreset"])
def test_killed_then_resumed_run_equals_uninterrupted(smoke_cfg, tmp_path, monkeypatch, sampler):
    overrides = (f"sampler={sampler}", "schedule.cycles=4")
    run_experiment(smoke_cfg(*overrides), tmp_path / "full")

    real_evaluate = cycle_mod.evaluate
    calls = {"n": 0}

    def dying_evaluate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # dies inside cycle 2, after cycles 0 and 1 were checkpointed
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(cycle_mod, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(smoke_cfg(*overrides), tmp_path / "killed")
    assert len(read_csv(tmp_path / "killed" / "cycles.csv")) == 2
    monkeypatch.setattr(cycle_mod, "evaluate", real_evaluate)
    run_experiment(smoke_cfg(*overrides), tmp_path / "killed")

    full, resumed = read_csv(tmp_path / "full" / "cycles.csv"), read_csv(tmp_path / "killed" / "cycles.csv")
    assert [r["cycle"] for r in resumed] == ["0", "1", "2", "3"]  # no duplicated rows
    assert without_timing(full) == without_timing(resumed)
    assert (tmp_path / "full" / "selected.csv").read_text() == (tmp_path / "killed" / "selected.csv").read_text()


@pytest.mark.parametrize("dies_in_cycle", [0, 1])
def test_killed_mid_cycle_resumes_from_its_in_cycle_checkpoint_with_the_same_numbers(
    smoke_cfg, tmp_path, monkeypatch, dies_in_cycle
):
    overrides = ("sampler=learning_loss", "schedule.epochs=4", "checkpoint_minutes=0")  # 2 cycles
    run_experiment(smoke_cfg(*overrides), tmp_path / "full")
    assert not (tmp_path / "full" / "checkpoint_in_cycle.pt").exists()  # removed once its cycle is checkpointed

    real_epoch = loop_mod.train_one_epoch
    epochs_run, dying = [], [True]

    def counting_epoch(*args, **kwargs):
        epochs_run.append((args[7], args[6]))  # (cycle, epoch)
        if dying[0] and epochs_run[-1] == (dies_in_cycle, 2):  # dies in epoch 2 (of 0..3) of the chosen cycle
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "train_one_epoch", counting_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(smoke_cfg(*overrides), tmp_path / "killed")
    saved = torch.load(tmp_path / "killed" / "checkpoint_in_cycle.pt", weights_only=True)
    assert (saved["cycle"], saved["progress"]["epochs_done"]) == (dies_in_cycle, 2)
    assert saved["progress"]["train_seconds"] > 0
    saved["progress"]["train_seconds"] = 1000.0  # as if the stopped process had trained 1,000 s in this cycle
    torch.save(saved, tmp_path / "killed" / "checkpoint_in_cycle.pt")

    epochs_run.clear()
    dying[0] = False
    run = run_locked(smoke_cfg(*overrides), tmp_path / "killed")
    assert epochs_run[:2] == [(dies_in_cycle, 2), (dies_in_cycle, 3)]  # the two saved epochs are not trained again
    assert len(epochs_run) == 2 + 4 * (1 - dies_in_cycle) and run.outcome == "resumed"
    for name in ("cycles.csv", "selected.csv", "test_scores.csv"):
        full, resumed = read_csv(tmp_path / "full" / name), read_csv(tmp_path / "killed" / name)
        assert without_timing(full) == without_timing(resumed), name
    assert not (tmp_path / "killed" / "checkpoint_in_cycle.pt").exists()
    train_s = [float(row["train_s"]) for row in read_csv(tmp_path / "killed" / "cycles.csv")]
    assert train_s[dies_in_cycle] > 1000.0 and all(t < 1000.0 for c, t in enumerate(train_s) if c != dies_in_cycle)


def test_in_cycle_checkpoint_of_another_config_is_refused(smoke_cfg, tmp_path, monkeypatch):
    overrides = ("schedule.epochs=4", "checkpoint_minutes=0")

    def dying_epoch(*args, **kwargs):
        if args[6] == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    real_epoch = loop_mod.train_one_epoch
    monkeypatch.setattr(loop_mod, "train_one_epoch", dying_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(smoke_cfg(*overrides), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists() and (tmp_path / "checkpoint_in_cycle.pt").is_file()
    with pytest.raises(ConfigError, match="schedule.batch_size"):
        run_experiment(smoke_cfg(*overrides, "schedule.batch_size=4"), tmp_path)


def test_no_in_cycle_checkpoint_when_turned_off(smoke_cfg, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(ActiveLearningRun, "_save_in_cycle", lambda self, cycle, progress: saved.append(cycle))
    run_experiment(smoke_cfg("checkpoint_minutes=null"), tmp_path / "off")
    run_experiment(smoke_cfg("checkpoint_minutes=60"), tmp_path / "hour")  # never due in a smoke run
    assert saved == []
    run_experiment(smoke_cfg("checkpoint_minutes=0"), tmp_path / "every")
    assert saved == [0, 0, 1, 1]  # two cycles of two epochs


def test_finished_run_is_not_redone(smoke_cfg, tmp_path, monkeypatch):
    run_experiment(smoke_cfg(), tmp_path)
    before = (tmp_path / "cycles.csv").read_text()
    # what the run wrote stays as it wrote it (a later version relaunching the sweep would add its own keys)
    for name in ("config.yaml", "platform.json"):
        (tmp_path / name).write_text((tmp_path / name).read_text() + "\n")
    records = {name: (tmp_path / name).read_text() for name in ("config.yaml", "platform.json")}
    monkeypatch.setattr(cycle_mod, "train_cycle", lambda *a, **k: pytest.fail("a finished run trained again"))
    run = run_locked(smoke_cfg(), tmp_path)
    assert (tmp_path / "cycles.csv").read_text() == before and run.outcome == "skipped"
    assert {name: (tmp_path / name).read_text() for name in records} == records


def test_finished_records_without_a_checkpoint_are_not_redone(smoke_cfg, tmp_path, monkeypatch):
    """A committed run copied back into its sweep has its CSVs and config but no checkpoint: skipped, untouched."""
    run_experiment(smoke_cfg(), tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    files = {name: (tmp_path / name).read_bytes() for name in ("cycles.csv", "selected.csv", "platform.json")}
    written = read_csv(tmp_path / "cycles.csv")
    monkeypatch.setattr(cycle_mod, "train_cycle", lambda *a, **k: pytest.fail("a finished run trained again"))
    run = ActiveLearningRun(smoke_cfg(), tmp_path)
    rows = run.run()
    assert run.outcome == "skipped" and not (tmp_path / "checkpoint.pt").exists()
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    assert [r["cycle"] for r in rows] == [int(r["cycle"]) for r in written]
    assert [r["value"] for r in rows] == [float(r["value"]) for r in written]


def test_unfinished_records_without_a_checkpoint_start_over(smoke_cfg, tmp_path, caplog):
    run_experiment(smoke_cfg(), tmp_path / "full")
    partial = tmp_path / "partial"
    run_experiment(smoke_cfg(), partial)
    (partial / "checkpoint.pt").unlink()
    lines = (partial / "cycles.csv").read_text().splitlines(keepends=True)
    (partial / "cycles.csv").write_text("".join(lines[:2]))  # header + cycle 0
    with caplog.at_level("WARNING"):
        run = ActiveLearningRun(smoke_cfg(), partial)
        run.run()
    assert run.outcome == "finished" and "no checkpoint to resume from: starting over" in caplog.text
    assert without_timing(read_csv(partial / "cycles.csv")) == without_timing(
        read_csv(tmp_path / "full" / "cycles.csv")
    )


def test_records_of_another_config_without_a_checkpoint_are_refused(smoke_cfg, tmp_path):
    run_experiment(smoke_cfg("schedule.cycles=1"), tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    before = (tmp_path / "cycles.csv").read_text()
    with pytest.raises(ConfigError, match="records of a run with a different config.*schedule.epochs"):
        run_experiment(smoke_cfg("schedule.cycles=1", "schedule.epochs=3"), tmp_path)
    assert (tmp_path / "cycles.csv").read_text() == before


def test_resume_with_a_different_config_is_refused(smoke_cfg, tmp_path):
    run_experiment(smoke_cfg("schedule.cycles=1"), tmp_path)
    with pytest.raises(ConfigError, match="schedule.epochs"):
        run_experiment(smoke_cfg("schedule.cycles=1", "schedule.epochs=3"), tmp_path)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["schedule.initial_size=150", "schedule.query_size=30", "schedule.cycles=3"], "only 200"),
        (["schedule.subset_size=5"], "subset_size"),
        (["schedule.batch_size=7", "sampler=learning_loss"], "odd"),
        (["model.taps=[block1,blok2]"], "blok2.*block2"),
        (["schedule.cycles=0"], "cycles"),
    ],
)
def test_bad_input_fails_before_any_training(smoke_cfg, tmp_path, monkeypatch, overrides, message):
    monkeypatch.setattr(cycle_mod, "train_cycle", lambda *a, **k: pytest.fail("trained despite bad input"))
    with pytest.raises(ConfigError, match=message):
        run_experiment(smoke_cfg(*overrides), tmp_path)


def test_odd_batch_size_is_fine_for_baselines(smoke_cfg, tmp_path):
    run_experiment(smoke_cfg("schedule.batch_size=7", "sampler=entropy"), tmp_path)
    assert len(read_csv(tmp_path / "cycles.csv")) == 2


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(smoke_cfg, tmp_path, monkeypatch):
    cfg = smoke_cfg("schedule.cycles=3")
    run = ActiveLearningRun(cfg, tmp_path)
    real_loss = run.task.per_sample_loss
    state = {"cycle1": False}
    real_train_cycle = cycle_mod.train_cycle

    def train_cycle_marking(*args, **kwargs):
        state["cycle1"] = kwargs["cycle"] == 1
        return real_train_cycle(*args, **kwargs)

    def poisoned(outputs, targets):
        loss = real_loss(outputs, targets)
        return loss * float("nan") if state["cycle1"] else loss

    monkeypatch.setattr(cycle_mod, "train_cycle", train_cycle_marking)
    run.task.per_sample_loss = poisoned
    with pytest.raises(NonFiniteLossError) as e:
        run.run()
    assert e.value.cycle == 1 and e.value.epoch == 0
    assert "checkpoint.pt" in str(e.value)
    assert [r["cycle"] for r in read_csv(tmp_path / "cycles.csv")] == ["0"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["next_cycle"] == 1


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_selection_ignores_labels_of_unlabeled_points(smoke_cfg, tmp_path, sampler):
    run = ActiveLearningRun(smoke_cfg(f"sampler={sampler}", "schedule.cycles=1"), tmp_path)
    run.run()
    labeled, unlabeled = run.pool.labeled_indices, run.pool.unlabeled_indices

    def pick():
        return select(
            run.learner, run.task, run.sampler, unlabeled, labeled, 10, 40, 64, torch.Generator().manual_seed(5)
        )

    before_idx, before_scores = pick()
    labels = run.task.data.train_labels
    perm = unlabeled[torch.randperm(unlabeled.numel(), generator=torch.Generator().manual_seed(0))]
    labels[unlabeled] = labels[perm]
    labels[unlabeled] = (labels[unlabeled] + 1) % 4  # and make sure they really changed
    after_idx, after_scores = pick()
    assert torch.equal(before_idx, after_idx) and torch.allclose(before_scores, after_scores)


def test_samplers_receive_no_labels(smoke_cfg, tmp_path, monkeypatch):
    """By construction: scoring reads inputs only; the label tensor is never indexed while selecting."""
    run = ActiveLearningRun(smoke_cfg("sampler=entropy", "schedule.cycles=1"), tmp_path)
    run.run()

    class Exploding:
        def __getitem__(self, _):
            raise AssertionError("a label was read during selection")

    run.task.data.train_labels = Exploding()
    select(
        run.learner,
        run.task,
        run.sampler,
        run.pool.unlabeled_indices,
        run.pool.labeled_indices,
        10,
        None,
        64,
        torch.Generator(),
    )


def test_reinit_each_cycle_restarts_from_the_initial_weights(smoke_cfg, tmp_path, monkeypatch):
    seen = []
    real_train_cycle = cycle_mod.train_cycle

    def recording(learner, *args, **kwargs):
        seen.append(learner.model.block1[0].weight.detach().clone())
        return real_train_cycle(learner, *args, **kwargs)

    monkeypatch.setattr(cycle_mod, "train_cycle", recording)
    run_experiment(smoke_cfg("schedule.reinit_each_cycle=true"), tmp_path / "reinit")
    assert torch.equal(seen[0], seen[1])
    seen.clear()
    run_experiment(smoke_cfg(), tmp_path / "continue")
    assert not torch.equal(seen[0], seen[1])


def test_random_subset_limits_candidates():
    g = torch.Generator().manual_seed(0)
    unlabeled = torch.arange(100, 200)
    subset = loop_mod.draw_subset(unlabeled, 30, g)
    assert subset.numel() == 30 and set(subset.tolist()) <= set(unlabeled.tolist())
    assert torch.equal(loop_mod.draw_subset(unlabeled, None, g), unlabeled)
    picks, _ = RandomSampler().select(loop_mod.Candidates(count=len(subset)), 10, g)
    assert picks.max() < 30


def test_background_run_logs_training_progress(smoke_cfg, tmp_path, caplog):
    # no progress bar (progress=false, as in a launcher job): every 10 % of the epochs reaches the run's log
    import logging

    with caplog.at_level(logging.INFO, logger="al_runner.loop"):
        run_experiment(smoke_cfg("schedule.cycles=1", "progress=false"), tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "al_runner.loop" and r.levelno == logging.INFO]
    assert lines and lines[-1].startswith("cycle 0 epoch ") and "loss" in lines[-1]
    epochs = int(lines[-1].split()[3].split("/")[1])
    assert lines[-1].split()[3] == f"{epochs}/{epochs}"


def test_an_in_cycle_record_saved_before_train_seconds_existed_still_resumes():
    old = {"epochs_done": 3, "learner": {}, "optimizer": {}, "scheduler": None, "train_generator": torch.zeros(1)}
    progress = TrainingProgress.from_record(old)
    assert progress.epochs_done == 3 and progress.train_seconds == 0.0
    assert TrainingProgress.from_record(progress.to_record()) == progress

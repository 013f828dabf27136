"""al-label's rounds are al-run's cycles (`al_runner.cycle`): given the same labels, config and seed, a project's
rounds and a run's cycles train the same weights and pick the same images, round after round (the training and
selection generators are carried between rounds as al-run carries them between cycles)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from al_runner.labeling.commands import labeling_of
from al_runner.labeling.project import Labels, Project
from al_runner.runner import ActiveLearningRun
from tests.conftest import compose_config
from tests.test_label_files import CLASSES, annotate, write_csv, write_image_folder
from tests.test_label_files import run as al_label

K, ROUNDS = 8, 3  # picks per round; trained rounds compared with al-run's cycles
# Both sides: a width-8 CNN on 16 px images, 4 epochs a cycle, a subset M smaller than the unlabeled pool (so that
# selection draws from its generator too). Runtime keys whose al-run and al-label defaults differ are set.
SHARED = [
    "model.net.width=8",
    "schedule=smoke",
    "schedule.epochs=4",
    "schedule.batch_size=8",
    "schedule.subset_size=20",
    "runtime.threads=1",
    "runtime.channels_last=false",
    "progress=false",
]
# the config nodes that decide what a cycle computes: equal on both sides
COMPARED = ("model", "sampler", "runtime")
COMPARED_SCHEDULE = ("epochs", "batch_size", "eval_batch_size", "subset_size", "optimizer", "lr_scheduler")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """40 pool + 12 held-out 16 px PNGs of 4 classes; returns (folder, true class by path)."""
    return write_image_folder(tmp_path_factory.mktemp("cycle_images"), n_pool=40, n_held=12)


def label_rounds(tmp: Path, images, sampler: str) -> Project:
    """al-label with no initial labels: round 1 picks at random (al-run's initial set), then ROUNDS trained rounds,
    each after the scripted annotator labeled the previous round's picks."""
    root, truth = images
    tmp.mkdir()
    held = write_csv(tmp / "holdout.csv", [(p, c) for p, c in truth.items() if p.startswith("held/")])
    project = tmp / "project"
    overrides = [*SHARED, "task.image_size=16", f"sampler={sampler}"]
    init = ["init", project, "--images", root, "--holdout", held, "--classes", ",".join(CLASSES)]
    assert al_label(*init, *overrides)[0] == 0
    for number in range(1, ROUNDS + 2):
        code, _, err = al_label("next", project, "--k", str(K))
        assert code == 0, err
        if number <= ROUNDS:
            code, _, err = al_label("import", project, annotate(project, number, truth, tmp / f"round{number}.csv"))
            assert code == 0, err
    return Project(project)


def project_task(directory: str, truth: dict):
    """al-run's task for the comparison: the project's own task (same images, same normalisation), every pool
    image labeled with its true class (al-run's oracle)."""
    project = Project(Path(directory))
    labels = Labels({e.path: {"label": truth[e.path]} for e in project.pool}, project.labels().holdout)
    return labeling_of(project.config).build_task(project, labels)


def al_run(tmp: Path, project: Project, truth: dict[str, str], sampler: str) -> ActiveLearningRun:
    """al-run over the project's images: initial set K, query size K, one cycle per trained round."""
    sizes = [f"schedule.initial_size={K}", f"schedule.query_size={K}", f"schedule.cycles={ROUNDS}"]
    cfg = compose_config([*SHARED, f"sampler={sampler}", *sizes, f"paths.output={tmp}"])
    with open_dict(cfg):
        cfg.task.build = {"_target_": f"{__name__}.project_task", "directory": str(project.dir), "truth": truth}
    _check_same_cycle_config(cfg, project.config)
    run = ActiveLearningRun(cfg, tmp / "run")
    run.run()
    return run


def _check_same_cycle_config(run_cfg, label_cfg) -> None:
    plain = OmegaConf.to_container
    assert run_cfg.seed == label_cfg.seed
    for key in COMPARED:
        assert plain(run_cfg[key]) == plain(label_cfg[key]), key
    for key in COMPARED_SCHEDULE:
        assert plain(run_cfg.schedule)[key] == plain(label_cfg.schedule)[key], key


@pytest.mark.parametrize("sampler", ["learning_loss", "random"])
def test_label_rounds_train_and_pick_what_al_run_cycles_do(tmp_path, images, sampler, keep_torch_threads):
    project = label_rounds(tmp_path / "label", images, sampler)
    run = al_run(tmp_path / "al_run", project, images[1], sampler)

    rounds = project.rounds()
    for number, round_ in enumerate(rounds[:ROUNDS], start=1):  # round r picked what cycle r - 1 selected
        picked = [project.pool_index[p["path"]] for p in round_.picks]
        selected = [p for p in run.state.selected if p["cycle"] == number - 1]
        assert picked == [p["pool_index"] for p in selected], number
        assert [p["score"] for p in round_.picks] == [p["score"] for p in selected], number
    # trained round r + 1 evaluated what cycle r did; the last one trained the weights of al-run's last cycle
    assert [r.value for r in rounds[1:]] == [row["value"] for row in run.state.rows]
    carried = project.state()["learner"]
    for part in ("model", "loss_module"):
        expected, found = run.learner.state_dict()[part], carried["learner"][part]
        assert (expected is None) == (found is None), part
        for name, tensor in (expected or {}).items():
            assert torch.equal(tensor, found[name]), (part, name)


def test_a_killed_next_continues_its_round_and_picks_what_an_uninterrupted_one_does(
    tmp_path, images, monkeypatch, keep_torch_threads
):
    import al_runner.loop as loop_mod

    root, truth = images

    def project_with_one_labeled_round(name: str) -> Path:
        tmp = tmp_path / name
        tmp.mkdir()
        held = write_csv(tmp / "holdout.csv", [(p, c) for p, c in truth.items() if p.startswith("held/")])
        project = tmp / "project"
        overrides = [*SHARED, "task.image_size=16", "sampler=learning_loss", "checkpoint_minutes=0"]
        init = ["init", project, "--images", root, "--holdout", held, "--classes", ",".join(CLASSES)]
        assert al_label(*init, *overrides)[0] == 0
        assert al_label("next", project, "--k", str(K))[0] == 0  # round 1: at random
        assert al_label("import", project, annotate(project, 1, truth, tmp / "round1.csv"))[0] == 0
        return project

    full = project_with_one_labeled_round("full")
    assert al_label("next", full, "--k", str(K))[0] == 0
    assert not (full / "round_progress.pt").exists()  # removed once the round is committed

    killed = project_with_one_labeled_round("killed")
    real_epoch, epochs = loop_mod.train_one_epoch, []

    def dying_epoch(*args, **kwargs):
        if args[6] == 2:  # epoch 2 of 4
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "train_one_epoch", dying_epoch)
    code, _, err = al_label("next", killed, "--k", str(K))
    assert code == 130 and "interrupted" in err and "its training continues from its last save" in err
    assert (killed / "round_progress.pt").is_file() and len(Project(killed).rounds()) == 1

    def counting_epoch(*args, **kwargs):
        epochs.append(args[6])
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "train_one_epoch", counting_epoch)
    assert al_label("next", killed, "--k", str(K))[0] == 0
    assert epochs == [2, 3]  # epochs 0 and 1 are not trained again
    assert not (killed / "round_progress.pt").exists()
    uninterrupted, continued = Project(full).rounds()[-1], Project(killed).rounds()[-1]
    assert continued.picks == uninterrupted.picks and continued.value == uninterrupted.value
    assert continued.ranking_accuracy == uninterrupted.ranking_accuracy

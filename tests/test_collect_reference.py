"""scripts/collect_reference.py: the committed copy of a sweep keeps results, never checkpoints."""

from pathlib import Path

import pytest

from tests.conftest import load_script

collect_reference = load_script("collect_reference")


def fake_run(sweep: Path, name: str, sampler: str, *, finished_cycle: bool = True) -> Path:
    run = sweep / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"sampler:\n  name: {sampler}\nseed: 0\n")
    (run / "checkpoint.pt").write_bytes(b"weights")
    (run / "run.lock").write_text("")
    if finished_cycle:
        for file in ("cycles.csv", "selected.csv", "test_scores.csv"):
            (run / file).write_text(f"{file}\n")
    return run


def test_copies_results_and_learning_loss_test_scores_only(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "reference"
    fake_run(sweep, "ll", "learning_loss")
    fake_run(sweep, "rnd", "random")
    fake_run(sweep, "running", "entropy", finished_cycle=False)
    (sweep / "sweep.csv").write_text("job\n")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    assert collect_reference.main([str(sweep), str(dest)]) == 0
    assert sorted(p.name for p in (dest / "ll").iterdir()) == [
        "config.yaml",
        "cycles.csv",
        "selected.csv",
        "test_scores.csv",
    ]
    assert sorted(p.name for p in (dest / "rnd").iterdir()) == ["config.yaml", "cycles.csv", "selected.csv"]
    assert not (dest / "running").exists()  # no cycle finished yet: nothing to publish
    assert (dest / "sweep.csv").is_file() and (dest / "multirun.yaml").is_file()  # the sweep's outcome and plan
    (sweep / "ll" / "cycles.csv").write_text("cycles.csv\nnew row\n")  # re-running refreshes a partial copy
    collect_reference.main([str(sweep), str(dest)])
    assert (dest / "ll" / "cycles.csv").read_text().endswith("new row\n")


def test_missing_sweep_dir_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no such sweep directory"):
        collect_reference.main([str(tmp_path / "nope"), str(tmp_path / "dest")])


def test_unfinished_runs_are_left_out_unless_asked_for(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "reference"
    for name, n_cycles in (("done", 2), ("going", 1)):
        run = fake_run(sweep, name, "random")
        (run / "config.yaml").write_text("sampler:\n  name: random\nschedule:\n  cycles: 2\n")
        (run / "cycles.csv").write_text("cycle,value\n" + "".join(f"{c},0.5\n" for c in range(n_cycles)))
    collect_reference.main([str(sweep), str(dest)])
    assert (dest / "done" / "cycles.csv").is_file() and not (dest / "going").exists()
    collect_reference.main([str(sweep), str(dest), "--include-unfinished"])
    assert (dest / "going" / "cycles.csv").is_file()


def test_logs_are_copied_only_when_asked(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "reference"
    (fake_run(sweep, "rnd", "random") / "al-run.log").write_text("cycle 0 epoch 1/2 loss 1.0\n")
    collect_reference.main([str(sweep), str(dest)])
    assert not (dest / "rnd" / "al-run.log").exists()
    collect_reference.main([str(sweep), str(dest), "--logs"])
    assert (dest / "rnd" / "al-run.log").read_text() == "cycle 0 epoch 1/2 loss 1.0\n"


def test_a_collected_run_whose_results_did_not_change_is_left_as_committed(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "reference"
    run = fake_run(sweep, "rnd", "random")
    (run / "al-run.log").write_text("cycle 0 ...\n")
    collect_reference.main([str(sweep), str(dest), "--logs"])
    with open(run / "al-run.log", "a") as log:  # a relaunched sweep skips the run and says so in its log
        log.write("run in rnd already finished; nothing to do\n")
    collect_reference.main([str(sweep), str(dest), "--logs"])
    assert (dest / "rnd" / "al-run.log").read_text() == "cycle 0 ...\n"


def test_a_run_committed_without_its_log_gets_no_log_of_relaunches(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "reference"
    run = fake_run(sweep, "rnd", "random")
    collect_reference.main([str(sweep), str(dest)])  # collected without --logs
    (run / "al-run.log").write_text("run in rnd already finished; nothing to do\n")  # a relaunch skipped it
    collect_reference.main([str(sweep), str(dest), "--logs"])
    assert not (dest / "rnd" / "al-run.log").exists()
    (run / "cycles.csv").write_text((run / "cycles.csv").read_text() + "\n")  # its results changed: copied whole
    collect_reference.main([str(sweep), str(dest), "--logs"])
    assert (dest / "rnd" / "al-run.log").is_file()


def test_runs_only_leaves_the_committed_plan_and_outcome_alone(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "reference"
    fake_run(sweep, "rnd", "random")
    (sweep / "sweep.csv").write_text("job\n")
    (sweep / "multirun.yaml").write_text("hydra: {relaunched: true}\n")
    dest.mkdir()
    (dest / "multirun.yaml").write_text("hydra: {plan: committed}\n")
    collect_reference.main([str(sweep), str(dest), "--runs-only"])
    assert (dest / "rnd" / "cycles.csv").is_file()
    assert (dest / "multirun.yaml").read_text() == "hydra: {plan: committed}\n" and not (dest / "sweep.csv").exists()

"""al_runner.sweep_status (`al-run --status`): a sweep's runs read from their folders, in the formats al-run writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from al_runner import cli, rundir, schema
from al_runner.runlock import LOCK_FILE, STALE_AFTER_S, RunLock, lock_holder
from al_runner.sweep_status import report, sweep_status

CYCLE_SECONDS = (100.0, 200.0, 300.0)  # train_s of cycles 0, 1, 2 in every finished cycle below (eval, select 0)


def write_plan(sweep: Path, seeds: str, samplers: str) -> None:
    """multirun.yaml as Hydra writes it for `al-run -m seed=... sampler=...`."""
    plan = {"hydra": {"sweeper": {"params": None}, "overrides": {"task": [f"seed={seeds}", f"sampler={samplers}"]}}}
    OmegaConf.save(OmegaConf.create(plan), sweep / "multirun.yaml")


def write_run(
    sweep: Path, sampler: str, seed: int, cycles_done: int, log: list[str] = (), tag: str = "0123456789", scale=1
) -> Path:
    """A run folder as al-run leaves it; `tag` stands for the config hash, `scale` multiplies its cycle times."""
    run_dir = sweep / f"synthetic-small_cnn-{sampler}-seed{seed}-{tag}"
    run_dir.mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({"seed": seed, "sampler": {"name": sampler}, "schedule": {"cycles": 3}}),
        run_dir / "config.yaml",
    )
    rows = [
        {
            **dict.fromkeys(schema.CYCLE_COLUMNS, ""),
            "sampler": sampler,
            "seed": seed,
            "cycle": c,
            "value": 0.5,
            "train_s": CYCLE_SECONDS[c] * scale,
            "eval_s": 0.0,
            "select_s": 0.0,
        }
        for c in range(cycles_done)
    ]
    if rows:
        rundir.write_csv(run_dir / schema.CYCLES_CSV, schema.CYCLE_COLUMNS, rows)
    stamp = "[2026-12-07 19:00:00,000][al_runner.loop][INFO] - "
    (run_dir / "al-run.log").write_text("".join(f"{stamp}{line}\n" for line in log))
    return run_dir


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def sweep(tmp_path):
    """seeds 0-2 x random, entropy: one finished, one running (this process holds its lock), one stopped with an
    in-cycle save, one left by a dead process, two not started."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_plan(sweep, "0,1,2", "random,entropy")
    write_run(sweep, "random", 0, 3)
    running = write_run(
        sweep,
        "entropy",
        0,
        1,
        ["run directory: x", "cycle 1 epoch 40/200 loss 0.5", "cycle 1 epoch 50/200 loss 0.4"],
    )
    stopped = write_run(
        sweep,
        "random",
        1,
        2,
        [
            "cycle 1 epoch 200/200 loss 0.1",
            "cycle 2: progress saved after epoch 120 (checkpoint_in_cycle.pt)",
            "cycle 2 epoch 140/200 loss 0.2",
        ],
    )
    (stopped / schema.IN_CYCLE_CHECKPOINT).write_bytes(b"")
    with RunLock(stopped):
        pass  # released
    # a process stopped at epoch 20 of cycle 0 left no save; it was started again and has not logged an epoch yet
    dead = write_run(sweep, "entropy", 1, 0, ["run directory: x", "cycle 0 epoch 20/200 loss 1.0", "run directory: x"])
    record = {"host": socket.gethostname(), "pid": dead_pid(), "slurm_job": None, "started": "2026-12-07 18:00:00"}
    (dead / LOCK_FILE).write_text(json.dumps(record))  # a SIGKILLed run's lock: never released
    with RunLock(running):
        yield sweep


def test_each_run_is_finished_running_stopped_or_not_started(sweep):
    status = sweep_status(sweep)
    text = report(status, now=0.0)
    assert "(the plan: multirun.yaml): 6 runs: 1 finished, 1 running, 2 stopped, 2 not started" in text
    assert f"entropy seed 0: cycle 1 of 3, epoch 50/200 (pid {os.getpid()} on {socket.gethostname()}" in text
    assert "random seed 1: cycle 2 of 3, epoch 140/200; resumes after epoch 120 of cycle 2 (its in-cycle save)" in text
    assert "entropy seed 1: cycle 0 of 3; resumes at the start of cycle 0" in text
    assert "not started: seed 2 (all samplers)" in text


def test_time_left_adds_the_finished_runs_cycle_times_for_what_remains(sweep):
    # entropy seed 0 (running, epoch 50/200 of cycle 1): 0.75 x 200 + 300; random seed 1 (stopped, saved after
    # epoch 120 of cycle 2: the restart redoes from there): 0.4 x 300; entropy seed 1: 600; seed 2: 2 x 600
    assert sweep_status(sweep).seconds_left() == pytest.approx(450 + 120 + 600 + 1200)
    assert "about 40 min of run time (the finished runs' median cycle times); at 1 run(s) at once" in report(
        sweep_status(sweep), now=0.0
    )


def test_consecutive_seeds_missing_the_same_samplers_are_one_range(tmp_path):
    write_plan(tmp_path, "range(5,12)", "random,entropy")
    write_run(tmp_path, "random", 5, 3)
    write_run(tmp_path, "random", 8, 3)
    text = report(sweep_status(tmp_path))
    assert (
        "not started: seed 5 (entropy); seeds 6–7 (all samplers); seed 8 (entropy); seeds 9–11 (all samplers)" in text
    )


def test_no_estimate_before_a_run_finished_and_a_folder_without_runs_is_refused(tmp_path):
    write_plan(tmp_path, "0", "random")
    assert "time left: no finished run yet" in report(sweep_status(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="holds no run"):
        sweep_status(empty)


def test_lock_holder_reads_only_a_live_owner(tmp_path):
    with RunLock(tmp_path) as lock:
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        assert lock_holder(tmp_path, now=time.time() + STALE_AFTER_S + 1) is None  # no heartbeat for too long
        with pytest.raises(Exception, match="in use"):
            RunLock(tmp_path).acquire()  # reading it took no lock: the holder still holds it alone
    assert lock_holder(tmp_path) is None  # released
    lock.path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid()}))
    assert lock_holder(tmp_path) is None  # its process is gone
    lock.path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1}))
    assert lock_holder(tmp_path)["host"] == "node-elsewhere"  # another host: its fresh heartbeat says it runs


def test_al_run_status_prints_the_report_or_one_line_errors(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["al-run", "--status", str(sweep)])
    cli.main()
    assert "1 finished, 1 running, 2 stopped, 2 not started" in capsys.readouterr().out
    for argv, expected in (
        (["--status", str(tmp_path / "nowhere")], "is not a folder"),
        (["--status", str(sweep), "seed=1"], r"--status takes one sweep folder \(and --json\) and nothing else"),
    ):
        monkeypatch.setattr(sys, "argv", ["al-run", *argv])
        with pytest.raises(SystemExit, match=expected):
            cli.main()


def test_a_single_runs_folder_reads_as_a_sweep_of_that_run(sweep):
    (run,) = sweep.glob("*entropy-seed0*")
    text = report(sweep_status(run))
    assert "1 run: 0 finished, 1 running, 0 stopped, 0 not started" in text
    assert "entropy seed 0: cycle 1 of 3, epoch 50/200" in text


def write_platform(run_dir: Path, cpu: str) -> None:
    (run_dir / schema.PLATFORM_FILE).write_text(json.dumps({"device": "cpu", "cpu_model": cpu, "precision": "fp32"}))


def test_runs_made_on_another_cpu_are_named(sweep, monkeypatch):
    from al_runner import sweep_status as module

    monkeypatch.setattr(module, "cpu_model", lambda: "This CPU")
    (finished,) = sweep.glob("*random-seed0*")
    (running,) = sweep.glob("*entropy-seed0*")
    (stopped,) = sweep.glob("*random-seed1*")
    write_platform(finished, "AMD EPYC")
    write_platform(running, "This CPU")
    write_platform(stopped, "AMD EPYC")
    text = report(sweep_status(sweep))
    assert "(its in-cycle save); made on AMD EPYC: a resume on this machine (This CPU) is refused" in text
    assert (
        "seeds whose runs were made on different CPU types" in text
        and "seed 0 (AMD EPYC: random, This CPU: entropy)" in text
    )
    write_platform(running, "AMD EPYC")
    monkeypatch.setattr(module, "cpu_model", lambda: "AMD EPYC")
    text = report(sweep_status(sweep))
    assert "made on" not in text and "different CPU types" not in text


def test_a_folder_that_cannot_be_read_is_named_and_the_others_still_reported(sweep):
    broken = sweep / "synthetic-small_cnn-margin-seed0-0123456789"
    broken.mkdir()
    (broken / "config.yaml").write_text("seed: [unclosed\n")
    (broken / "cycles.csv").write_text("cycle,value\n")
    text = report(sweep_status(sweep))
    assert "1 finished, 1 running, 2 stopped, 2 not started" in text
    assert "not readable (left out above):\n  synthetic-small_cnn-margin-seed0-0123456789: " in text


def test_json_gives_the_same_reading(sweep, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["al-run", "--status", str(sweep), "--json"])
    cli.main()
    record = json.loads(capsys.readouterr().out)
    states = {(run["sampler"], run["seed"]): run["state"] for run in record["runs"]}
    assert states == {
        ("random", "0"): "finished",
        ("entropy", "0"): "running",
        ("random", "1"): "stopped",
        ("entropy", "1"): "stopped",
    }
    stopped = next(run for run in record["runs"] if (run["sampler"], run["seed"]) == ("random", "1"))
    assert (stopped["cycles_done"], stopped["epoch"], stopped["saved_epoch"]) == (2, [140, 200], 120)
    assert record["not_started"] == [{"sampler": "random", "seed": "2"}, {"sampler": "entropy", "seed": "2"}]
    assert record["seconds_left"] == pytest.approx(450 + 120 + 600 + 1200)


def test_a_folder_of_sweeps_gets_an_overview(sweep, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    other.mkdir()
    write_plan(other, "0", "random")
    (tmp_path / "notes").mkdir()  # neither a run nor a sweep: left out
    monkeypatch.setattr(sys, "argv", ["al-run", "--status", str(tmp_path)])
    cli.main()
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path}: 2 sweep(s)")
    assert f"  {other}: 1 run: 0 finished, 0 running, 0 stopped, 1 not started" in out
    assert f"  {sweep}: 6 runs: 1 finished, 1 running, 2 stopped, 2 not started" in out
    monkeypatch.setattr(sys, "argv", ["al-run", "--status", str(tmp_path), "--json"])
    cli.main()
    assert [record["sweep_dir"] for record in json.loads(capsys.readouterr().out)] == [str(other), str(sweep)]


def test_a_sweep_over_another_key_lists_each_arm_and_what_it_has_not_started(tmp_path):
    """`runtime.amp=false,true` (as scripts/bf16_parity.py sweeps): 2 samplers × 1 seed × 2 precisions = 4 runs;
    each run is named with its precision and the time left uses its own arm's cycle times."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    plan = {
        "hydra": {
            "sweeper": {"params": None},
            "overrides": {"task": ["seed=0", "sampler=random,entropy", "runtime.amp=false,true", "name=parity"]},
        }
    }
    OmegaConf.save(OmegaConf.create(plan), sweep / "multirun.yaml")
    for amp, scale in ((False, 3), (True, 1)):  # fp32 cycles take 3x as long as bf16 ones here
        run_dir = write_run(sweep, "random", 0, 3, tag=f"amp{amp}", scale=scale)
        config = OmegaConf.load(run_dir / "config.yaml")
        config.runtime = {"amp": amp}
        OmegaConf.save(config, run_dir / "config.yaml")
    status = sweep_status(sweep)
    assert status.counts() == "4 runs: 2 finished, 0 running, 0 stopped, 2 not started"
    assert sorted(run.name() for run in status.runs) == [
        "random seed 0 [runtime.amp=false]",
        "random seed 0 [runtime.amp=true]",
    ]
    assert status.not_started == [("entropy", "0", "runtime.amp=false"), ("entropy", "0", "runtime.amp=true")]
    assert "not started: [runtime.amp=false] seed 0 (entropy); [runtime.amp=true] seed 0 (entropy)" in report(status)
    # entropy has no finished run: each arm's time stands in (fp32 1,800 s, bf16 600 s), not their mean twice
    assert status.seconds_left() == pytest.approx(600.0 * 3 + 600.0 * 1)


def test_a_swept_config_group_is_read_by_its_name_and_an_unreadable_key_lists_nothing_as_not_started(tmp_path):
    """`model=a,b` arms come from each run's model.name; a swept key no run's config holds cannot be matched, so
    nothing is claimed "not started"."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    plan = {"hydra": {"sweeper": {"params": None}, "overrides": {"task": ["seed=0", "sampler=random", "model=a,b"]}}}
    OmegaConf.save(OmegaConf.create(plan), sweep / "multirun.yaml")
    run_dir = write_run(sweep, "random", 0, 3)
    config = OmegaConf.load(run_dir / "config.yaml")
    config.model = {"name": "a"}
    OmegaConf.save(config, run_dir / "config.yaml")
    status = sweep_status(sweep)
    assert [run.name() for run in status.runs] == ["random seed 0 [model=a]"]
    assert status.not_started == [("random", "0", "model=b")]
    plan["hydra"]["overrides"]["task"].append("+extra.knob=1,2")
    OmegaConf.save(OmegaConf.create(plan), sweep / "multirun.yaml")
    status = sweep_status(sweep)
    assert status.runs[0].name() == "random seed 0 [model=a, extra.knob=?]" and status.not_started == []


def test_time_left_uses_the_median_cycle_times_of_runs_made_on_this_cpu(tmp_path, monkeypatch):
    from al_runner import sweep_status as module

    monkeypatch.setattr(module, "cpu_model", lambda: "This CPU")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_plan(sweep, "0,1,2,3,4", "random")
    for seed, scale in ((0, 1), (1, 1), (2, 50)):  # seed 2 was paused for hours: its times are not the machine's
        write_platform(write_run(sweep, "random", seed, 3, tag=f"{seed}" * 10, scale=scale), "This CPU")
    write_platform(write_run(sweep, "random", 3, 3, tag="3" * 10, scale=5), "Other CPU")  # a slower CPU type
    status = sweep_status(sweep)
    assert status.seconds_left("This CPU") == pytest.approx(sum(CYCLE_SECONDS))  # seed 4, at this CPU's median
    assert "(the finished runs' median cycle times, on this This CPU)" in report(status, now=0.0)
    # no run finished on this CPU yet: every finished run counts (median of scales 1, 1, 5, 50 -> 3)
    monkeypatch.setattr(module, "cpu_model", lambda: "Third CPU")
    assert status.seconds_left("Third CPU") == pytest.approx(3 * sum(CYCLE_SECONDS))
    assert "(the finished runs' median cycle times); at" in report(status, now=0.0)

"""Experiment tracking (logger=tensorboard / mlflow / wandb): what each tracker wrote, read back with the library's own
reader (TensorBoard's EventAccumulator, the MLflow client, W&B's offline run files), equals the run's CSVs and log;
a sweep is one TensorBoard folder / MLflow experiment / W&B group; a resumed run continues the same tracked run; the
logger never changes a run's directory; a tracker whose package is missing is refused in one line."""

from __future__ import annotations

import csv
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_config

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "task=synthetic",
    "model=small_cnn",
    "schedule=smoke",
    "model.net.width=8",
    "progress=false",
    "runtime.threads=1",
    "name=tracked",
    "hydra.callbacks.sweep_summary.statistics=false",
]
SWEEP = ["-m", *TINY, "sampler=random,learning_loss", "logger=many_loggers"]
EPOCH_LINE = re.compile(r"cycle (\d+) epoch (\d+)/(\d+) loss (\S+)")


def al_run_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "al_runner", *SWEEP, f"paths.output={out}"]


def env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **extra}


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory):
    """A sweep of 2 runs with every tracker; the second run is killed in its last cycle and resumed by a rerun."""
    pytest.importorskip("tensorboard"), pytest.importorskip("mlflow"), pytest.importorskip("wandb")
    out = tmp_path_factory.mktemp("tracked")
    # one process runs both jobs (Hydra's basic launcher): the 4th checkpoint write is the second run's last cycle
    victim = subprocess.Popen(
        al_run_command(out),
        cwd=REPO,
        env=env(AL_RUNNER_STALL_WRITE="checkpoint.pt:4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not list((out / "tracked").glob("*/checkpoint.pt.stalled")):
        assert victim.poll() is None and time.time() < deadline, victim.communicate()[1][-3000:]
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rerun = subprocess.run(al_run_command(out), cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "sweep: 2 job(s): 1 resumed, 1 skipped" in rerun.stdout
    runs = {}
    for run_dir in sorted((out / "tracked").glob("*/cycles.csv")):
        run_dir = run_dir.parent
        sampler = read_csv(run_dir / "cycles.csv")[0]["sampler"]
        epochs = {}
        for match in EPOCH_LINE.finditer((run_dir / "al-run.log").read_text()):
            cycle, epoch, n = (int(g) for g in match.groups()[:3])
            epochs[cycle * n + epoch - 1] = float(match.group(4))
        runs[sampler] = {
            "dir": run_dir,
            "cycles": read_csv(run_dir / "cycles.csv"),
            "epoch_loss": epochs,
            "selected": read_csv(run_dir / "selected.csv"),
        }
    assert set(runs) == {"random", "learning_loss"}
    return out, runs


def picks_per_cycle(selected: list[dict]) -> dict[int, Counter]:
    """The class histogram of the points selected in cycle c (labeled at the start of cycle c + 1)."""
    picks: dict[int, Counter] = {}
    for row in selected:
        if int(row["cycle"]) > 0 and row["classes"]:
            picks.setdefault(int(row["cycle"]) - 1, Counter()).update(row["classes"].split("|"))
    return picks


def expected_cycle_metrics(run: dict) -> dict[str, dict[int, float]]:
    expected: dict[str, dict[int, float]] = {}
    for row in run["cycles"]:
        c = int(row["cycle"])
        expected.setdefault("cycle/n_labeled", {})[c] = float(row["n_labeled"])
        expected.setdefault(f"cycle/{row['metric']}", {})[c] = float(row["value"])
        if row["ranking_accuracy"]:
            expected.setdefault("cycle/ranking_accuracy", {})[c] = float(row["ranking_accuracy"])
    for c, histogram in picks_per_cycle(run["selected"]).items():
        for name, count in histogram.items():
            expected.setdefault(f"picks/{name}", {})[c] = float(count)
    return expected


def test_the_logger_never_changes_a_run_directory():
    base = ["task=synthetic", "model=small_cnn", "schedule=smoke", "runtime.threads=1"]
    dirs = {
        logger: str(
            OmegaConf.select(compose_config([*base, f"logger={logger}"], return_hydra_config=True), "hydra.run.dir")
        )
        for logger in ("csv", "tensorboard", "mlflow", "wandb", "many_loggers", "[tensorboard,mlflow]")
    }
    assert len(set(dirs.values())) == 1, dirs


def test_a_tracker_whose_package_is_missing_is_refused_in_one_line_naming_the_extra(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None  # as if not installed\n")
    result = subprocess.run(
        [sys.executable, "-m", "al_runner", *TINY, "logger=[tensorboard,wandb]", f"paths.output={tmp_path / 'out'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env(PYTHONPATH=f"{hide}{os.pathsep}{REPO}"),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "al-run: error: logger=wandb needs the wandb package, which is not installed: pip install '.[tracking]'"
    )
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # refused before anything was written


@pytest.mark.slow
def test_tensorboard_holds_the_csv_values_one_folder_per_sweep(tracked_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, runs = tracked_sweep
    board = out / "tracked" / "tensorboard"
    assert sorted(p.name for p in board.iterdir()) == sorted(run["dir"].name for run in runs.values())
    for sampler, run in runs.items():
        events = EventAccumulator(str(board / run["dir"].name), size_guidance={"scalars": 0, "images": 0}).Reload()
        tags = events.Tags()["scalars"]
        for tag, values in expected_cycle_metrics(run).items():
            logged = {e.step: e.value for e in events.Scalars(tag)}
            assert logged == pytest.approx(values, rel=1e-6), (sampler, tag)
        # every epoch's mean loss, as the run's log has it (4 decimals), at step cycle x epochs + epoch; a resumed
        # run logs its redone epochs again, with the same values
        for event in events.Scalars("train/loss"):
            assert round(event.value, 4) == pytest.approx(run["epoch_loss"][event.step], abs=1.5e-4), (sampler, event)
        assert {e.step for e in events.Scalars("train/loss")} == set(run["epoch_loss"])
        assert events.Scalars("train/lr")[0].value == pytest.approx(0.01)  # schedule=smoke's SGD lr
        if sampler == "learning_loss":
            module = {e.step: e.value for e in events.Scalars("train/module_loss")}
            target = {e.step: e.value for e in events.Scalars("train/target_loss")}
            for e in events.Scalars("train/loss"):
                assert module[e.step] + target[e.step] == pytest.approx(e.value, rel=1e-5)
        else:
            assert "train/module_loss" not in tags
        assert any(tag.startswith("figures/") for tag in events.Tags()["images"])


@pytest.mark.slow
def test_mlflow_holds_the_csv_values_one_experiment_per_sweep_and_the_resumed_run_is_the_same_run(tracked_sweep):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    out, runs = tracked_sweep
    client = MlflowClient(tracking_uri=f"file:{out / 'mlruns'}")
    experiment = client.get_experiment_by_name("tracked")
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in found) == sorted(run["dir"].name for run in runs.values())  # 2, not 3
    for sampler, run in runs.items():
        (tracked,) = [r for r in found if r.info.run_name == run["dir"].name]
        assert tracked.info.status == "FINISHED"
        assert tracked.data.params["run_dir"] == run["dir"].name and tracked.data.params["sampler.name"] == sampler
        assert tracked.data.params["schedule.epochs"] == "2" and tracked.data.params["seed"] == "0"
        for key, values in expected_cycle_metrics(run).items():
            history = {m.step: m.value for m in client.get_metric_history(tracked.info.run_id, key)}
            assert history == pytest.approx(values, rel=1e-12), (sampler, key)
        losses = client.get_metric_history(tracked.info.run_id, "train/loss")
        assert {m.step for m in losses} == set(run["epoch_loss"])
        for m in losses:
            assert m.value == pytest.approx(run["epoch_loss"][m.step], abs=5e-5)
        assert [a.path for a in client.list_artifacts(tracked.info.run_id, "figures")]
    learning_loss = [r for r in found if r.data.params["sampler.name"] == "learning_loss"][0]
    assert runs["learning_loss"]["dir"].joinpath("tracking.json").read_text().count(learning_loss.info.run_id) == 1


def wandb_records(path: Path):
    """The protobuf records of a W&B offline run file (W&B's leveldb-log framing: 7-byte file header, 32 KiB blocks,
    7-byte record headers; FULL / FIRST / MIDDLE / LAST chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length == 0 and kind == 0):
            position += left
            continue
        payload, position = data[position + 7 : position + 7 + length], position + 7 + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


@pytest.mark.slow
def test_wandb_offline_runs_hold_the_csv_values_one_group_per_sweep_and_a_resume_keeps_the_run_id(tracked_sweep):
    import json

    out, runs = tracked_sweep
    for sampler, run in runs.items():
        run_id = json.loads((run["dir"] / "tracking.json").read_text())["wandb_run_id"]
        files = sorted((out / "tracked" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
        assert len(files) == (2 if sampler == "learning_loss" else 1)  # the resumed run: the same W&B run id
        cycles: dict[str, dict[int, float]] = {}
        for path in files:
            for record in wandb_records(path):
                kind = record.WhichOneof("record_type")
                if kind == "run":
                    assert (record.run.run_id, record.run.run_group, record.run.display_name) == (
                        run_id,
                        "tracked",
                        run["dir"].name,
                    )
                if kind == "history":
                    # W&B keeps a key with "/" as its parts (nested_key) in the record
                    items = {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                    if "cycle" in items:
                        for key, value in items.items():
                            if key.startswith(("cycle/", "picks/")):
                                cycles.setdefault(key, {})[items["cycle"]] = value
        expected = expected_cycle_metrics(run)
        logged_cycles = set(cycles["cycle/n_labeled"])
        # the killed attempt's file holds nothing (W&B's offline writer had not flushed it; TensorBoard and MLflow
        # write through): the resumed attempt's cycle is there, and an uninterrupted run has every cycle
        assert 1 in logged_cycles and (sampler == "learning_loss" or logged_cycles == {0, 1})
        wanted = {k: {c: v for c, v in values.items() if c in logged_cycles} for k, values in expected.items()}
        assert {k: v for k, v in wanted.items() if v} == {k: v for k, v in cycles.items() if k in expected}

"""Experiment tracking: a run's progress in TensorBoard, MLflow and W&B, beside the CSVs (always written).

The `logger` config group (conf/logger/, after lightning-hydra-template's configs/logger) selects the trackers:
`logger=csv` (the default: the CSVs only, nothing here is imported), `logger=tensorboard`, `logger=mlflow`,
`logger=wandb`, several at once with `logger=[tensorboard,mlflow]` or `logger=many_loggers`. Each composed entry
under `logger:` is one tracker with a `_target_` (a class below) and its settings; `csv` has none.

What every tracker gets (docs/tracking.md):
- the run's identity: the run directory's name as the run's name, the resolved config (flattened) as parameters;
- per epoch (step = cycle x epochs + epoch): `train/loss` (the optimised total), `train/target_loss` (the task's
  loss), `train/module_loss` (λ x the loss-prediction module's objective; absent without a module) and `train/lr`;
- per cycle (step = cycle): `cycle/n_labeled`, `cycle/<metric>`, `cycle/ranking_accuracy`, `cycle/select_s`,
  and `picks/<class>`: how many of the points selected in that cycle carry each class (from selected.csv);
- at the end, the run's figures (al-plot on the run directory) as artifacts.
A resumed run continues the same tracked run (the same TensorBoard folder, MLflow run id, W&B run id), and a sweep
is one TensorBoard folder / MLflow experiment / W&B group (all named by the sweep's `name`).
A tracker whose package is missing is refused when the run is built, in one line naming `pip install .[tracking]`.
Selecting trackers never changes a run's identity (`logger` is not part of the comparable config).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from al_runner.atomic import atomic_write_text
from al_runner.errors import ConfigError
from al_runner.schema import CLASSES_SEPARATOR

log = logging.getLogger(__name__)

EXTRA = "pip install '.[tracking]'"
STATE_FILE = "tracking.json"  # in the run directory: the ids a resumed run continues


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list):
        return {prefix.rstrip("."): json.dumps(node)}
    return {prefix.rstrip("."): node}


def run_params(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The run's identity as parameters: its directory and the resolved config, flattened (without `hydra`)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    params = {"run_dir": run_dir.name, **flatten(container)}
    return {k: ("null" if v is None else v) for k, v in params.items()}


class Tracker:
    """One tracker; subclasses log to one library. `module` names the package the tracker needs."""

    module = ""
    package = ""

    def __init__(self, **settings: Any):
        self.settings = settings

    def start(self, run_dir: Path, params: dict, state: dict, sweep: str) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_artifacts(self, folder: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    module, package = "tensorboard", "tensorboard"

    def start(self, run_dir, params, state, sweep):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(self.settings["save_dir"]) / run_dir.name  # one folder per sweep, one sub-folder per run
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        if not state.get("tensorboard_started"):
            self.writer.add_text("run/config", "\n".join(f"    {k}: {v}" for k, v in params.items()))
        state["tensorboard_started"] = True
        state["tensorboard_dir"] = str(self.log_dir)

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_artifacts(self, folder):
        import matplotlib.image

        for image in sorted(folder.glob("*.png")):
            self.writer.add_image(f"figures/{image.stem}", matplotlib.image.imread(image)[..., :3], dataformats="HWC")
        self.writer.flush()

    def close(self):
        self.writer.close()


class MLflowTracker(Tracker):
    module, package = "mlflow", "mlflow-skinny"

    def start(self, run_dir, params, state, sweep):
        import os

        uri = str(self.settings["tracking_uri"])
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked: a local store is the
            # default here (no server, no database), so ask
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        name = str(self.settings.get("experiment_name") or sweep)
        experiment_id = self._experiment_id(name)
        run_id = state.get("mlflow_run_id")
        if run_id is None:
            run = self.client.create_run(experiment_id, run_name=run_dir.name, tags={"al_runner.run_dir": str(run_dir)})
            run_id = run.info.run_id
            from mlflow.entities import Param

            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i : i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = state["mlflow_run_id"] = run_id

    def _experiment_id(self, name: str) -> str:
        """The sweep's experiment; jobs running at once may both try to create it: the loser takes the winner's."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            return self.client.get_experiment_by_name(name).experiment_id

    def log_metrics(self, metrics, step):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifacts(self, folder):
        self.client.log_artifacts(self.run_id, str(folder), artifact_path="figures")

    def close(self):
        self.client.set_terminated(self.run_id)


class WandbTracker(Tracker):
    module, package = "wandb", "wandb"

    def start(self, run_dir, params, state, sweep):
        import wandb

        run_id = state.get("wandb_run_id") or hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
        save_dir = Path(self.settings["save_dir"])
        save_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=str(self.settings.get("project") or "al_runner"),
            group=sweep,
            name=run_dir.name,
            id=run_id,
            resume="allow",
            dir=str(save_dir),
            mode=str(self.settings.get("mode") or "offline"),
            config=params,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        state["wandb_run_id"] = run_id
        self.run.define_metric("epoch")  # the x axis of train/* (cycle x epochs + epoch)
        self.run.define_metric("cycle")
        self.run.define_metric("train/*", step_metric="epoch")
        self.run.define_metric("cycle/*", step_metric="cycle")
        self.run.define_metric("picks/*", step_metric="cycle")

    def log_metrics(self, metrics, step):
        axis = "epoch" if all(key.startswith("train/") for key in metrics) else "cycle"
        self.run.log({**metrics, axis: step})

    def log_artifacts(self, folder):
        import wandb

        artifact = wandb.Artifact(f"figures-{self.run.id}", type="figures")
        artifact.add_dir(str(folder))
        self.run.log_artifact(artifact)

    def close(self):
        self.run.finish()


def _entries(cfg: DictConfig) -> dict[str, DictConfig]:
    loggers = cfg.get("logger") or {}
    return {name: node for name, node in loggers.items() if node is not None and node.get("_target_")}


def check_available(cfg: DictConfig) -> None:
    """Refuse, in one line, a selected tracker whose package is not installed."""
    for name, node in _entries(cfg).items():
        cls = _tracker_class(str(node._target_))
        try:
            importlib.import_module(cls.module)
        except ImportError:
            raise ConfigError(
                f"logger={name} needs the {cls.package} package, which is not installed: {EXTRA}"
            ) from None


def _tracker_class(target: str) -> type[Tracker]:
    module, _, name = target.rpartition(".")
    if module != __name__ or not isinstance(globals().get(name), type) or not issubclass(globals()[name], Tracker):
        raise ConfigError(f"logger _target_ {target} is not a tracker of {__name__}")
    return globals()[name]


class Tracking:
    """The selected trackers of one run, driven by the runner; does nothing when only the CSVs are selected."""

    def __init__(self, cfg: DictConfig):
        check_available(cfg)
        self.cfg = cfg
        self.trackers: list[Tracker] = []
        for node in _entries(cfg).values():
            settings = OmegaConf.to_container(node, resolve=True)
            self.trackers.append(_tracker_class(str(settings.pop("_target_")))(**settings))
        self.module_losses: list = []
        self.run_dir: Path | None = None

    @property
    def active(self) -> bool:
        return bool(self.trackers)

    def start(self, run_dir: Path, learning_loss) -> None:
        if not self.active:
            return
        self.run_dir = Path(run_dir)
        state_path = self.run_dir / STATE_FILE
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        params = run_params(self.cfg, self.run_dir)
        for tracker in self.trackers:
            tracker.start(self.run_dir, params, state, str(self.cfg.name))

        atomic_write_text(state_path, json.dumps(state, indent=1))
        if learning_loss is not None:  # record the module's term of each batch (read once per epoch)
            original = learning_loss.loss

            def recorded(*args, **kwargs):
                value = original(*args, **kwargs)
                self.module_losses.append(value.detach())
                return value

            learning_loss.loss = recorded

    def _log(self, metrics: dict[str, float], step: int) -> None:
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step)

    def epoch_callback(self, cycle: int, epochs: int):
        """`train_cycle`'s on_epoch: the epoch's mean losses and learning rate, at step cycle x epochs + epoch."""
        if not self.active:
            return None

        def on_epoch(epoch: int, loss: float, optimizer) -> None:
            metrics = {"train/loss": loss, "train/lr": optimizer.param_groups[0]["lr"]}
            if self.module_losses:
                import torch

                module = float(torch.stack(self.module_losses).float().mean())
                metrics.update({"train/module_loss": module, "train/target_loss": loss - module})
            else:
                metrics["train/target_loss"] = loss
            self.module_losses.clear()
            self._log(metrics, cycle * epochs + epoch)

        self.module_losses.clear()
        return on_epoch

    def log_cycle(self, row: dict, picked: list[dict]) -> None:
        """One cycles.csv row and the classes of the points selected in that cycle (selected.csv rows)."""
        if not self.active:
            return
        metrics = {
            "cycle/n_labeled": row["n_labeled"],
            f"cycle/{row['metric']}": row["value"],
            "cycle/ranking_accuracy": row["ranking_accuracy"],
            "cycle/select_s": row["select_s"],
        }
        histogram = Counter(c for p in picked if p.get("classes") for c in str(p["classes"]).split(CLASSES_SEPARATOR))
        metrics.update({f"picks/{name}": count for name, count in sorted(histogram.items())})
        self._log(metrics, int(row["cycle"]))

    def finish(self) -> None:
        """The run's figures (al-plot on its directory) as artifacts, then close."""
        if not self.active:
            return
        figures = self.run_dir / "figures"
        try:
            from al_runner.figures.report import generate_report  # pandas / matplotlib: only when a run ends

            generate_report([self.run_dir], figures, {})
        except Exception as error:  # noqa: BLE001 - figures are a bonus: the run's CSVs are what counts
            log.warning("tracking: no figures for %s (%s)", self.run_dir, error)
        if figures.is_dir():
            for tracker in self.trackers:
                tracker.log_artifacts(figures)
        self.close()

    def close(self) -> None:
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as error:  # noqa: BLE001 - closing must not hide the run's own outcome
                log.warning("tracking: closing %s failed (%s)", type(tracker).__name__, error)
        self.trackers = []

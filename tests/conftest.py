from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """The real config, composed as `al-run` would, with test overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)


SMOKE = ["task=synthetic", "model=small_cnn", "schedule=smoke", "progress=false", "model.net.width=8"]


@pytest.fixture
def smoke_cfg():
    def make(*overrides: str):
        return compose_config(SMOKE + list(overrides))

    return make


RUN_CSVS = ("cycles.csv", "selected.csv", "test_scores.csv")


def csv_contents(directory: Path, names=RUN_CSVS) -> dict[str, list[dict]]:
    """A run's CSVs without the wall-clock columns: what must be identical between two runs of one config."""
    import csv

    from al_runner.schema import TIMING_COLUMNS

    contents = {}
    for name in names:
        with open(directory / name) as f:
            contents[name] = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]
    return contents


@pytest.fixture
def keep_torch_threads():
    """Leave torch's thread count as it was (al-run's main and runs set it for their process)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: at toy sizes it is fastest, and a 2-thread pool next to concurrent tests can be slower by
    orders of magnitude (threads wait at every op's barrier for a descheduled peer)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_script(name: str):
    """scripts/<name>.py imported as module <name> (registered in sys.modules: dataclasses look their module up)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

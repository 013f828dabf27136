"""`al-run` / `python -m al_runner`: one Hydra entry point for runs and multirun sweeps."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from al_runner.errors import ALRunnerError

log = logging.getLogger("al_runner")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from al_runner.runner import run_experiment  # torch import after Hydra has parsed the command line

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        run_experiment(cfg, run_dir)
    except ALRunnerError as e:
        log.error("%s", e)
        # SystemExit passes Hydra's exception reporting: one clear message, no traceback.
        raise SystemExit(f"al-run: error: {e}") from None


if __name__ == "__main__":
    main()

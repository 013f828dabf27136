"""`al-run` / `python -m al_runner`: one Hydra entry point for runs and multirun sweeps."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from al_runner.errors import ALRunnerError

log = logging.getLogger("al_runner")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
ERROR_FILE = "error.txt"

# Jobs of this process's multirun that failed; a sweep goes on past a failed job and reports at the end.
_failed_jobs: list[tuple[str, str]] = []


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def run_job(cfg: DictConfig) -> None:
    from al_runner.runner import run_experiment  # torch import after Hydra has parsed the command line

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_experiment(cfg, run_dir)
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
    except ALRunnerError as e:
        log.error("%s", e)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            (run_dir / ERROR_FILE).write_text(f"{e}\n")
            _failed_jobs.append((str(run_dir), str(e)))
            return
        # SystemExit passes Hydra's exception reporting: one clear message, no traceback.
        raise SystemExit(f"al-run: error: {e}") from None


def main() -> None:
    run_job()
    if _failed_jobs:
        lines = "\n".join(f"  {d}: {msg}" for d, msg in _failed_jobs)
        sys.exit(f"al-run: {len(_failed_jobs)} job(s) failed (rerun the same command to resume):\n{lines}")


if __name__ == "__main__":
    main()

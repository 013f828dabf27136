"""Run identity: a run directory is named by the resolved config that changes results.

`${al_run_id:}` (used in `hydra.run.dir` and `hydra.sweep.subdir`) gives
`<task>-<model>-<sampler>-seed<seed>-<hash>`: a readable part plus the first 10 hex digits of the
SHA-256 of the comparable config (the same dict the checkpoint records and a resume compares). So
spelling out a default, reordering overrides, or sweeping vs a single run all land in the same
directory, and a path given as an override never nests folders.

On CPU the resolved thread count is part of it (it changes the numbers): the resolver fills `runtime.threads`
exactly as the job will (`launcher_threads`), so a sweep job's directory names the count that job applies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from omegaconf import DictConfig, OmegaConf

from al_runner.errors import ConfigError

RESOLVER = "al_run_id"
HASH_DIGITS = 10


def _canonical(value):
    """Values the resume check calls equal hash equally: 1 and 1.0 (`weight=1` vs `weight=1.0`)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def config_hash(comparable: dict) -> str:
    text = json.dumps(_canonical(comparable), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_DIGITS]


def _safe(text) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", str(text)).strip("._") or "_"


def run_id(cfg: DictConfig) -> str:
    # torch is imported only when a run directory is named, i.e. in the process that runs the job
    from al_runner.rundir import comparable_config_of

    readable = "-".join(
        [_safe(cfg.task.name), _safe(cfg.model.name), _safe(cfg.sampler.name), f"seed{_safe(cfg.seed)}"]
    )
    return f"{readable}-{config_hash(comparable_config_of(cfg))}"


def threads_for_launcher(launcher: DictConfig | None) -> int | None:
    """runtime.threads=null: one run uses all cores; N parallel jobs share them (cores // N each)."""
    if launcher is None:
        return None
    target = str(launcher.get("_target_", ""))
    if "Joblib" in target:
        n_jobs = int(launcher.n_jobs)
        cores = os.cpu_count() or 1
        jobs = cores if n_jobs < 0 else n_jobs  # joblib: -1 = one job per core
        return max(1, cores // max(1, jobs))
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)  # the cores SLURM (or the local executor) gives this job
    return None


def launcher_threads(job_cfg: DictConfig, hydra_node: DictConfig | None) -> None:
    """Fill a null `runtime.threads` with the launcher's share, in place. Called by the job before it runs and
    by the run-directory resolver, so both see the one count the job applies."""
    if job_cfg.runtime.get("threads") is None and hydra_node is not None:
        job_cfg.runtime.threads = threads_for_launcher(hydra_node.get("launcher"))


def _run_id_resolver(*, _root_: DictConfig) -> str:
    # the hydra node is where this interpolation lives: leave it out (and out of the hash)
    job_cfg = OmegaConf.masked_copy(_root_, [key for key in _root_ if key != "hydra"])
    refuse_missing_values(job_cfg)
    launcher_threads(job_cfg, _root_.get("hydra"))
    return run_id(job_cfg)


def _missing_keys(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [key for name, value in node.items() for key in _missing_keys(value, f"{prefix}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in _missing_keys(value, f"{prefix}{i}.")]
    return [prefix.rstrip(".")] if node == "???" else []


def refuse_missing_values(cfg: DictConfig) -> None:
    """A required value left unset (`???`, e.g. task.root of task=imagefolder) named in one line, before the run
    directory is named or created (OmegaConf would fail deep inside Hydra's formatter instead)."""
    missing = sorted(_missing_keys(OmegaConf.to_container(cfg, resolve=False)))  # OmegaConf.missing_keys resolves
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required but not set: "
            f"add {' '.join(f'{key}=<value>' for key in missing)} to the command line"
        )


def register_resolver() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _run_id_resolver)

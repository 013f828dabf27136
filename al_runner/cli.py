"""`al-run` / `python -m al_runner`: one Hydra entry point for runs and multirun sweeps.

Under any launcher (basic, joblib, submitit) each job records its outcome in the sweep directory
(`al_runner.sweep`); the launching process prints the sweep summary, writes `sweep.csv`, and
exits non-zero if any job failed. Every refusal (a bad value, a missing one, data that cannot be
used, a config Hydra cannot compose) ends with one line and exit code 1; Ctrl-C (130) and SIGTERM
(143, what a cluster sends before a kill) end with one line saying how to resume.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import al_runner
from al_runner import config_schema, identity
from al_runner.errors import ALRunnerError, stop_exit_code, stop_word, terminate_like_ctrl_c
from al_runner.identity import threads_for_launcher
from al_runner.runlock import RunInUseError
from al_runner.sweep import JobRecord, SweepState, finish_sweep, read_job_records, write_job_record

log = logging.getLogger("al_runner")


def find_config_dir() -> str:
    """The repository's top-level conf/ in a source checkout, else the copy shipped inside the package."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "conf", package / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise SystemExit(f"al-run: error: no conf/config.yaml beside or inside {package}; reinstall al_runner")


CONFIG_DIR = find_config_dir()
config_schema.register()
identity.register_resolver()


def _job_record(hydra_cfg, run_dir: Path, status: str, error: str = "") -> JobRecord:
    log_file = run_dir / f"{hydra_cfg.job.name}.log"
    return JobRecord(
        job=int(hydra_cfg.job.num),
        status=status,
        run_dir=str(run_dir),
        overrides=" ".join(hydra_cfg.overrides.task),
        error=error,
        log=str(log_file),
    )


def execute(cfg: DictConfig, run_dir: Path, multirun: bool) -> str:
    """Run, resume or skip one run; returns its outcome (finished / resumed / skipped)."""
    from al_runner.runner import run_locked  # torch import after Hydra has parsed the command line

    # a sweep's refused job keeps its directory: its log holds the refusal, and sweep.csv names that log
    # a single run refused at build time also leaves no empty outputs/<name>/ (Hydra made it for this run)
    return run_locked(cfg, run_dir, remove_if_refused=not multirun, remove_empty_parent=not multirun).outcome


def share_loader_workers(hydra_cfg) -> None:
    """Jobs that share a machine (hydra/launcher=parallel, gpu_shared, slurm) share its cores among their DataLoader
    workers too: at most the launcher's share (cores // jobs) each, as for torch threads. Speed only: batches do
    not depend on the worker count."""
    share = threads_for_launcher(hydra_cfg.get("launcher"))
    if share is not None:
        from al_runner.tasks.loading import limit_workers  # torch: imported once Hydra has parsed the command line

        limit_workers(share)


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def run_job(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    identity.launcher_threads(cfg, hydra_cfg)  # the count `${al_run_id:}` named this run directory with
    share_loader_workers(hydra_cfg)
    sweep_dir = Path(hydra_cfg.sweep.dir)
    if multirun:
        write_job_record(sweep_dir, _job_record(hydra_cfg, run_dir, "running"))
    try:
        outcome = execute(cfg, run_dir, multirun)
    except ALRunnerError as e:
        if not multirun:
            # SystemExit passes Hydra's exception reporting: one clear message, no traceback.
            raise SystemExit(f"al-run: error: {e}") from None
        # a run another process holds (a second `al-run -m` on this sweep, or a relaunch while the first still
        # runs) is not this sweep's failure: "busy"; `al-run --status` shows how that run goes
        busy = isinstance(e, RunInUseError)
        log.log(logging.WARNING if busy else logging.ERROR, "%s", e)
        write_job_record(sweep_dir, _job_record(hydra_cfg, run_dir, "busy" if busy else "failed", str(e)))
        return
    except Exception as e:  # a bug: keep its traceback in the job's log, let the sweep go on
        if not multirun:
            raise
        log.error("job failed:\n%s", traceback.format_exc())
        write_job_record(sweep_dir, _job_record(hydra_cfg, run_dir, "failed", f"{type(e).__name__}: {e}"))
        return
    if multirun:
        write_job_record(sweep_dir, _job_record(hydra_cfg, run_dir, outcome))
    else:
        log.info("run %s: results in %s", outcome, run_dir)


def _command_line() -> str:
    return " ".join(["al-run", *map(shlex.quote, sys.argv[1:])])


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def one_line_error(error: BaseException) -> str | None:
    """Our own error anywhere in the chain (e.g. raised inside the run-directory resolver), or a config error of
    Hydra / OmegaConf, as one line; None for anything else (a bug: its traceback is printed)."""
    causes = _causes(error)
    ours = next((e for e in causes if isinstance(e, ALRunnerError)), None)
    if ours is not None:
        return str(ours)
    if not isinstance(error, (HydraException, OmegaConfBaseException)):
        return None
    # a cause that is neither (e.g. the traceback text of an error raised in a joblib worker) is left out
    config_errors = [e for e in causes[:2] if isinstance(e, (HydraException, OmegaConfBaseException))]
    text = " ".join(dict.fromkeys(part for e in config_errors for part in _compact(str(e))))
    # our error raised in the run-directory resolver of a worker process reaches here wrapped by OmegaConf
    return re.sub(r"^\w+ raised while resolving interpolation: ", "", text)


def _compact(text: str) -> list[str]:
    """Hydra's multi-line messages as sentences: indented lines (e.g. the available options) as a comma-separated
    list after their heading; OmegaConf's `full_key:` / `object_type=` detail and Hydra's search path left out."""
    parts: list[list] = []  # [heading, items]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("full_key:", "object_type=", "reference_type=")):
            continue
        if line[0].isspace() and parts:
            parts[-1][1].append(stripped)
        else:
            parts.append([stripped, []])
    sentences = []
    for heading, items in parts:
        if heading.startswith("Config search path"):
            continue
        sentence = heading + (" " + ", ".join(items) if items else "")
        sentences.append(sentence if sentence.endswith((".", ":")) else sentence + ".")
    return [" ".join(sentences)] if sentences else []


def _report_launcher_failure() -> None:
    """A sweep that stopped after some jobs ran: their summary and sweep.csv. None ran (e.g. an override that
    does not compose): nothing is printed or written."""
    if SweepState.sweep_dir is not None and SweepState.records is None and read_job_records(SweepState.sweep_dir):
        finish_sweep(SweepState.sweep_dir)


def _run_hydra() -> None:
    """run_job with Hydra's own error printing off (HYDRA_FULL_ERROR=1 makes it re-raise), so that every error
    reaches `main` and a config error prints one line instead of Hydra's multi-line report or, when Hydra's
    formatter itself fails (a missing value inside the run-directory resolver), a 200-line traceback."""
    user_wants_tracebacks = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run_job()
    except Exception as error:  # noqa: BLE001 - sorted into one line or a traceback just below
        _report_launcher_failure()
        message = None if user_wants_tracebacks else one_line_error(error)
        if message is None:
            raise
        sys.exit(f"al-run: error: {message}")
    finally:
        if not user_wants_tracebacks:
            os.environ.pop("HYDRA_FULL_ERROR", None)


# Groups in conf/ that belong to another command: `label` is al-label's task group (conf/label.yaml).
NOT_AL_RUN_GROUPS = ("label",)


def _print_help() -> None:
    """Hydra's --help, less the groups that are not al-run's (a user selecting `label=...` would get nothing)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            run_job()
        except SystemExit as e:
            if e.code not in (0, None):
                raise
    print(
        "".join(
            line
            for line in out.getvalue().splitlines(keepends=True)
            if not line.startswith(tuple(f"{group}: " for group in NOT_AL_RUN_GROUPS))
        ),
        end="",
    )


def _print_status(args: list[str]) -> None:
    """`al-run --status <sweep dir>`: its finished, running, stopped and unstarted runs (al_runner.sweep_status)."""
    from al_runner.sweep_status import SweepStatusError, as_json, overview, report, sweep_status, sweeps_under

    rest = [a for a in args if a not in ("--status", "--json")]
    if len(rest) != 1 or rest[0].startswith("-") or "=" in rest[0]:
        sys.exit(
            "al-run: error: --status takes one sweep folder (and --json) and nothing else: "
            "al-run --status outputs/<name> [--json]"
        )
    try:
        folder = Path(rest[0])
        try:
            status = sweep_status(folder)
            text = as_json(status) if "--json" in args else report(status)
        except SweepStatusError:  # e.g. outputs/: an overview of the sweeps under it, if it holds any
            sweeps = sweeps_under(folder) if folder.is_dir() else []
            if not sweeps:
                raise
            text = as_json(sweeps) if "--json" in args else overview(folder, sweeps)
        print(text, flush=True)
    except BrokenPipeError:  # piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except ALRunnerError as e:
        sys.exit(f"al-run: error: {e}")


def register_launchers() -> None:
    """Our launchers (hydra_plugins.al_runner_launchers), registered with Hydra by hand: Hydra finds plugins by
    scanning the hydra_plugins namespace's folders, which an editable install does not extend with ours, so an
    installed `al-run` would otherwise answer "Unknown plugin class". Only for multiruns (only they launch)."""
    from hydra.core.plugins import Plugins  # local: launcher modules pull in joblib / submitit, needed by -m only

    from hydra_plugins.al_runner_launchers.joblib_gpus import JoblibLauncher
    from hydra_plugins.al_runner_launchers.submitit_slurm import LocalLauncher, SlurmLauncher

    for launcher in (JoblibLauncher, LocalLauncher, SlurmLauncher):
        Plugins.instance().register(launcher)


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(f"al-run (al_runner) {al_runner.__version__}")
        return
    if "--status" in sys.argv[1:]:
        return _print_status(sys.argv[1:])
    try:
        args = sys.argv[1:]
        config_schema.check_overrides(args, [Path(CONFIG_DIR), *config_schema.config_dirs_from_args(args)])
    except ALRunnerError as e:
        sys.exit(f"al-run: error: {e}")
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        return _print_help()
    SweepState.sweep_dir = SweepState.records = None
    if {"-m", "--multirun"} & set(sys.argv[1:]):
        register_launchers()
    terminate_like_ctrl_c()
    try:
        _run_hydra()
    except KeyboardInterrupt as stop:
        sys.stderr.write(
            f"\nal-run: {stop_word(stop)}; finished cycles are saved, run the same command to resume: "
            f"{_command_line()}\n"
        )
        sys.exit(stop_exit_code(stop))
    except SystemExit as e:
        if e.code not in (0, None):
            _report_launcher_failure()  # the launcher itself failed (e.g. a worker was killed)
        raise
    failed = SweepState.failed()
    if failed:
        errors = "".join(f"\n  #{r.job} {r.run_dir}: {r.error}" for r in failed)
        sys.exit(
            f"al-run: {len(failed)} job(s) failed (sweep.csv has them all): fix what each error names, then run "
            f"the same command again (finished runs are skipped, interrupted ones resume):{errors}"
        )


if __name__ == "__main__":
    main()

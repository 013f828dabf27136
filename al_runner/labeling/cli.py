"""`al-label`: active learning on your own images, with people (or a labeling tool) as the oracle.

    al-label init   PROJECT --images DIR [--labels FILE] [--holdout FILE] [--classes a,b,c]
                    [task=… model=… sampler=… schedule=…]
    al-label next   PROJECT [--k N]
    al-label import PROJECT FILE [--allow-unrequested] [--overwrite]
    al-label sync   PROJECT --label-studio URL [--token PAT]
    al-label status PROJECT

The config is al-run's (conf/label.yaml composes the same model / sampler / schedule groups; the task is one of
conf/label/), and a round runs al-run's cycle phases (`al_runner.labeling.commands`). Our errors print as one
line, `al-label: error: ...`, and change nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import al_runner
from al_runner import config_schema
from al_runner.atomic import remove_stale_temp_files

# al_runner.cli: registers the schema and resolvers, finds conf/ (checkout or package), and one_line_error is the
# one place that turns our errors into one line (al-run's too)
from al_runner.cli import CONFIG_DIR, one_line_error
from al_runner.errors import ALRunnerError, stop_exit_code, stop_word, terminate_like_ctrl_c
from al_runner.labeling.project import Project
from al_runner.runlock import RunLock

PROG = "al-label"
CONFIG_NAME = "label"
# al-label's tasks live in conf/label/ and fill the `task` node; `task=detection` on the command line means
# this group, not al-run's dataset tasks (conf/task/).
TASK_GROUP = "label@task"
EXIT_REFUSED_ROWS = 1
log = logging.getLogger("al_runner.label")

EPILOG = """\
examples:
  al-label init shapes --images photos/ --labels first_labels.csv --holdout test_labels.csv sampler=learning_loss
  al-label next shapes --k 50          # train, rank, write shapes/rounds/round-001/ (picks, tasks, contact sheet)
  al-label import shapes labels.csv    # or VOC XMLs / a COCO json / a Label Studio JSON export
  al-label sync shapes --label-studio http://localhost:8080 --token $LABEL_STUDIO_API_KEY
  al-label status shapes
docs/labeling.md walks through a whole project, with files and with Label Studio."""


def compose_config(overrides: list[str]):
    """conf/label.yaml with the command line's overrides (`task=X` picks al-label's task X)."""
    config_schema.check_overrides(overrides)
    overrides = [TASK_GROUP + o[len("task") :] if o.startswith("task=") else o for o in overrides]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(CONFIG_NAME, overrides=overrides)
    config_schema.check_composed(cfg)
    return cfg


def cmd_init(args) -> None:
    from al_runner.labeling.commands import init_project  # imports torch: only for the command that needs it

    cfg = compose_config(args.overrides)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    project = init_project(Path(args.project), Path(args.images), cfg, args.labels, args.holdout, classes)
    labels = project.labels()
    print(
        f"{PROG}: created {project.dir}: {len(project.pool)} images to label from, {len(project.holdout)} held out, "
        f"{len(labels.pool)} labeled, classes {', '.join(project.classes)}"
    )
    print(f"next: {PROG} next {project.dir}")


def cmd_next(args) -> None:
    from al_runner.labeling.commands import next_round  # imports torch: only for the command that needs it
    from al_runner.labeling.exports import TASKS_JSON  # imports torch (via the tasks)

    project = _locked_project(args)
    with project.lock:
        round_, again = next_round(project, args.k, args.document_root)
    where = project.round_dir(round_.number)
    said = "exported again (no labels came in since)" if again else "exported"
    metric = "" if round_.value is None else f"; {round_.metric} on the held-out part: {round_.value:.4f}"
    trained = "picked at random (no labels yet)" if round_.random else f"trained on {round_.n_labeled} labels{metric}"
    print(f"{PROG}: round {round_.number}: {trained}; {len(round_.picks)} images {said} to {where}")
    print(
        f"label them, then: {PROG} import {project.dir} <labels file>   "
        f"(or give {where / TASKS_JSON} to Label Studio, or: {PROG} sync {project.dir} --label-studio URL)"
    )


def cmd_import(args) -> None:
    from al_runner.labeling.commands import import_labels  # imports torch: only for the command that needs it

    project = _locked_project(args)
    with project.lock:
        result = import_labels(project, Path(args.file), args.allow_unrequested, args.overwrite)
    _report_import(result, project)


def cmd_sync(args) -> None:
    from al_runner.labeling.label_studio import connect, sync  # imports torch and the SDK: only for sync

    token = args.token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not token:
        raise ALRunnerError("no Label Studio token: give --token <personal access token> or set LABEL_STUDIO_API_KEY")
    project = _locked_project(args)
    url = args.label_studio.rstrip("/")
    client = connect(url, token)  # before the lock: an unusable server or token leaves every file as it was
    with project.lock:
        report = sync(project, client, url, args.document_root, args.allow_unrequested, args.overwrite, args.ls_project)
    print(
        f"{PROG}: Label Studio project {report.project_id} at {report.url}: pushed {report.pushed} task(s), "
        f"{report.finished} annotated"
    )
    if report.images_note:
        print(
            f"{PROG}: note: Label Studio cannot show the images yet ({report.images_note}); start it with "
            f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<a folder above "
            f"the images> and give al-label the same --document-root (docs/labeling.md)"
        )
    _report_import(report.result, project)


def cmd_status(args) -> None:
    from al_runner.labeling.commands import status_lines  # imports torch: only for the command that needs it

    print("\n".join(status_lines(Project(args.project))))


def _locked_project(args):
    """The project, with `project.lock`: its directory lock (one command at a time; a second one refuses at once)
    that also clears the temporary files of a writer killed mid-write."""
    project = Project(args.project)
    project.lock = _lock(project.dir)
    return project


@contextlib.contextmanager
def _lock(directory: Path):
    with RunLock(directory):
        remove_stale_temp_files(directory)
        yield


def _report_import(result, project) -> None:
    for refusal in result.refused:
        print(f"{PROG}: refused: {refusal.line()}", file=sys.stderr)
    print(
        f"{PROG}: {len(result.taken)} label(s) taken, {len(result.unchanged)} unchanged, {len(result.refused)} refused"
        f"{' (listed above; the rest is kept)' if result.refused and result.taken else ''}"
    )
    if result.refused:
        sys.exit(EXIT_REFUSED_ROWS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} (al_runner) {al_runner.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create a project from a folder of images")
    init.add_argument("project", help="the project directory to create")
    init.add_argument("--images", required=True, help="folder of images (searched recursively)")
    init.add_argument(
        "--labels", type=Path, help="labels you already have (CSV path,label; VOC XMLs; COCO json; Label Studio export)"
    )
    init.add_argument(
        "--holdout",
        type=Path,
        help="labeled images kept apart to measure the model each round (never picked); they must sit under --images "
        "too (e.g. DIR/holdout/), as every image of the project does",
    )
    init.add_argument("--classes", help="comma-separated class names (default: those used in --labels / --holdout)")
    init.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides: task=classification|detection model=… sampler=… schedule=…",
    )
    init.set_defaults(run=cmd_init)

    nxt = commands.add_parser("next", help="train on the labels so far, rank the unlabeled images, export the picks")
    nxt.add_argument("project")
    nxt.add_argument("--k", type=int, help="images to pick (default: the schedule's query_size)")
    nxt.set_defaults(run=cmd_next)

    imp = commands.add_parser(
        "import", help="take labels from a file (CSV, VOC XML(s), COCO json, Label Studio export)"
    )
    imp.add_argument("project")
    imp.add_argument(
        "file",
        help="label file (a CSV with path and label columns: a round's picks.csv with a label "
        "column added works), or a folder of VOC XML files",
    )
    imp.set_defaults(run=cmd_import)

    sync = commands.add_parser("sync", help="push the picks to a Label Studio project and pull finished annotations")
    sync.add_argument("project")
    sync.add_argument("--label-studio", required=True, metavar="URL", help="e.g. http://localhost:8080")
    sync.add_argument("--token", help="personal access token (default: $LABEL_STUDIO_API_KEY)")
    sync.add_argument("--ls-project", type=int, help="an existing Label Studio project id to use (default: create one)")
    sync.set_defaults(run=cmd_sync)

    for sub in (imp, sync):
        sub.add_argument(
            "--allow-unrequested", action="store_true", help="also take labels of images not exported for labeling"
        )
        sub.add_argument(
            "--overwrite", action="store_true", help="replace an image's earlier label instead of refusing"
        )
    for sub in (nxt, sync):
        sub.add_argument(
            "--document-root",
            default="/",
            help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, for the image URLs in task files (default /)",
        )

    status = commands.add_parser("status", help="rounds, labels per class, what is waiting, held-out accuracy")
    status.add_argument("project")
    status.set_defaults(run=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may come before or after the options; anything else unknown is an error
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (overrides and args.command != "init"):
        parser.error(
            f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides or args.command != 'init')}"
        )
    if args.command == "init":
        args.overrides = list(args.overrides) + overrides
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the SDK's HTTP client logs every request at INFO
    terminate_like_ctrl_c()
    try:
        args.run(args)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM: exit 130 / 143, as al-run
        sys.stderr.write(
            f"\n{PROG}: {stop_word(stop)}; nothing was committed by the interrupted step, rerun the same command"
            + (" (its training continues from its last save)" if args.command == "next" else "")
            + "\n"
        )
        sys.exit(stop_exit_code(stop))
    except Exception as error:  # noqa: BLE001 - ours or a config error: one line; anything else: its traceback
        message = one_line_error(error)
        if message is None:
            raise
        sys.exit(f"{PROG}: error: {message}")


if __name__ == "__main__":
    main()

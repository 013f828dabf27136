"""What `al-label init | next | import | status` do, on a project directory.

A round is al-run's cycle with people as the oracle, run by the same code (`al_runner.cycle`): `next` builds the
run's pieces as al-run does (`build_run`, the task from the project's images and labels), trains the model on the
labels so far with the run's schedule (continuing from the previous round's weights unless
`schedule.reinit_each_cycle`), evaluates it on the held-out part if there is one, and picks the next images with
the configured sampler (over the images nobody labeled or was asked to label yet). The training and selection
generators are al-run's (seeded `seed + TRAIN_STREAM` / `seed + SELECT_STREAM` for the first trained round) and
carried from round to round in the project's state with the weights, as al-run's checkpoint carries them from
cycle to cycle: given the same labels, the n-th trained round draws what al-run's cycle n - 1 draws, so it trains
the same weights and picks the same images (`tests/test_cycle.py`). With no labels at all, the first round picks
at random (seeded by `seed` only, as al-run's initial set). This module keeps the rounds and the project's files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import DictConfig

from al_runner import schema
from al_runner.atomic import atomic_write_text
from al_runner.build import build_sampler, instantiate, pool_count, seed_for
from al_runner.cycle import RunParts, build_run, cycle_row, progress_checkpoint, run_cycle
from al_runner.errors import ConfigError
from al_runner.labeling import exports
from al_runner.labeling.formats import read_label_file
from al_runner.labeling.importer import ImportResult, resolve_image, take_labels
from al_runner.labeling.project import (
    CONFIG_FILE,
    HOLDOUT,
    IMAGES_FILE,
    LABEL_CONFIG_FILE,
    LABELS_FILE,
    POOL,
    PROJECT_FILE,
    PROJECT_FORMAT,
    LabelingError,
    Labels,
    Project,
    Round,
    describe_image,
    image_changes,
    staged_directory,
    write_images_csv,
)
from al_runner.loop import TrainingProgress, batch_is_skipped
from al_runner.rundir import save_config, write_csv
from al_runner.tasks.classification.imagefolder import IMAGE_EXTENSIONS

log = logging.getLogger("al_runner.label")


def labeling_of(cfg: DictConfig):
    """The task's labeling object (conf/label/<task>.yaml: task.build)."""
    return instantiate(cfg.task.build)


def sampler_of(cfg: DictConfig):
    """The configured sampler. An oracle is refused: it reads the labels of the candidates, and with people
    labeling there are none to read."""
    sampler = build_sampler(cfg)
    if sampler.reads_labels:
        raise ConfigError(
            f"sampler {cfg.sampler.name} reads the labels of unlabeled images (an oracle, a diagnostic "
            f"of al-run): al-label has none to give; choose a method (e.g. learning_loss, entropy, coreset)"
        )
    return sampler


def build_round(cfg: DictConfig, labeling, project: Project, labels: Labels) -> RunParts:
    """A round's pieces, built as al-run builds a run's (`cycle.build_run`), the task from the project's images and
    labels; the sampler is checked against them as al-run checks it (what they cannot give is refused, before any
    training). `init` builds them too, so that a project never starts with a sampler that its later rounds would
    refuse."""

    def project_task(cfg: DictConfig, runtime):
        return labeling.build_task(project, labels).to(runtime.device)

    return build_run(cfg, build_task=project_task, build_sampler=sampler_of)


# --- init ---------------------------------------------------------------------------------------------------
def list_images(root: Path) -> list[str]:
    """Every image below the folder (recursively), as sorted relative paths with "/"."""
    if not root.is_dir():
        raise LabelingError(f"--images {root}: not a folder")
    found = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not found:
        raise LabelingError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return found


def _read_or_refuse(project: Project, path: Path, what: str):
    """All records of an init label file, or a refusal of init naming the first bad row."""
    if not Path(path).exists():
        raise LabelingError(f"{what} {path}: no such file or folder")
    records, refused = read_label_file(Path(path), project.classes, lambda name: None)
    if refused:
        raise LabelingError(f"{what}: {len(refused)} row(s) cannot be read, first: {refused[0].line()}")
    return records


def init_project(
    directory: Path,
    images: Path,
    cfg: DictConfig,
    labels_file: Path | None = None,
    holdout_file: Path | None = None,
    classes: list[str] | None = None,
) -> Project:
    """Create a project: list and fingerprint the images, take the initial and held-out labels, check the sampler
    against the task and model as every round will. All or nothing."""
    labeling = labeling_of(cfg)
    sampler_of(cfg)  # an oracle: refused before anything is read
    images = Path(images).expanduser().resolve()
    relative = list_images(images)
    directory = Path(directory)
    with staged_directory(directory) as staging:
        meta = {"kind": str(cfg.task.name), "images_root": str(images), "classes": list(classes or [])}
        _write_meta(staging, meta)
        save_config(staging / CONFIG_FILE, cfg)
        entries = [describe_image(images, path, POOL) for path in relative]
        write_images_csv(staging / IMAGES_FILE, entries)
        (staging / LABELS_FILE).write_text(Labels().to_json())
        project = Project(staging)
        initial = _read_or_refuse(project, labels_file, "--labels") if labels_file else []
        held = _read_or_refuse(project, holdout_file, "--holdout") if holdout_file else []
        if not classes:  # the classes are those the labels use, sorted (fixed from now on: the model's outputs)
            meta["classes"] = sorted({c for r in initial + held for c in _classes_in(labeling, r.label)})
            if not meta["classes"]:
                raise LabelingError("no classes: give --classes a,b,c or a --labels file")
            _write_meta(staging, meta)
            project = Project(staging)
        holdout_paths = _holdout_paths(project, held)
        entries = [e if e.path not in holdout_paths else type(e)(**{**asdict(e), "role": HOLDOUT}) for e in entries]
        write_images_csv(staging / IMAGES_FILE, entries)
        project = Project(staging)
        labels = Labels()
        for record in held:
            path = holdout_paths_by_name(project, record)
            problem = labeling.check(record.label, project.by_path[path], project.classes, record.stated_size)
            if problem:
                raise LabelingError(f"--holdout {record.where}: {record.image}: {problem}")
            labels.holdout[path] = {"label": record.label, "source": record.where}
        taken = take_labels(project, labeling, labels, [], initial, allow_unrequested=True)
        if taken.refused:
            raise LabelingError(f"--labels: {len(taken.refused)} row(s) refused, first: {taken.refused[0].line()}")
        build_round(cfg, labeling, project, labels)  # a sampler the rounds would refuse: refused now
        atomic_write_text(staging / LABELS_FILE, labels.to_json())
        atomic_write_text(staging / LABEL_CONFIG_FILE, labeling.label_config(project.classes))
    return Project(directory)


def _write_meta(directory: Path, meta: dict) -> None:
    atomic_write_text(directory / PROJECT_FILE, json.dumps({"format": PROJECT_FORMAT, **meta}, indent=1))


def _classes_in(labeling, label) -> list[str]:
    try:
        return labeling.classes_of(label)
    except (TypeError, KeyError):
        return []  # a label of the wrong kind: refused (and named) by the checks below


def _basenames(project: Project) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for path in project.by_path:
        names.setdefault(Path(path).name, []).append(path)
    return names


def _outside_images_root(project: Project, name: str) -> bool:
    """A path (absolute, or relative to the working directory) to a file that exists outside the image folder:
    another image than any of the project's, even when one of them has the same file name (a held-out
    test/0001.png is not the pool's 0001.png)."""
    path = Path(name).expanduser()
    return path.is_file() and not path.resolve().is_relative_to(project.images_root.resolve())


def holdout_paths_by_name(project: Project, record) -> str:
    exact = record.image.replace("\\", "/").strip() in project.by_path  # the project's own relative path
    outside = not exact and _outside_images_root(project, record.image)
    path = None if outside else resolve_image(project, record.image, _basenames(project))
    if path is None:
        raise LabelingError(
            f"--holdout {record.where}: {record.image}: unknown image: not under {project.images_root}; held-out "
            f"images must sit under the --images folder too (e.g. in a holdout/ subfolder of it): init lists every "
            f"image there and sets aside those the --holdout file names"
        )
    return path


def _holdout_paths(project: Project, records) -> set[str]:
    return {holdout_paths_by_name(project, r) for r in records}


# --- next ---------------------------------------------------------------------------------------------------
def next_round(project: Project, k: int | None = None, document_root: str = "/") -> tuple[Round, bool]:
    """(the round, whether it was re-exported unchanged). Re-running before any import gives the same picks."""
    cfg = project.config
    labeling = labeling_of(cfg)
    project.check_images_unchanged()
    labels, state = project.labels(), project.state()
    rounds = [Round(**r) for r in state["rounds"]]
    if k is not None and k < 1:
        raise LabelingError(f"--k must be >= 1, got {k}")
    if rounds and rounds[-1].labels_revision == labels.revision:
        last = rounds[-1]
        if k is not None and k != last.k:
            raise LabelingError(
                f"round {last.number} was exported with --k {last.k} and no label came in since; "
                f"import its labels first, or rerun with --k {last.k} to export it again"
            )
        write_outputs(project, labeling, labels, rounds, document_root)
        return last, True
    new = _run_round(project, cfg, labeling, labels, rounds, state["learner"], k)
    rounds.append(new.round)
    project.save_state(rounds, new.carried)  # the commit: one atomic write
    project.drop_round_progress()  # the committed round supersedes its training progress
    write_outputs(project, labeling, labels, rounds, document_root)
    return new.round, False


class _NewRound:
    def __init__(self, round_: Round, carried: dict | None):
        self.round, self.carried = round_, carried  # carried: what the next round continues from (`_carried_state`)


# What a trained round hands to the next, in the "learner" entry of the project's state (committed with the rounds
# in one atomic write): the weights and the run's two generators, as al-run's checkpoint carries them from cycle to
# cycle. Projects trained before the generators were carried hold the learner's state alone there.
def _carried_state(parts: RunParts) -> dict:
    return {"learner": parts.learner.state_dict(), "generators": parts.generator_states()}


def _restore_carried(parts: RunParts, carried: dict | None) -> None:
    """The previous trained round's weights and generators; none before the first trained round, which starts
    from the initial weights and fresh generators (`seed + TRAIN_STREAM`, `seed + SELECT_STREAM`), as al-run's
    cycle 0."""
    if carried is None:
        return
    if "generators" in carried:
        parts.learner.load_state_dict(carried["learner"])
        parts.load_generator_states(carried["generators"])
    else:  # an older project's state: its weights, with fresh generators
        parts.learner.load_state_dict(carried)


def _run_round(
    project: Project,
    cfg: DictConfig,
    labeling,
    labels: Labels,
    rounds: list[Round],
    carried: dict | None,
    k: int | None,
) -> _NewRound:
    s, number = cfg.schedule, len(rounds) + 1
    k = pool_count(s, "query_size", len(project.pool)) if k is None else k  # a count, or a fraction of the pool
    waiting = set(project.waiting(rounds, labels))
    labeled = torch.tensor([i for i, e in enumerate(project.pool) if e.path in labels.pool], dtype=torch.long)
    candidates = torch.tensor(
        [i for i, e in enumerate(project.pool) if e.path not in labels.pool and e.path not in waiting], dtype=torch.long
    )
    if candidates.numel() == 0:
        raise LabelingError(
            f"nothing left to pick: all {len(project.pool)} pool images are labeled or waiting for "
            f"annotation ({len(waiting)} waiting)"
        )
    k = min(k, candidates.numel())
    if labeled.numel() == 0:  # the paper's cycle 0: a random initial set, from the seed alone (every sampler alike)
        order = torch.randperm(candidates.numel(), generator=torch.Generator().manual_seed(seed_for(cfg, "data")))[:k]
        picks = [
            {"path": project.pool[i].path, "score": None, "guess": None, "guess_score": None}
            for i in candidates[order].tolist()
        ]
        log.debug("round %d: no labels yet, %d images picked at random", number, k)
        return _NewRound(Round(number, k, picks, labels.revision, 0, random=True), carried)

    if batch_is_skipped(labeled.numel(), int(s.batch_size)):
        raise LabelingError(
            "only 1 image is labeled: a training batch of one sample is skipped, so this round would train on "
            "nothing; import at least one more label first"
        )
    parts = build_round(cfg, labeling, project, labels)
    _restore_carried(parts, carried)  # re-initialised in run_cycle when schedule.reinit_each_cycle
    saved = project.round_progress(number, labels.revision)  # a killed `next` of this round continues its training
    if saved is not None:
        log.info("round %d: continuing its training after epoch %d (saved progress)", number, saved["epochs_done"])
    result = run_cycle(
        parts,
        labeled,
        candidates,
        k,
        number - 1,
        evaluated=bool(project.holdout),
        resume=None if saved is None else TrainingProgress.from_record(saved),
        checkpoint=progress_checkpoint(
            cfg, lambda progress: project.save_round_progress(number, labels.revision, progress.to_record())
        ),
    )
    task, evaluation, picked = parts.task, result.evaluation, result.picked
    guesses = model_guesses(parts.learner, task, labeling, project, picked, int(s.eval_batch_size))
    picks = [
        {"path": project.pool[i].path, "score": float(v), **g}
        for i, v, g in zip(picked.tolist(), result.scores.tolist(), guesses)
    ]
    round_ = Round(
        number,
        k,
        picks,
        labels.revision,
        int(labeled.numel()),
        metric=task.metric_name,
        value=None if evaluation is None else evaluation.metric,
        ranking_accuracy=None if evaluation is None else evaluation.ranking_accuracy,
        uncertainty=task.uncertainty_name,
        holdout_loss=None if evaluation is None else float(evaluation.real_loss.mean()),
        seconds=result.seconds(),
    )
    shown = "" if evaluation is None else f", {task.metric_name} {evaluation.metric:.4f} on {task.test_size} held out"
    log.debug(
        "round %d: trained on %d labels%s; picked %d with %s",
        number,
        labeled.numel(),
        shown,
        len(picks),
        cfg.sampler.name,
    )
    return _NewRound(round_, _carried_state(parts))


@torch.inference_mode()
def model_guesses(learner, task, labeling, project: Project, indices: torch.Tensor, batch_size: int) -> list[dict]:
    """The model's guess for each picked image (eval mode, no augmentation), for the exports."""
    learner.eval()
    found: list[dict] = []
    for inputs, idx in task.input_batches(indices, batch_size):
        found += labeling.guesses(task, learner.forward(inputs), [project.pool[i] for i in idx.tolist()])
    return found


def write_outputs(project: Project, labeling, labels, rounds: list[Round], document_root: str = "/") -> None:
    """Rewrite what is derived from the committed state: the last round's exports and al-run's run files."""
    if rounds:
        exports.write_round_exports(project, labeling, rounds[-1], document_root)
    write_run_files(project, labeling, labels, rounds)


def write_run_files(project: Project, labeling, labels, rounds: list[Round]) -> None:
    """cycles.csv and selected.csv in al-run's format (round r = cycle r - 1: trained, evaluated, then picked),
    so that al-plot draws a project's learning curve like a run's. Only rounds evaluated on a held-out part."""
    cfg = project.config
    evaluated = [r for r in rounds if r.value is not None]
    if not evaluated:
        return
    rows = [
        cycle_row(cfg, r.number - 1, r.n_labeled, r.metric, r.value, r.uncertainty, r.ranking_accuracy, r.seconds)
        for r in evaluated
    ]
    write_csv(project.dir / schema.CYCLES_CSV, schema.CYCLE_COLUMNS, rows)

    def classes(path: str) -> str | None:  # what the label bought, once it came in (al-plot's class balance)
        known = labels.pool.get(path)
        return None if known is None else schema.CLASSES_SEPARATOR.join(labeling.classes_of(known["label"]))

    selected = [
        {
            "cycle": r.number,
            "pool_index": project.pool_index[p["path"]],
            "item": p["path"],
            "score": p["score"],
            "classes": classes(p["path"]),
        }
        for r in rounds
        for p in r.picks
    ]
    write_csv(project.dir / schema.SELECTED_CSV, schema.SELECTED_COLUMNS, selected)


# --- import ---------------------------------------------------------------------------------------------------
def import_labels(
    project: Project, label_file: Path, allow_unrequested: bool = False, overwrite: bool = False
) -> ImportResult:
    """Take what passes the checks (one write of labels.json), list the rest."""
    labeling = labeling_of(project.config)
    project.check_images_unchanged()
    if not Path(label_file).exists():
        raise LabelingError(f"{label_file}: no such file or folder")
    sizes = {e.path: (e.width, e.height) for e in project.images}
    records, unreadable = read_label_file(Path(label_file), project.classes, lambda name: sizes.get(name))
    return commit_records(project, labeling, records, unreadable, allow_unrequested, overwrite)


def commit_records(
    project: Project, labeling, records, unreadable, allow_unrequested: bool, overwrite: bool
) -> ImportResult:
    labels, rounds = project.labels(), project.rounds()
    result = take_labels(project, labeling, labels, rounds, records, allow_unrequested, overwrite)
    result.refused = list(unreadable) + result.refused
    if result.taken:
        project.save_labels(labels)  # the commit
        write_run_files(project, labeling, labels, rounds)
    return result


# --- status ---------------------------------------------------------------------------------------------------
def status_lines(project: Project) -> list[str]:
    cfg, labels, rounds = project.config, project.labels(), project.rounds()
    labeling = labeling_of(cfg)
    lines = [
        f"project {project.dir}: {project.kind}, {len(project.classes)} classes, {len(project.pool)} pool images"
        f"{f', {len(project.holdout)} held out' if project.holdout else ''} under {project.images_root}",
        f"config: model {cfg.model.name}, sampler {cfg.sampler.name}, schedule {cfg.schedule.name} "
        f"({cfg.schedule.epochs} epochs per round), seed {cfg.seed}",
    ]
    by_round: dict[int, int] = {}
    per_class = {c: 0 for c in project.classes}
    for record in labels.pool.values():
        by_round[record["round"]] = by_round.get(record["round"], 0) + 1
        for name in labeling.classes_of(record["label"]):
            per_class[name] = per_class.get(name, 0) + 1
    lines.append(
        f"labels: {len(labels.pool)} ("
        + (", ".join(f"round {r}: {n}" for r, n in sorted(by_round.items())) or "none yet")
        + ")"
    )
    lines.append("per class: " + ", ".join(f"{c} {n}" for c, n in per_class.items()))
    for r in rounds:
        how = "at random (no labels yet)" if r.random else f"with {cfg.sampler.name}"
        metric = (
            "" if r.value is None else f", {r.metric} {r.value:.4f} (loss {r.holdout_loss:.4f}) on the held-out part"
        )
        trained = "" if r.random else f"trained on {r.n_labeled} labels{metric}; "
        lines.append(f"round {r.number}: {trained}picked {len(r.picks)} {how}")
    waiting = project.waiting(rounds, labels)
    if waiting:
        asked = project.requested(rounds)
        counts: dict[int, int] = {}
        for path in waiting:
            counts[asked[path]] = counts.get(asked[path], 0) + 1
        lines.append(
            "waiting for annotation: "
            + ", ".join(
                f"{n} of round {r} ({project.round_dir(r) / exports.TASKS_JSON})" for r, n in sorted(counts.items())
            )
        )
    else:
        lines.append("waiting for annotation: none" + (" (run al-label next)" if rounds or labels.pool else ""))
    studio = project.label_studio()
    if studio:
        lines.append(
            f"Label Studio: project {studio['project_id']} at {studio['url']}, "
            f"{len(studio.get('tasks', {}))} tasks pushed"
        )

    changed = image_changes(project.images_root, project.images)
    lines.append(
        "images: unchanged since init"
        if not changed
        else f"images: {len(changed)} CHANGED since init ({', '.join(changed[:5])}): next and import will refuse"
    )
    return lines

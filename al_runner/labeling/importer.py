"""Taking labels into a project: every record is checked against the project, row by row.

A record is refused, with one line naming its file and row, when its image is unknown, held out, or was
not exported for labeling (unless `allow_unrequested`), when its label does not fit the task (unknown class,
box outside the image, wrong kind of label), or when the image already has a different label (unless
`overwrite`). What passes is committed in one write of labels.json; the refused rows are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from al_runner.labeling.formats import LabelRecord, Refusal
from al_runner.labeling.project import Labels, Project, Round


@dataclass
class ImportResult:
    taken: list[str] = field(default_factory=list)  # image paths whose label was added or changed
    unchanged: list[str] = field(default_factory=list)  # same label as before: nothing to do
    refused: list[Refusal] = field(default_factory=list)


def resolve_image(project: Project, name: str, basenames: dict[str, list[str]]) -> str | None:
    """A project image from what a file calls it: the relative path, an absolute path inside the image
    folder, or a file name that only one image has."""
    candidate = name.replace("\\", "/").strip()
    if candidate in project.by_path:
        return candidate
    as_path = Path(candidate)
    if as_path.is_absolute():
        try:
            relative = as_path.resolve().relative_to(project.images_root.resolve()).as_posix()
        except ValueError:
            relative = None
        if relative in project.by_path:
            return relative
    same_name = basenames.get(PurePosixPath(candidate).name, [])
    return same_name[0] if len(same_name) == 1 else None


def take_labels(
    project: Project,
    labeling,
    labels: Labels,
    rounds: list[Round],
    records: list[LabelRecord],
    allow_unrequested: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Check each record and apply the ones that pass to `labels` (in memory; the caller commits)."""
    result = ImportResult()
    basenames: dict[str, list[str]] = {}
    for path in project.by_path:
        basenames.setdefault(PurePosixPath(path).name, []).append(path)
    requested = project.requested(rounds)
    current_round = rounds[-1].number if rounds else 0
    seen_in_file: dict[str, object] = {}
    for record in records:
        path = resolve_image(project, record.image, basenames)
        reason = _refusal_reason(
            project, labeling, labels, record, path, requested, seen_in_file, allow_unrequested, overwrite
        )
        if reason is not None:
            result.refused.append(Refusal(record.where, record.image, reason))
            continue
        seen_in_file[path] = record.label
        known = labels.pool.get(path)
        if known is not None and known["label"] == record.label:
            result.unchanged.append(path)
            continue
        labels.pool[path] = {"label": record.label, "round": requested.get(path, current_round), "source": record.where}
        result.taken.append(path)
    if result.taken:
        labels.revision += 1
    return result


def _refusal_reason(
    project, labeling, labels, record, path, requested, seen_in_file, allow_unrequested, overwrite
) -> str | None:
    if path is None:
        return f"unknown image: not in this project's image list ({project.images_root})"
    entry = project.by_path[path]
    if entry.role != "pool":
        return "held out for evaluation: its label is fixed at init"
    if path not in requested and not allow_unrequested:
        return "this image was not exported for labeling (use --allow-unrequested to take it anyway)"
    problem = labeling.check(record.label, entry, project.classes, record.stated_size)
    if problem is not None:
        return problem
    earlier = seen_in_file.get(path)
    if earlier is not None and earlier != record.label and not overwrite:
        return (
            f"duplicate: labeled '{labeling.describe(earlier)}' earlier in this import and "
            f"'{labeling.describe(record.label)}' here (use --overwrite to keep the last one)"
        )
    known = labels.pool.get(path)
    if earlier is None and known is not None and known["label"] != record.label and not overwrite:
        return (
            f"duplicate: already labeled '{labeling.describe(known['label'])}' (round {known['round']}, from "
            f"{known['source']}), here '{labeling.describe(record.label)}' (use --overwrite to replace it)"
        )
    return None

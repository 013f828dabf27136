"""A labeling project on disk: its config, its images (with content fingerprints), its labels and its rounds.

    <project>/
      project.json        kind, image folder, classes, format version
      config.yaml         the composed al-label config (task, model, sampler, schedule), fixed at init
      label_config.xml    the Label Studio labeling interface for these classes
      images.csv          path (relative to the image folder), role (pool / holdout), sha256, bytes, mtime, size
      labels.json         every label so far with the round it came from (+ the held-out labels), a revision
      state.pt            rounds so far (picks, scores, guesses, metric) + the model after the last training
      round_progress.pt   while `next` trains: its progress every `checkpoint_minutes` (a killed `next` continues)
      label_studio.json   the Label Studio project this one syncs with, and which image is which task
      cycles.csv, selected.csv   the rounds in al-run's run-directory format (al-plot reads them)
      rounds/round-NNN/   picks.csv, tasks.json (Label Studio import), contact_sheet.png

Every file is written whole and renamed into place (`al_runner.atomic`), and each command commits with one
such write (`state.pt` for `next`, `labels.json` for `import`), so a kill at any moment leaves the
project as it was before the command or as it is after it. Derived files (exports, CSVs) are rewritten
from the committed state by the next command that touches them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from al_runner.atomic import atomic_torch_save, atomic_write_text
from al_runner.errors import ALRunnerError

PROJECT_FORMAT = 1
PROJECT_FILE, CONFIG_FILE, IMAGES_FILE = "project.json", "config.yaml", "images.csv"
LABELS_FILE, STATE_FILE, LABEL_STUDIO_FILE = "labels.json", "state.pt", "label_studio.json"
ROUND_PROGRESS_FILE, ROUND_PROGRESS_FORMAT = "round_progress.pt", 1
LABEL_CONFIG_FILE, ROUNDS_DIR = "label_config.xml", "rounds"
IMAGE_COLUMNS = ("path", "role", "sha256", "bytes", "mtime_ns", "width", "height")
POOL, HOLDOUT = "pool", "holdout"


class LabelingError(ALRunnerError):
    """A refused al-label command: one line, nothing changed."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageEntry:
    path: str  # relative to the image folder, with "/" separators
    role: str  # pool (may be picked and labeled) or holdout (evaluation only)
    sha256: str
    bytes: int
    mtime_ns: int
    width: int
    height: int


def describe_image(root: Path, relative: str, role: str) -> ImageEntry:
    """Fingerprint and size of one image; unreadable images are refused at init, naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = root / relative
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as error:
        raise LabelingError(f"cannot read image {path}: {error}") from None
    stat = path.stat()
    return ImageEntry(relative, role, sha256_of(path), stat.st_size, stat.st_mtime_ns, width, height)


def image_changes(root: Path, images: list[ImageEntry]) -> list[str]:
    """Images that are missing or whose content differs from their fingerprint at init.

    Size and mtime unchanged -> trusted without reading; otherwise the content is hashed again, so a
    touched but identical file is not reported.
    """
    changed = []
    for entry in images:
        path = root / entry.path
        try:
            stat = path.stat()
        except FileNotFoundError:
            changed.append(f"{entry.path} (missing)")
            continue
        if stat.st_size == entry.bytes and stat.st_mtime_ns == entry.mtime_ns:
            continue
        if stat.st_size != entry.bytes or sha256_of(path) != entry.sha256:
            changed.append(f"{entry.path} (content differs)")
    return changed


def write_images_csv(path: Path, images: list[ImageEntry]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(IMAGE_COLUMNS)
    for entry in images:
        writer.writerow([getattr(entry, c) for c in IMAGE_COLUMNS])
    atomic_write_text(path, out.getvalue())


def read_images_csv(path: Path) -> list[ImageEntry]:
    with open(path, newline="") as f:
        return [
            ImageEntry(
                r["path"],
                r["role"],
                r["sha256"],
                int(r["bytes"]),
                int(r["mtime_ns"]),
                int(r["width"]),
                int(r["height"]),
            )
            for r in csv.DictReader(f)
        ]


@dataclass
class Labels:
    """Labels by image path. A label is a class name (classification) or a list of boxes (detection,
    `{"boxes": [[x1, y1, x2, y2], ...], "classes": [...], "difficult": [...]}` in image pixels, continuous
    coordinates: a full-image box is [0, 0, W, H]). `revision` grows with every import that changed something."""

    pool: dict[str, dict] = field(default_factory=dict)  # path -> {"label", "round", "source"}
    holdout: dict[str, dict] = field(default_factory=dict)  # path -> {"label", "source"}
    revision: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Labels":
        data = json.loads(text)
        return cls(data["pool"], data["holdout"], int(data["revision"]))


@dataclass
class Round:
    """One `next`: trained on the labels of revision `labels_revision`, then picked these images."""

    number: int
    k: int  # how many picks were asked for (fewer when fewer images were left)
    picks: list[dict]  # [{"path", "score", "guess", "guess_score", ...}] best first
    labels_revision: int
    n_labeled: int
    metric: str | None = None
    value: float | None = None
    ranking_accuracy: float | None = None
    uncertainty: str | None = None
    holdout_loss: float | None = None  # mean per-image loss of the task on the held-out part
    random: bool = False  # no labels yet: picked at random (the paper's random initial set)
    seconds: dict = field(default_factory=dict)


class Project:
    """Reading and committing a project directory's files (see the module docstring)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta_path = self.dir / PROJECT_FILE
        if not meta_path.is_file():
            raise LabelingError(
                f"{self.dir} is not an al-label project (no {PROJECT_FILE}); create one with al-label init"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != PROJECT_FORMAT:
            raise LabelingError(
                f"{meta_path} has format {self.meta.get('format')}, this al-label reads {PROJECT_FORMAT}"
            )
        self.images_root = Path(self.meta["images_root"])
        self.kind: str = self.meta["kind"]
        self.classes: list[str] = list(self.meta["classes"])
        self.images = read_images_csv(self.dir / IMAGES_FILE)
        self.pool = [e for e in self.images if e.role == POOL]
        self.holdout = [e for e in self.images if e.role == HOLDOUT]
        self.by_path = {e.path: e for e in self.images}
        self.pool_index = {e.path: i for i, e in enumerate(self.pool)}

    # --- files -----------------------------------------------------------------------------------------
    @property
    def config(self) -> DictConfig:
        return OmegaConf.load(self.dir / CONFIG_FILE)

    def labels(self) -> Labels:
        return Labels.from_json((self.dir / LABELS_FILE).read_text())

    def save_labels(self, labels: Labels) -> None:
        atomic_write_text(self.dir / LABELS_FILE, labels.to_json())

    def state(self) -> dict:
        path = self.dir / STATE_FILE
        if not path.is_file():
            return {"rounds": [], "learner": None}
        from al_runner.rundir import load_tensors_only  # weights_only: reading a project never runs code

        return load_tensors_only(path, LabelingError)

    def rounds(self) -> list[Round]:
        return [Round(**r) for r in self.state()["rounds"]]

    def save_state(self, rounds: list[Round], learner_state: dict | None) -> None:
        atomic_torch_save(self.dir / STATE_FILE, {"rounds": [asdict(r) for r in rounds], "learner": learner_state})

    def round_progress(self, number: int, labels_revision: int) -> dict | None:
        """The training progress a killed `next` saved for round `number` on these labels, else None (a file of
        another round or of other labels is stale: removed)."""
        path = self.dir / ROUND_PROGRESS_FILE
        if not path.is_file():
            return None
        from al_runner.rundir import load_tensors_only

        saved = load_tensors_only(path, LabelingError)
        if (saved.get("format"), saved.get("round"), saved.get("labels_revision")) != (
            ROUND_PROGRESS_FORMAT,
            number,
            labels_revision,
        ):
            path.unlink(missing_ok=True)
            return None
        return saved["progress"]

    def save_round_progress(self, number: int, labels_revision: int, progress: dict) -> None:
        record = {"format": ROUND_PROGRESS_FORMAT, "round": number, "labels_revision": labels_revision}
        atomic_torch_save(self.dir / ROUND_PROGRESS_FILE, record | {"progress": progress})

    def drop_round_progress(self) -> None:
        (self.dir / ROUND_PROGRESS_FILE).unlink(missing_ok=True)

    def label_studio(self) -> dict:
        path = self.dir / LABEL_STUDIO_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def save_label_studio(self, record: dict) -> None:
        atomic_write_text(self.dir / LABEL_STUDIO_FILE, json.dumps(record, indent=1, sort_keys=True))

    def round_dir(self, number: int) -> Path:
        return self.dir / ROUNDS_DIR / f"round-{number:03d}"

    # --- checks ------------------------------------------------------------------------------------------
    def check_images_unchanged(self) -> None:
        changed = image_changes(self.images_root, self.images)
        if changed:
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            raise LabelingError(
                f"{len(changed)} image(s) under {self.images_root} changed since al-label init: "
                f"{', '.join(changed[:5])}{more}. Restore them, or start a new project on the current folder"
            )

    # --- what is where -----------------------------------------------------------------------------------
    def requested(self, rounds: list[Round]) -> dict[str, int]:
        """Image -> the latest round that exported it for labeling."""
        asked: dict[str, int] = {}
        for r in rounds:
            for pick in r.picks:
                asked[pick["path"]] = r.number
        return asked

    def waiting(self, rounds: list[Round], labels: Labels) -> list[str]:
        """Exported for labeling and not labeled yet, oldest round first."""
        return [
            path for path, _ in sorted(self.requested(rounds).items(), key=lambda kv: kv[1]) if path not in labels.pool
        ]


@contextlib.contextmanager
def staged_directory(directory: Path):
    """Build a project in a temporary sibling folder and rename it into place at the end: init is all or
    nothing (a refused or killed init leaves no project behind)."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise LabelingError(f"{directory} already exists and is not an empty folder; choose a new project directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.init.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if directory.exists():
            directory.rmdir()  # empty (checked above)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

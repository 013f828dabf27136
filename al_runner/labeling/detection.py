"""al-label's detection task: boxes with class names on the images of a folder.

The model-facing part is al-run's `VOCDetectionTask` (SSD augmentation, per-image MultiBox loss, detection
entropy, VOC07 mAP), given `VOCSplit`s built from the project instead of read from a VOCdevkit: the pool
lists every pool image, with the `Annotation` of each labeled one and None for the others, which no code path
reads (training batches come from labeled indices only; `input_batches` decode images without annotations).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import torch

from al_runner.labeling.formats import LS_CONTROL, LS_IMAGE
from al_runner.labeling.project import ImageEntry, Labels, Project
from al_runner.tasks.detection import VOCDetectionTask
from al_runner.tasks.detection.multibox import entropy_over_detections
from al_runner.tasks.detection.voc_data import Annotation, VOCSplit

BOX_TOLERANCE_PX = 0.01  # float rounding of percent coordinates (Label Studio) may overshoot the border by this much


class ProjectDetectionTask(VOCDetectionTask):
    """`VOCDetectionTask` on given splits. Its constructor reads a VOCdevkit; this one takes the splits and builds
    the rest through the same `VOCDetectionTask._build` (tests/test_label_files.py checks both set the same
    attributes)."""

    def __init__(
        self,
        name: str,
        classes: list[str],
        pool: VOCSplit,
        test: VOCSplit,
        image_size: int,
        num_workers: int = 0,
        augmentation: dict | None = None,
        loss: dict | None = None,
        detection: dict | None = None,
        uncertainty=entropy_over_detections,
    ):
        self._build(name, classes, pool, test, image_size, num_workers, augmentation, loss, detection, uncertainty)

    def fingerprint(self) -> dict[str, str]:
        return {}  # the project checks its images' content itself (images.csv)


def to_annotation(label: dict, entry: ImageEntry, classes: list[str]) -> Annotation:
    index = {name: i + 1 for i, name in enumerate(classes)}  # 0 is the background, as in VOCDetectionTask
    return Annotation(
        boxes=torch.tensor(label["boxes"], dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor([index[c] for c in label["classes"]], dtype=torch.int64),
        difficult=torch.tensor(label["difficult"], dtype=torch.bool).reshape(-1),
        width=entry.width,
        height=entry.height,
    )


class DetectionLabeling:
    """What al-label needs to know about detection labels (parse, check, guess, show)."""

    label_formats = "VOC XML files (one per image, or a folder of them), a COCO json, or a Label Studio JSON export"

    def __init__(
        self,
        name: str,
        image_size: int,
        num_workers: int = 0,
        augmentation: dict | None = None,
        loss: dict | None = None,
        detection: dict | None = None,
        uncertainty=entropy_over_detections,
        guess_threshold: float = 0.3,
        max_guesses: int = 20,
    ):
        self.name, self.image_size, self.num_workers = name, int(image_size), int(num_workers)
        self.settings = {"augmentation": augmentation, "loss": loss, "detection": detection, "uncertainty": uncertainty}
        self.guess_threshold, self.max_guesses = float(guess_threshold), int(max_guesses)

    # --- labels -------------------------------------------------------------------------------------------
    def check(self, label, entry: ImageEntry, classes: list[str], stated_size) -> str | None:
        """Why these boxes cannot be taken for this image (None: they can). Boxes within a hundredth of a
        pixel of the border are clamped to it; anything further out is refused, not clipped."""
        if not isinstance(label, dict) or "boxes" not in label:
            return "expected boxes for a detection project, got a class name"
        if stated_size is not None and tuple(stated_size) != (entry.width, entry.height):
            stated = f"{stated_size[0]}x{stated_size[1]}"
            return f"the label file says the image is {stated} but it is {entry.width}x{entry.height}"
        for k, (box, name) in enumerate(zip(label["boxes"], label["classes"])):
            if name not in classes:
                return f"box {k}: unknown class '{name}'; known classes: {', '.join(classes)}"
            x1, y1, x2, y2 = box
            if x2 <= x1 or y2 <= y1:
                return f"box {k} ({name}) is empty: [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
            t = BOX_TOLERANCE_PX
            if x1 < -t or y1 < -t or x2 > entry.width + t or y2 > entry.height + t:
                return (
                    f"box {k} ({name}) [{x1:g}, {y1:g}, {x2:g}, {y2:g}] reaches outside the "
                    f"{entry.width}x{entry.height} image"
                )
            box[:] = [max(x1, 0.0), max(y1, 0.0), min(x2, float(entry.width)), min(y2, float(entry.height))]
        return None

    def classes_of(self, label: dict) -> list[str]:
        return list(label["classes"])

    def describe(self, label: dict) -> str:
        return " ".join(label["classes"]) if label["classes"] else "(no objects)"

    # --- the model's task -------------------------------------------------------------------------------
    def build_task(self, project: Project, labels: Labels) -> ProjectDetectionTask:
        def split(entries: list[ImageEntry], known: dict[str, dict]) -> VOCSplit:
            return VOCSplit(
                images=[str(project.images_root / e.path) for e in entries],
                annotation_files=[known[e.path]["source"] if e.path in known else "" for e in entries],
                annotations=[
                    to_annotation(known[e.path]["label"], e, project.classes) if e.path in known else None
                    for e in entries
                ],
            )

        return ProjectDetectionTask(
            self.name,
            project.classes,
            split(project.pool, labels.pool),
            split(project.holdout, labels.holdout),
            self.image_size,
            self.num_workers,
            **self.settings,
        )

    # --- the model's guess --------------------------------------------------------------------------------
    def guesses(self, task: ProjectDetectionTask, outputs: dict, entries: list[ImageEntry]) -> list[dict]:
        """Detections above `guess_threshold` (at most `max_guesses`), in the original image's pixels."""
        found = []
        for detections, entry in zip(task.detect(outputs), entries):
            keep = detections["scores"] >= self.guess_threshold
            scores, order = detections["scores"][keep].sort(descending=True)
            order = order[: self.max_guesses]
            scale = torch.tensor([entry.width, entry.height, entry.width, entry.height]) / self.image_size
            boxes = (detections["boxes"][keep][order].cpu() * scale).tolist()
            names = [task.classes[int(c) - 1] for c in detections["labels"][keep][order].tolist()]
            found.append(
                {
                    "guess": " ".join(names) if names else "(nothing)",
                    "guess_score": float(scores[0]) if len(order) else 0.0,
                    "boxes": [[round(v, 2) for v in b] for b in boxes],
                    "classes": names,
                    "scores": [round(float(s), 4) for s in scores[: self.max_guesses].tolist()],
                }
            )
        return found

    # --- Label Studio ---------------------------------------------------------------------------------------
    def label_config(self, classes: list[str]) -> str:
        labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
        return (
            f'<View>\n  <Image name="{LS_IMAGE}" value="${LS_IMAGE}"/>\n'
            f'  <RectangleLabels name="{LS_CONTROL}" toName="{LS_IMAGE}">\n{labels}\n  </RectangleLabels>\n</View>\n'
        )

    def prediction_result(self, pick: dict, entry: ImageEntry) -> list[dict]:
        """Each guessed box as a Label Studio `rectanglelabels` result: x, y, width, height in percent of the
        image (top-left corner), with the original size, as Label Studio's pre-annotation format asks."""
        results = []
        for k, (box, name, score) in enumerate(
            zip(pick.get("boxes", []), pick.get("classes", []), pick.get("scores", []))
        ):
            x1, y1, x2, y2 = box
            results.append(
                {
                    "id": f"guess{k}",
                    "type": "rectanglelabels",
                    "from_name": LS_CONTROL,
                    "to_name": LS_IMAGE,
                    "original_width": entry.width,
                    "original_height": entry.height,
                    "image_rotation": 0,
                    "value": {
                        "x": 100 * x1 / entry.width,
                        "y": 100 * y1 / entry.height,
                        "width": 100 * (x2 - x1) / entry.width,
                        "height": 100 * (y2 - y1) / entry.height,
                        "rotation": 0,
                        "rectanglelabels": [name],
                    },
                    "score": score,
                }
            )
        return results

    def overlay(self, pick: dict, entry: ImageEntry) -> list:
        """Guessed boxes (image pixels) with their class names, for the contact sheet."""
        return list(zip(pick.get("boxes", []), pick.get("classes", [])))

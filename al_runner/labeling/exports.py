"""A round's exports: picks.csv, a Label Studio task file with the model's guess as pre-annotation, and a
contact sheet PNG of the picks with their guesses.

Label Studio task format (its "Import pre-annotated data" guide): one task per image,
`{"data": {"image": <url>, ...}, "predictions": [{"model_version": ..., "score": ..., "result": [...]}]}`;
`result` holds `choices` for classification and `rectanglelabels` (percent of the image) for detection,
with `from_name`/`to_name` naming the control and image tags of the project's labeling config.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import quote

from al_runner.atomic import atomic_write_bytes, atomic_write_text
from al_runner.labeling.formats import LS_IMAGE
from al_runner.labeling.project import Project, Round
from al_runner.rundir import write_csv

PICK_COLUMNS = ("rank", "path", "score", "guess", "guess_score")
PICKS_CSV, TASKS_JSON, CONTACT_SHEET = "picks.csv", "tasks.json", "contact_sheet.png"
LOCAL_FILES_URL = "/data/local-files/?d="  # Label Studio's local file serving (LABEL_STUDIO_LOCAL_FILES_*)


def image_url(project: Project, path: str, document_root: str = "/") -> str:
    """Where Label Studio finds the image: its local-files URL, relative to its
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default here: /, i.e. the absolute path without the leading /)."""
    absolute = (project.images_root / path).resolve()
    try:
        relative = absolute.relative_to(Path(document_root).resolve()).as_posix()
    except ValueError:
        relative = absolute.as_posix().lstrip("/")
    return LOCAL_FILES_URL + quote(relative)


def model_version(project: Project, round_: Round) -> str:
    cfg = project.config
    return f"al_runner {cfg.model.name} {cfg.sampler.name} round {round_.number}"


def label_studio_tasks(
    project: Project, labeling, round_: Round, document_root: str = "/", only: set[str] | None = None
) -> list[dict]:
    """The round's picks (those in `only`, if given) as Label Studio tasks; `data.path` maps an exported or
    pulled task back to the image. A random round (no model yet) carries no prediction."""
    tasks = []
    for rank, pick in enumerate(round_.picks, start=1):
        if only is not None and pick["path"] not in only:
            continue
        entry = project.by_path[pick["path"]]
        task = {
            "data": {
                LS_IMAGE: image_url(project, pick["path"], document_root),
                "path": pick["path"],
                "al_round": round_.number,
                "al_rank": rank,
            }
        }
        if pick.get("guess") is not None:
            task["predictions"] = [
                {
                    "model_version": model_version(project, round_),
                    "score": float(pick["score"]),
                    "result": labeling.prediction_result(pick, entry),
                }
            ]
        tasks.append(task)
    return tasks


def write_round_exports(project: Project, labeling, round_: Round, document_root: str = "/") -> Path:
    """Rewrite the round's three files from the committed round record (same picks every time)."""
    out = project.round_dir(round_.number)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "rank": rank,
            "path": p["path"],
            "score": p["score"],
            "guess": p.get("guess"),
            "guess_score": p.get("guess_score"),
        }
        for rank, p in enumerate(round_.picks, start=1)
    ]
    write_csv(out / PICKS_CSV, PICK_COLUMNS, rows)
    tasks = label_studio_tasks(project, labeling, round_, document_root)
    atomic_write_text(out / TASKS_JSON, json.dumps(tasks, indent=1))
    atomic_write_bytes(out / CONTACT_SHEET, contact_sheet(project, labeling, round_))
    return out


def contact_sheet(
    project: Project, labeling, round_: Round, tile: int = 128, columns: int = 8, max_tiles: int = 200
) -> bytes:
    """PNG bytes: each pick as a thumbnail with its rank, guess and score (boxes drawn for detection)."""
    import io

    from PIL import Image, ImageDraw

    picks = round_.picks[:max_tiles]
    rows = max(1, math.ceil(len(picks) / columns))
    caption = 28
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, pick in enumerate(picks):
        entry = project.by_path[pick["path"]]
        x0, y0 = (k % columns) * tile, (k // columns) * (tile + caption)
        with Image.open(project.images_root / entry.path) as image:
            thumb = image.convert("RGB").resize((tile, tile))
        sheet.paste(thumb, (x0, y0))
        sx, sy = tile / entry.width, tile / entry.height
        for (x1, y1, x2, y2), name in labeling.overlay(pick, entry):
            draw.rectangle([x0 + x1 * sx, y0 + y1 * sy, x0 + x2 * sx, y0 + y2 * sy], outline="red", width=2)
            draw.text((x0 + x1 * sx + 2, y0 + y1 * sy + 1), name, fill="red")
        guess = pick.get("guess")
        text = f"{k + 1}. {guess} {pick['guess_score']:.2f}" if guess is not None else f"{k + 1}. (random pick)"
        draw.text((x0 + 2, y0 + tile + 2), text[:24], fill="black")
        draw.text((x0 + 2, y0 + tile + 14), Path(entry.path).name[:24], fill="gray")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()

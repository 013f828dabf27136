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


# What the numbers under each thumbnail are, written once across the top of the sheet.
CONTACT_SHEET_KEY = (
    "#rank: pick order (#1 = the sampler's top score) | guess: the model's class "
    "(detection: its boxes' classes) | p: the model's confidence in it (softmax; top box score) "
    "| grey: file name"
)


def contact_sheet_key_lines(width: int) -> list[str]:
    """`CONTACT_SHEET_KEY` wrapped to a sheet `width` pixels wide (~6 px per character)."""
    import textwrap

    return textwrap.wrap(CONTACT_SHEET_KEY, width=max(20, width // 6 - 2))


def contact_sheet_key_height(width: int) -> int:
    """Pixels the key takes at the top of a sheet `width` pixels wide (12 per line, 6 of margin)."""
    return 12 * len(contact_sheet_key_lines(width)) + 6


def pick_caption(rank: int, pick: dict) -> tuple[str, str]:
    """The two lines under a thumbnail, each item named: ("#1 guess: cat", "p=0.29"); ("#1 random pick", "")
    for a pick made before there was a model. The file name follows the second line, in grey."""
    guess = pick.get("guess")
    if guess is None:
        return f"#{rank} random pick", ""
    return f"#{rank} guess: {guess}", f"p={pick['guess_score']:.2f}"


def contact_sheet(
    project: Project, labeling, round_: Round, tile: int = 128, columns: int = 8, max_tiles: int = 200
) -> bytes:
    """PNG bytes: each pick as a thumbnail with its rank, guess and the guess's score, named as such (boxes drawn
    for detection), under a line saying what each caption item is (`CONTACT_SHEET_KEY`)."""
    import io

    from PIL import Image, ImageDraw

    picks = round_.picks[:max_tiles]
    rows = max(1, math.ceil(len(picks) / columns))
    caption = 28  # two lines of text
    key_lines = contact_sheet_key_lines(columns * tile)
    header = contact_sheet_key_height(columns * tile)
    sheet = Image.new("RGB", (columns * tile, header + rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for line_number, line in enumerate(key_lines):
        draw.text((2, 2 + 12 * line_number), line, fill="black")
    for k, pick in enumerate(picks):
        entry = project.by_path[pick["path"]]
        x0, y0 = (k % columns) * tile, header + (k // columns) * (tile + caption)
        with Image.open(project.images_root / entry.path) as image:
            thumb = image.convert("RGB").resize((tile, tile))
        sheet.paste(thumb, (x0, y0))
        sx, sy = tile / entry.width, tile / entry.height
        for (x1, y1, x2, y2), name in labeling.overlay(pick, entry):
            draw.rectangle([x0 + x1 * sx, y0 + y1 * sy, x0 + x2 * sx, y0 + y2 * sy], outline="red", width=2)
            draw.text((x0 + x1 * sx + 2, y0 + y1 * sy + 1), name, fill="red")
        first, second = pick_caption(k + 1, pick)
        draw.text((x0 + 2, y0 + tile + 2), _fit(draw, first, tile - 4), fill="black")
        if second:
            draw.text((x0 + 2, y0 + tile + 14), second, fill="black")
        offset = draw.textlength(second + "  ") if second else 0
        draw.text((x0 + 2 + offset, y0 + tile + 14), _fit(draw, Path(entry.path).name, tile - 4 - offset), fill="gray")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _fit(draw, text: str, width: float) -> str:
    """`text`, cut with ".." at its end when wider than `width` pixels in the sheet's font."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "..") > width:
        text = text[:-1]
    return text + ".."

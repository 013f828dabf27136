"""al-label where a new user stumbles: held-out images outside --images, importing the exported tasks.json
(predictions, no answers), a hand-filled picks.csv, and a contact sheet whose numbers say what they are."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

from al_runner.errors import Terminated
from al_runner.labeling import cli as label_cli
from al_runner.labeling.exports import CONTACT_SHEET_KEY, contact_sheet, pick_caption
from al_runner.labeling.project import Project
from tests.test_label_files import CLASSES, FAST, images, new_project, run, write_csv  # noqa: F401 - fixture

__all__ = ["images"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):  # noqa: F811 - the module-scoped image fixture
    """A project whose round 1 (12 picks, guessed by a trained model) waits for labels."""
    project = new_project(tmp_path_factory.mktemp("frictions"), images)
    assert run("next", project, "--k", "12")[0] == 0
    return project


def test_held_out_images_outside_the_image_folder_are_refused_naming_the_fix(tmp_path, images, monkeypatch):  # noqa: F811
    """Also when the pool has images of the same file names (0000.png): they are other images."""
    root, truth = images
    elsewhere = tmp_path / "test_images"
    elsewhere.mkdir()
    held = sorted(p for p in truth if p.startswith("held/"))[:4]
    for path in held:
        shutil.copy(root / path, elsewhere / Path(path).name)
    holdout = write_csv(tmp_path / "holdout.csv", [(str(elsewhere / Path(p).name), truth[p]) for p in held])
    code, _, err = run(
        "init", tmp_path / "p", "--images", root / "pool", "--holdout", holdout, "--classes", ",".join(CLASSES), *FAST
    )
    assert code == 1 and not (tmp_path / "p").exists()
    assert "held-out images must sit under the --images folder" in err
    monkeypatch.chdir(tmp_path)  # the same files named relative to the working directory
    relative = write_csv(tmp_path / "holdout_rel.csv", [(f"test_images/{Path(p).name}", truth[p]) for p in held])
    code, _, err = run(
        "init", tmp_path / "p", "--images", root / "pool", "--holdout", relative, "--classes", ",".join(CLASSES), *FAST
    )
    assert code == 1 and "test_images/0000.png: unknown image" in err and not (tmp_path / "p").exists()
    docs = (Path(__file__).resolve().parent.parent / "docs" / "labeling.md").read_text()
    assert "held-out images must sit under the `--images` folder" in docs.replace("\n", " ").lower()


def test_importing_the_exported_tasks_json_says_no_annotation_was_found(exported):
    before = (exported / "labels.json").read_bytes()
    tasks = exported / "rounds" / "round-001" / "tasks.json"
    code, out, err = run("import", exported, tasks)
    assert code != 0
    assert "no annotation found" in err and "12 of its 12 task(s) carry only the model's predictions" in err
    assert "import Label Studio's JSON export" in err  # what to do instead
    assert "0 label(s) taken" in out and (exported / "labels.json").read_bytes() == before


def _picks(project: Path) -> tuple[list[str], list[dict]]:
    with open(project / "rounds" / "round-001" / "picks.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_a_picks_csv_with_a_label_column_added_by_hand_is_taken(exported, images, tmp_path):  # noqa: F811
    truth = images[1]
    header, rows = _picks(exported)
    filled = tmp_path / "picks_filled.csv"  # as a spreadsheet saves it: semicolons, the new column capitalised
    with open(filled, "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow([*header, "Label"])
        for row in rows[:3]:
            writer.writerow([*(row[c] for c in header), truth[row["path"]]])
    code, out, err = run("import", exported, filled)
    assert code == 0, err
    assert "3 label(s) taken" in out
    labels = Project(exported).labels().pool
    assert all(labels[row["path"]]["label"] == truth[row["path"]] for row in rows[:3])


def test_a_picks_csv_without_answers_is_refused_naming_the_column_to_add(exported):
    picks = exported / "rounds" / "round-001" / "picks.csv"
    code, _, err = run("import", exported, picks)
    assert code == 1
    assert "this is a picks.csv without answers; add a column named label" in err


def test_the_contact_sheet_names_each_number_it_shows(tmp_path, monkeypatch):
    Image.new("RGB", (16, 16), "gray").save(tmp_path / "a.png")
    entry = SimpleNamespace(path="a.png", width=16, height=16)
    project = SimpleNamespace(by_path={"a.png": entry}, images_root=tmp_path)
    labeling = SimpleNamespace(overlay=lambda pick, entry: [])
    round_ = SimpleNamespace(picks=[{"path": "a.png", "score": 0.8, "guess": "5", "guess_score": 0.29}])
    drawn = []
    original = ImageDraw.ImageDraw.text
    monkeypatch.setattr(
        ImageDraw.ImageDraw,
        "text",
        lambda self, xy, text, *a, **k: drawn.append(text) or original(self, xy, text, *a, **k),
    )
    contact_sheet(project, labeling, round_)
    assert "#1 guess: 5" in drawn and "p=0.29" in drawn  # not "1. 5 0.29"
    key = " ".join(line for line in drawn if line not in ("#1 guess: 5", "p=0.29", "a.png"))
    assert key == CONTACT_SHEET_KEY  # the sheet says, once, what #, guess and p are
    assert all(
        word in CONTACT_SHEET_KEY
        for word in ("#rank: pick order", "guess: the model's class", "p: the model's confidence")
    )
    assert pick_caption(3, {"guess": None}) == ("#3 random pick", "")


@pytest.mark.parametrize("stop,code,word", [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated")])
def test_a_stopped_command_exits_as_al_run_does_with_one_line(monkeypatch, stop, code, word):
    def stopped(args):
        raise stop()

    monkeypatch.setattr(label_cli, "cmd_status", stopped)
    exit_code, _, err = run("status", "any_project")
    assert exit_code == code
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert line.startswith(f"al-label: {word}") and "rerun the same command" in line

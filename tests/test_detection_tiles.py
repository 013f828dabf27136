"""The tiling command and the VOC-folder task, on images + XML built here in the real formats."""

import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from al_runner.errors import ConfigError, DataError
from al_runner.runner import run_experiment
from al_runner.tasks.detection import tiles
from al_runner.tasks.detection.voc_folder import VOCFolderTask, class_names_in, read_voc_folder
from tests.conftest import compose_config

# (name, xmin, ymin, xmax, ymax) in VOC's 1-based inclusive pixels, on a 500 x 300 image cut into 100-px tiles
# with the right 100 px (one tile column) as the test block
BOXES = [
    ("Tree", 11, 11, 40, 40),  # inside tile x0_y0
    ("Tree", 91, 21, 130, 50),  # 10 of 40 px in x0, 30 in x100: only tile x100_y0 keeps it (0.75 visible)
    ("Tree", 81, 81, 120, 120),  # 20 x 20 px in each of four tiles: 0.25 visible each, dropped at 0.5
    ("Dead", 201, 201, 260, 260),  # inside tile x200_y200; renamed
    ("Tree", 381, 101, 440, 140),  # straddles the split at x = 400: centre 410 -> test; pool tile x300 never has it
    ("Tree", 421, 251, 470, 300),  # test block, bottom edge of the image
]


def write_pair(folder: Path, stem: str, size=(500, 300), boxes=BOXES, xml_size=None, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{stem}{suffix}")
    w, h = xml_size or size
    objects = "".join(
        f"<object><name>{n}</name><truncated>0</truncated><difficult>{int(n == 'Dead')}</difficult><bndbox>"
        f"<xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in boxes
    )
    (folder / f"{stem}.xml").write_text(
        f"<annotation><filename>{stem}.tif</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{objects}</annotation>"
    )


def tile_objects(dest: Path, tile: str) -> list[tuple]:
    root = ET.parse(dest / "Annotations" / f"{tile}.xml").getroot()
    return [
        (
            o.findtext("name"),
            *(int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")),
            int(o.findtext("truncated")),
            int(o.findtext("difficult")),
        )
        for o in root.iter("object")
    ]


@pytest.fixture
def tiled(tmp_path):
    write_pair(tmp_path / "src", "scene")
    counts = tiles.write_tiles(
        tmp_path / "src", tmp_path / "tiles", tile=100, test_fraction=0.2, rename={"Dead": "Tree"}
    )
    return tmp_path / "tiles", counts


def test_tiles_keep_exact_coordinates_clip_and_mark_cut_boxes(tiled):
    dest, counts = tiled
    assert counts == {"pool_tiles": 12, "test_tiles": 3, "boxes": 6, "boxes_dropped": 1}
    assert tile_objects(dest, "scene_x0_y0") == [("Tree", 11, 11, 40, 40, 0, 0)]
    assert tile_objects(dest, "scene_x100_y0") == [("Tree", 1, 21, 30, 50, 1, 0)]  # clipped, truncated
    assert tile_objects(dest, "scene_x200_y200") == [("Tree", 1, 1, 60, 60, 0, 1)]  # renamed, difficult kept
    assert tile_objects(dest, "scene_x400_y100") == [("Tree", 1, 1, 40, 40, 1, 0)]
    assert tile_objects(dest, "scene_x300_y100") == []  # the straddling box is the test side's
    assert tile_objects(dest, "scene_x400_y200") == [("Tree", 21, 51, 70, 100, 0, 0)]
    with Image.open(dest / "JPEGImages" / "scene_x400_y200.jpg") as image:
        assert image.size == (100, 100)


def test_every_box_is_accounted_for_and_none_crosses_the_split(tiled):
    dest, _ = tiled
    boxes = pd.read_csv(dest / "boxes.csv", keep_default_na=False)
    table = pd.read_csv(dest / "tiles.csv")
    assert len(boxes) == len(BOXES)
    assert list(boxes.status) == ["kept", "kept", "dropped", "kept", "kept", "kept"]
    split_of = dict(zip(table.tile, table.split))
    for row in boxes.itertuples():
        sides = {split_of[t] for t in row.tiles.split(";") if t}
        assert sides <= {"trainval" if row.region == "trainval" else "test"}
    assert sum(table.boxes) == sum(len(tile_objects(dest, t)) for t in table.tile)
    pool = (dest / "ImageSets/Main/trainval.txt").read_text().split()
    test = (dest / "ImageSets/Main/test.txt").read_text().split()
    assert not set(pool) & set(test) and len(pool) + len(test) == len(table)
    # the test block is one whole strip: every test tile lies right of every pool tile, none overlaps
    lefts = dict(zip(table.tile, table.left))
    assert min(lefts[t] for t in test) >= max(lefts[t] + 100 for t in pool)


def test_edge_tiles_align_to_the_region_and_empty_tiles_can_be_dropped(tmp_path):
    assert tiles.starts(0, 250, 100) == [0, 100, 150]
    assert tiles.starts(0, 90, 100) == []
    assert tiles.test_block(150, 150, 100, 0.25, "right") is None  # too small for both: pool whole
    write_pair(tmp_path / "src", "scene")
    counts = tiles.write_tiles(tmp_path / "src", tmp_path / "out", tile=100, test_fraction=0.2, drop_empty=True)
    kept = pd.read_csv(tmp_path / "out" / "tiles.csv")
    assert (kept.boxes > 0).all() and counts["pool_tiles"] + counts["test_tiles"] == len(kept) == 5


def test_a_wheel_file_is_a_source(tmp_path):
    write_pair(tmp_path / "src", "scene")
    wheel = tmp_path / "deepforest-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in (tmp_path / "src").iterdir():
            archive.write(path, f"deepforest/data/{path.name}")
        archive.writestr("deepforest/data/orphan.xml", "<annotation/>")  # an XML without its image is skipped
    counts = tiles.write_tiles(wheel, tmp_path / "out", tile=100, test_fraction=0.2)
    assert counts["pool_tiles"] == 12 and counts["boxes"] == 6
    assert (tmp_path / "out" / "JPEGImages" / "scene_x0_y0.jpg").is_file()


def test_the_command_refuses_bad_input_in_one_line(tmp_path):
    write_pair(tmp_path / "src", "scene", xml_size=(400, 300))
    command = [sys.executable, "-m", "al_runner.tasks.detection.tiles", str(tmp_path / "src"), str(tmp_path / "o")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "scene.xml says 400x300 but its image scene.png is 500x300" in done.stderr
    assert tiles.main([str(tmp_path / "src"), str(tmp_path / "o2"), "--tile", "0"]) == 2
    with pytest.raises(SystemExit):
        tiles.main([str(tmp_path / "src"), str(tmp_path / "o3"), "--test-side", "middle"])


# --- the VOC-folder task --------------------------------------------------------------------------------------
def test_voc_folder_reads_named_splits_and_class_names_from_the_annotations(tiled):
    dest, _ = tiled
    assert class_names_in(dest, ["trainval", "test"]) == ["Tree"]
    pool = read_voc_folder(dest, "trainval", ["Tree"])
    assert len(pool) == 12 and Path(pool.images[0]).suffix == ".jpg"
    empty = pool.annotations[pool.images.index(str(dest / "JPEGImages" / "scene_x300_y0.jpg"))]
    assert empty.boxes.shape == (0, 4)  # a tile without a box stays in the pool, all background
    difficult = pool.annotations[pool.images.index(str(dest / "JPEGImages" / "scene_x200_y200.jpg"))]
    assert difficult.difficult.tolist() == [True] and difficult.boxes.tolist() == [[0.0, 0.0, 60.0, 60.0]]


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("class", "object 0 ('Tree'): unknown class; known classes: Oak"),
        ("missing_image", "names image 'ghost' but no JPEGImages/ghost"),
        ("size", "scene_x0_y0.xml says 120x100 but its image"),
        ("split", "split file not found"),
    ],
)
def test_voc_folder_refuses_bad_folders_naming_the_file(tiled, breakage, message):
    dest, _ = tiled
    classes, split = ["Tree"], "trainval"
    if breakage == "class":
        classes = ["Oak"]
    elif breakage == "missing_image":
        with (dest / "ImageSets/Main/trainval.txt").open("a") as f:
            f.write("ghost\n")
    elif breakage == "size":
        xml = dest / "Annotations/scene_x0_y0.xml"
        xml.write_text(xml.read_text().replace("<width>100</width>", "<width>120</width>"))
    else:
        split = "val"
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_voc_folder(dest, split, classes)


def test_voc_folder_refuses_task_voc_year_lists():
    with pytest.raises(ConfigError, match="task.build.pool_sets is task=voc's"):
        VOCFolderTask("x", "/nonexistent", ["Tree"], pool_sets=[[2007, "trainval"]])


def test_al_run_on_a_tiled_folder_names_picks_by_tile(tiled, tmp_path):
    dest, _ = tiled
    cfg = compose_config(
        [
            "task=voc_folder",
            f"task.root={dest}",
            "model=ssdlite320_mobilenet_v3",
            "schedule=voc_cpu",
            "sampler=learning_loss",
            "schedule.cycles=2",
            "schedule.initial_size=4",
            "schedule.query_size=2",
            "schedule.epochs=1",
            "schedule.batch_size=2",
            "task.image_size=64",
            "progress=false",
            "runtime.threads=1",
        ]
    )
    assert cfg.task.classes is None  # read from the annotations
    run_experiment(cfg, tmp_path / "run")
    cycles = pd.read_csv(tmp_path / "run" / "cycles.csv")
    assert list(cycles.n_labeled) == [4, 6] and cycles.metric.iloc[0] == "mAP@0.5"
    assert cycles.ranking_accuracy.notna().all()
    selected = pd.read_csv(tmp_path / "run" / "selected.csv")
    assert selected.item.str.match(r"scene_x\d+_y\d+$").all()


def test_a_source_without_any_pair_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.xml").write_text("<annotation/>")  # an XML without its image
    with pytest.raises(DataError, match="no image \\+ VOC XML pair"):
        tiles.write_tiles(tmp_path / "src", tmp_path / "out", tile=100)
    with pytest.raises(DataError, match="not found or not a folder"):
        tiles.write_tiles(tmp_path / "missing", tmp_path / "out2", tile=100)

"""Cut large annotated images into detector-sized tiles, written as a VOC-layout folder (`task=voc_folder`).

    python -m al_runner.tasks.detection.tiles <source> <dest> --tile 400 [--min-visible 0.5] [--drop-empty]
           [--test-fraction 0.25] [--test-side right] [--rename Alive=Tree ...]

<source> is a folder of image + PASCAL VOC XML pairs (paired by file stem: `a.png` + `a.xml`), or a wheel /
zip file holding such pairs (e.g. the `deepforest` wheel: its `deepforest/data/` folder). <dest> receives
JPEGImages/<tile>.jpg, Annotations/<tile>.xml, ImageSets/Main/{trainval,test}.txt, and two ledgers:
tiles.csv (each tile: source image, offset, size, split, boxes) and boxes.csv (each source box: where it went).

Split, spatially disjoint: in every image the test region is one whole block, the `--test-side` strip covering
about `--test-fraction` of the image (a whole number of tiles, at least one); the pool is the rest. Tiles never
straddle the two regions, so no test tile overlaps a pool tile; an image too small for both regions goes to the
pool whole. Each source box belongs to the region that holds its centre and appears only in that region's tiles,
so no object is on both sides. Tiles form a grid from the region's corner; where the region is not a whole number of
tiles, the last tile is aligned to the region's edge (it overlaps its neighbour, inside the same region).

Boxes: clipped to each tile; kept when at least `--min-visible` of its area (default 0.5) lies inside the tile,
marked `truncated` when cut; `difficult` carried over. Coordinates stay exact: VOC's 1-based inclusive integers
in the source give 1-based inclusive integers in the tile (continuous box minus the tile's offset).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image

from al_runner.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SIDES = ("right", "left", "bottom", "top")
POOL_SPLIT, TEST_SPLIT = "trainval", "test"


@dataclass
class SourceBox:
    name: str
    box: tuple[float, float, float, float]  # continuous xyxy in source pixels (VOC xmin - 1, ymin - 1, xmax, ymax)
    difficult: bool
    truncated: bool
    region: str = ""
    tiles: list[str] = field(default_factory=list)


@dataclass
class Tile:
    name: str
    source: str
    left: int
    top: int
    width: int
    height: int
    split: str
    objects: list[tuple[SourceBox, tuple[float, float, float, float], bool]] = field(default_factory=list)


# --- reading sources ---------------------------------------------------------------------------------------
def read_pairs(source: Path) -> Iterator[tuple[str, Image.Image, list[SourceBox]]]:
    """(stem, RGB image, boxes) for every image + XML pair of a folder or a zip/wheel, in stem order, one image
    decoded at a time (a folder of large scenes never sits in memory at once)."""
    with _members(source) as (names, read):
        xmls = sorted(name[:-4] for name in names if name.lower().endswith(".xml"))
        found = 0
        for stem in xmls:
            image_name = next((stem + s for s in IMAGE_SUFFIXES if stem + s in names), None)
            if image_name is None:
                continue  # an XML without its image (the wheel has a few): nothing to cut
            try:
                image = Image.open(io.BytesIO(read(image_name))).convert("RGB")
            except OSError as error:
                raise DataError(f"cannot decode {source}/{image_name}: {error}") from None
            boxes, size = _parse_xml(read(stem + ".xml"), f"{source}/{stem}.xml")
            if size is not None and size != image.size:
                raise DataError(
                    f"{source}/{stem}.xml says {size[0]}x{size[1]} but its image {image_name} is "
                    f"{image.size[0]}x{image.size[1]}"
                )
            found += 1
            yield Path(stem).name, image, boxes
        if not found:
            raise DataError(f"no image + VOC XML pair (same stem, image {'/'.join(IMAGE_SUFFIXES)}) in {source}")


@contextmanager
def _members(source: Path):
    """(file names, read(name) -> bytes) of a folder's files or a zip/wheel's members."""
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            yield {name for name in archive.namelist() if not name.endswith("/")}, archive.read
    elif source.is_dir():
        yield {path.name for path in source.iterdir() if path.is_file()}, lambda name: (source / name).read_bytes()
    else:
        raise DataError(f"tile source not found or not a folder / zip / wheel: {source}")


def _parse_xml(data: bytes, where: str) -> tuple[list[SourceBox], tuple[int, int] | None]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise DataError(f"{where}: not valid XML ({error})") from None
    size = None
    if root.find("size/width") is not None:
        size = (int(float(root.findtext("size/width"))), int(float(root.findtext("size/height"))))
    boxes = []
    for k, obj in enumerate(root.iter("object")):
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise DataError(f"{where}: object {k}: missing or invalid <bndbox>") from None
        if xmax <= xmin - 1 or ymax <= ymin - 1:
            raise DataError(f"{where}: object {k}: degenerate box {xmin},{ymin},{xmax},{ymax}")
        boxes.append(
            SourceBox(
                str(obj.findtext("name", "")).strip(),
                (xmin - 1, ymin - 1, xmax, ymax),
                obj.findtext("difficult", "0").strip() == "1",
                obj.findtext("truncated", "0").strip() == "1",
            )
        )
    return boxes, size


# --- geometry ----------------------------------------------------------------------------------------------
def starts(begin: int, end: int, tile: int) -> list[int]:
    """Tile origins covering [begin, end): a grid from `begin`, the last one aligned to `end`."""
    if end - begin < tile:
        return []
    origins = list(range(begin, end - tile + 1, tile))
    if origins[-1] + tile < end:
        origins.append(end - tile)
    return origins


def test_block(width: int, height: int, tile: int, fraction: float, side: str) -> tuple[int, int, int, int] | None:
    """The test region (x0, y0, x1, y1): a whole number of tiles along the split axis, about `fraction` of the
    image, at least one tile, leaving at least one tile for the pool; None when the image cannot hold both."""
    length = width if side in ("right", "left") else height
    if fraction <= 0 or length < 2 * tile:
        return None
    n_tiles = min(max(1, round(fraction * length / tile)), (length - tile) // tile)
    extent = n_tiles * tile
    return {
        "right": (width - extent, 0, width, height),
        "left": (0, 0, extent, height),
        "bottom": (0, height - extent, width, height),
        "top": (0, 0, width, extent),
    }[side]


def pool_block(width: int, height: int, test: tuple[int, int, int, int] | None, side: str):
    if test is None:
        return (0, 0, width, height)
    x0, y0, x1, y1 = test
    return {
        "right": (0, 0, x0, height),
        "left": (x1, 0, width, height),
        "bottom": (0, 0, width, y0),
        "top": (0, y1, width, height),
    }[side]


def inside(box, region) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx < region[2] and region[1] <= cy < region[3]


def clip(box, left: int, top: int, width: int, height: int):
    """(box in tile coordinates clipped to the tile, visible fraction of the box's area)."""
    x1, y1, x2, y2 = box[0] - left, box[1] - top, box[2] - left, box[3] - top
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 <= cx1 or cy2 <= cy1:
        return None, 0.0
    return (cx1, cy1, cx2, cy2), (cx2 - cx1) * (cy2 - cy1) / ((x2 - x1) * (y2 - y1))


# --- cutting -----------------------------------------------------------------------------------------------
def cut(
    stem: str,
    size: tuple[int, int],
    boxes: list[SourceBox],
    tile: int,
    min_visible: float,
    test_fraction: float,
    side: str,
) -> list[Tile]:
    width, height = size
    test = test_block(width, height, tile, test_fraction, side)
    regions = [(POOL_SPLIT, pool_block(width, height, test, side))] + ([(TEST_SPLIT, test)] if test else [])
    for box in boxes:
        box.region = next((split for split, region in regions if inside(box.box, region)), POOL_SPLIT)
    tiles = []
    for split, (x0, y0, x1, y1) in regions:
        for top in starts(y0, y1, tile):
            for left in starts(x0, x1, tile):
                t = Tile(f"{stem}_x{left}_y{top}", stem, left, top, tile, tile, split)
                for box in boxes:
                    if box.region != split:
                        continue
                    clipped, visible = clip(box.box, left, top, tile, tile)
                    if clipped is not None and visible >= min_visible:
                        t.objects.append((box, clipped, visible < 1.0))
                        box.tiles.append(t.name)
                tiles.append(t)
    return tiles


def tile_xml(t: Tile) -> str:
    parts = [
        f"<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{escape(t.name)}.jpg</filename>\n",
        f"\t<source><image>{escape(t.source)}</image><left>{t.left}</left><top>{t.top}</top></source>\n",
        f"\t<size>\n\t\t<width>{t.width}</width>\n\t\t<height>{t.height}</height>\n\t\t<depth>3</depth>\n\t</size>\n",
        "\t<segmented>0</segmented>\n",
    ]
    for box, (x1, y1, x2, y2), cut_by_tile in t.objects:
        truncated = int(cut_by_tile or box.truncated)
        parts.append(
            f"\t<object>\n\t\t<name>{escape(box.name)}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>{int(box.difficult)}</difficult>\n"
            f"\t\t<bndbox>\n\t\t\t<xmin>{_num(x1 + 1)}</xmin>\n\t\t\t<ymin>{_num(y1 + 1)}</ymin>\n"
            f"\t\t\t<xmax>{_num(x2)}</xmax>\n\t\t\t<ymax>{_num(y2)}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        )
    parts.append("</annotation>\n")
    return "".join(parts)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def write_tiles(
    source: Path,
    dest: Path,
    tile: int = 400,
    min_visible: float = 0.5,
    drop_empty: bool = False,
    test_fraction: float = 0.25,
    side: str = "right",
    rename: dict[str, str] | None = None,
    quality: int = 95,
) -> dict[str, int]:
    if tile <= 0:
        raise DataError(f"--tile must be positive, got {tile}")
    if not 0 < min_visible <= 1:
        raise DataError(f"--min-visible must be in (0, 1], got {min_visible}")
    if not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if side not in SIDES:
        raise DataError(f"--test-side {side} not supported, choose from {', '.join(SIDES)}")
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"{dest} is not empty: give a new folder")
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {POOL_SPLIT: [], TEST_SPLIT: []}
    tile_rows, box_rows = [], []
    for stem, image, boxes in read_pairs(source):
        for box in boxes:
            box.name = (rename or {}).get(box.name, box.name)
        for t in cut(stem, image.size, boxes, tile, min_visible, test_fraction, side):
            if drop_empty and not t.objects:
                continue
            image.crop((t.left, t.top, t.left + t.width, t.top + t.height)).save(
                dest / "JPEGImages" / f"{t.name}.jpg", quality=quality
            )
            (dest / "Annotations" / f"{t.name}.xml").write_text(tile_xml(t))
            splits[t.split].append(t.name)
            tile_rows.append([t.name, t.source, t.left, t.top, t.width, t.height, t.split, len(t.objects)])
        kept = set(splits[POOL_SPLIT]) | set(splits[TEST_SPLIT])
        for k, box in enumerate(boxes):
            in_tiles = [name for name in box.tiles if name in kept]
            box_rows.append(
                [
                    stem,
                    k,
                    box.name,
                    *(_num(v) for v in box.box),
                    box.region,
                    ";".join(in_tiles),
                    "kept" if in_tiles else "dropped",
                ]
            )
    for split, names in splits.items():
        (dest / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    _write_csv(dest / "tiles.csv", ["tile", "source", "left", "top", "width", "height", "split", "boxes"], tile_rows)
    _write_csv(
        dest / "boxes.csv", ["source", "object", "name", "x1", "y1", "x2", "y2", "region", "tiles", "status"], box_rows
    )
    return {
        "pool_tiles": len(splits[POOL_SPLIT]),
        "test_tiles": len(splits[TEST_SPLIT]),
        "boxes": len(box_rows),
        "boxes_dropped": sum(row[-1] == "dropped" for row in box_rows),
    }


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m al_runner.tasks.detection.tiles",
        description="Cut annotated images (image + VOC XML pairs, in a folder or a wheel/zip) into tiles, written "
        "as a VOC-layout folder with a spatially disjoint trainval/test split.",
    )
    parser.add_argument("source", type=Path, help="folder of image + XML pairs, or a .whl/.zip holding them")
    parser.add_argument("dest", type=Path, help="new folder for JPEGImages/, Annotations/, ImageSets/Main/")
    parser.add_argument("--tile", type=int, default=400, help="tile side in source pixels (default 400)")
    parser.add_argument(
        "--min-visible",
        type=float,
        default=0.5,
        help="keep a box in a tile when at least this fraction of its area is inside (default 0.5)",
    )
    parser.add_argument("--drop-empty", action="store_true", help="leave out tiles without any box (default: keep)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.25,
        help="share of each image in the test block, in whole tiles (default 0.25; 0 = no test)",
    )
    parser.add_argument("--test-side", default="right", choices=SIDES, help="where the test block is (default right)")
    parser.add_argument(
        "--rename", nargs="*", default=[], metavar="OLD=NEW", help="rename classes, e.g. --rename Alive=Tree Dead=Tree"
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the tiles (default 95)")
    args = parser.parse_args(argv)
    try:
        rename = dict(item.split("=", 1) for item in args.rename)
    except ValueError:
        parser.error(f"--rename takes OLD=NEW pairs, got {args.rename}")
    try:
        counts = write_tiles(
            args.source,
            args.dest,
            args.tile,
            args.min_visible,
            args.drop_empty,
            args.test_fraction,
            args.test_side,
            rename,
            args.quality,
        )
    except DataError as error:
        print(f"tiles: error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {counts['pool_tiles']} pool ({POOL_SPLIT}) + {counts['test_tiles']} test tiles to {args.dest}; "
        f"{counts['boxes']} source boxes, {counts['boxes_dropped']} in no tile (see boxes.csv); "
        f"use task=voc_folder task.root={args.dest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

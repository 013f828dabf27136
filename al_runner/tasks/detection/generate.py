"""Write a small PASCAL-VOC-format tree of generated images, for tests and the CPU preset.

    python -m al_runner.tasks.detection.generate <out dir> [--images N] [--seed S]

Writes <out dir>/VOCdevkit/VOC2007 (trainval + test) and VOC2012 (trainval), each with JPEGImages/*.jpg,
Annotations/*.xml (the real VOC schema: size, object/name/pose/truncated/difficult/bndbox with 1-based
inclusive pixel coordinates) and ImageSets/Main/<set>.txt, so torchvision's VOCDetection reads it as it
reads the real VOC. Images show filled shapes of CLASSES in random colours on a noisy background. Every
image has at least one normal object; some objects are small and faint (difficult=1) and some are cut by
the image border (truncated=1, box clipped to the image). Same seed -> byte-identical files.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross")
SPLIT_FRACTIONS = (("2007", "trainval", 0.4), ("2012", "trainval", 0.3), ("2007", "test", 0.3))


def generate_vocdevkit(
    out_dir: str | Path, images: int = 60, seed: int = 0, size_range: tuple[int, int] = (96, 160)
) -> Path:
    """Returns the folder holding VOCdevkit/ (what `task.root` takes)."""
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    counts = _split_counts(images)
    written_per_year: dict[str, int] = {}
    for (year, image_set, _), count in zip(SPLIT_FRACTIONS, counts):
        voc = out_dir / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        ids = []
        start = written_per_year.get(year, 0)
        written_per_year[year] = start + count
        for k in range(count):
            image_id = f"{start + k + 1:06d}" if year == "2007" else f"2012_{start + k + 1:06d}"
            image, objects = _draw_image(rng, size_range)
            image.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
            (voc / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(image_id, year, image.size, objects))
            ids.append(image_id)
        (voc / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in ids))
    return out_dir


def _split_counts(images: int) -> list[int]:
    if images < 3:
        raise ValueError("--images must be at least 3 (one per split)")
    counts = [max(1, int(images * fraction)) for *_, fraction in SPLIT_FRACTIONS]
    counts[-1] = images - sum(counts[:-1])
    return counts


def _draw_image(rng: random.Random, size_range: tuple[int, int]):
    width, height = rng.randint(*size_range), rng.randint(*size_range)
    noise = np.random.default_rng(rng.getrandbits(32)).integers(0, 40, (height, width, 3))
    base = np.array([rng.randint(60, 200) for _ in range(3)])
    image = Image.fromarray(np.clip(base + noise - 20, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects = [_draw_object(rng, draw, width, height, difficult=False, truncated=False)]
    for _ in range(rng.randint(0, 2)):
        objects.append(
            _draw_object(rng, draw, width, height, difficult=rng.random() < 0.2, truncated=rng.random() < 0.25)
        )
    return image, objects


def _draw_object(rng, draw, width, height, difficult: bool, truncated: bool) -> dict:
    name = rng.choice(CLASSES)
    side = rng.randint(8, 14) if difficult else rng.randint(min(width, height) // 4, min(width, height) // 2)
    if truncated:  # centre near a border, so part of the shape falls outside
        x0 = rng.choice([-side // 2, width - side // 2])
        y0 = rng.randint(0, height - side)
    else:
        x0, y0 = rng.randint(0, width - side), rng.randint(0, height - side)
    x1, y1 = x0 + side, y0 + side
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    if name == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif name == "square":
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif name == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=colour)
    else:
        bar = max(2, side // 4)
        draw.rectangle([x0, (y0 + y1) / 2 - bar, x1, (y0 + y1) / 2 + bar], fill=colour)
        draw.rectangle([(x0 + x1) / 2 - bar, y0, (x0 + x1) / 2 + bar, y1], fill=colour)
    # VOC: 1-based inclusive pixel coordinates inside the image
    box = (max(x0, 0) + 1, max(y0, 0) + 1, min(x1, width), min(y1, height))
    return {"name": name, "box": box, "difficult": int(difficult), "truncated": int(truncated or x0 < 0 or x1 > width)}


def _annotation_xml(image_id: str, year: str, size: tuple[int, int], objects: list[dict]) -> str:
    width, height = size
    parts = [
        f"<annotation>\n\t<folder>VOC{year}</folder>\n\t<filename>{image_id}.jpg</filename>\n",
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n",
        "\t<segmented>0</segmented>\n",
    ]
    for obj in objects:
        xmin, ymin, xmax, ymax = obj["box"]
        parts.append(
            f"\t<object>\n\t\t<name>{escape(obj['name'])}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{obj['truncated']}</truncated>\n\t\t<difficult>{obj['difficult']}</difficult>\n"
            f"\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        )
    parts.append("</annotation>\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write a generated VOCdevkit tree (VOC2007 trainval/test, VOC2012 trainval)."
    )
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=200, help="total images over the three splits (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = generate_vocdevkit(args.out_dir, args.images, args.seed)
    print(f"wrote {args.images} images under {root / 'VOCdevkit'}; use task.root={root}")


if __name__ == "__main__":
    main()

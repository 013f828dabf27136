"""Generate MPII-format data: synthetic stick figures with known joints, as JPEGs plus annotation files
in both formats.

    python -m al_runner.tasks.pose.generate <out dir> [--people N] [--seed S]

Writes `<out>/images/*.jpg`, `<out>/hourglass.json` (hourglass_json: train and validation people,
`isValidation`) and `<out>/mmpose_train.json`, `<out>/mmpose_valid.json` (mmpose_json, with a
`headbox` whose 0.6 x diagonal equals the head segment, so both PCKh head-size conventions agree).
Right limbs are drawn red, left limbs blue, so left and right are learnable. As in real MPII, some
joints are occluded (flag 0 but coordinates, ~8 %) and some are not annotated at all (~4 %: `0, 0, 0`
in hourglass_json, `-1, -1` with `joints_vis` 0 in mmpose_json); some figures are truncated by the
image border.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from al_runner.tasks.pose.geometry import headbox_for_segment

# Upright template in units of the person box side (200 * scale px), relative to the centre (objpos).
TEMPLATE = {
    0: (-0.08, 0.42),
    1: (-0.07, 0.22),
    2: (-0.06, 0.03),
    3: (0.06, 0.03),
    4: (0.07, 0.22),
    5: (0.08, 0.42),
    6: (0.0, 0.03),
    7: (0.0, -0.2),
    8: (0.0, -0.24),
    9: (0.0, -0.38),
    10: (-0.2, 0.06),
    11: (-0.16, -0.06),
    12: (-0.1, -0.2),
    13: (0.1, -0.2),
    14: (0.16, -0.06),
    15: (0.2, 0.06),
}
LIMBS = [  # (joint a, joint b, colour)
    (0, 1, (220, 40, 40)),
    (1, 2, (220, 90, 40)),
    (5, 4, (40, 40, 220)),
    (4, 3, (40, 90, 220)),
    (10, 11, (240, 60, 120)),
    (11, 12, (200, 30, 90)),
    (15, 14, (60, 120, 240)),
    (14, 13, (30, 90, 200)),
    (2, 6, (60, 200, 60)),
    (3, 6, (60, 200, 60)),
    (6, 7, (40, 160, 40)),
    (12, 7, (120, 200, 60)),
    (13, 7, (60, 200, 120)),
    (7, 8, (200, 200, 40)),
    (8, 9, (240, 220, 60)),
]
IMAGE_SIZE = (192, 160)  # width, height
MISSING, OCCLUDED = 0.04, 0.12  # per-joint draw u: u < MISSING not annotated, u < OCCLUDED occluded, else visible


def _figure(rng: torch.Generator, width: int, height: int) -> tuple[list[list[float]], list[float], float]:
    """Joint positions (continuous px), centre and scale of one random figure."""
    u = lambda: float(torch.rand((), generator=rng))  # noqa: E731
    scale = 0.5 + 0.2 * u()
    side = 200 * scale
    centre = [width * (0.3 + 0.4 * u()), height * (0.35 + 0.3 * u())]
    angle = math.radians(30 * (2 * u() - 1))
    ca, sa = math.cos(angle), math.sin(angle)
    joints = []
    for j in range(16):
        x, y = TEMPLATE[j]
        if j in (10, 11, 14, 15, 0, 1, 4, 5):  # limbs swing: random offsets make the pose vary
            x, y = x + 0.08 * (2 * u() - 1), y + 0.06 * (2 * u() - 1)
        x, y = x * side, y * side
        joints.append([centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y])
    return joints, centre, scale


def _draw(rng: torch.Generator, joints: list[list[float]], width: int, height: int, scale: float) -> Image.Image:
    grey = int(60 + 120 * float(torch.rand((), generator=rng)))
    image = Image.new("RGB", (width, height), (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    for _ in range(3):  # clutter
        x, y = (torch.rand(2, generator=rng) * torch.tensor([width, height])).tolist()
        shade = tuple(int(v) for v in torch.randint(0, 255, (3,), generator=rng))
        draw.rectangle([x, y, x + 20, y + 12], fill=shade)
    line = max(2, round(6 * scale))
    for a, b, colour in LIMBS:
        draw.line([tuple(joints[a]), tuple(joints[b])], fill=colour, width=line)
    hx, hy = joints[9]
    r = 0.04 * 200 * scale
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], outline=(250, 240, 120), width=2)
    return image


def generate(out_dir: str | Path, people: int = 64, validation_fraction: float = 0.25, seed: int = 0) -> Path:
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = torch.Generator().manual_seed(seed)
    width, height = IMAGE_SIZE
    n_valid = max(1, round(people * validation_fraction))
    hourglass, mmpose_train, mmpose_valid = [], [], []
    for k in range(people):
        joints, centre, scale = _figure(rng, width, height)
        image_name = f"{k:09d}.jpg"
        _draw(rng, joints, width, height, scale).save(out / "images" / image_name, quality=90)
        # 1-based pixel indices, as MPII files store them (continuous u -> a = u + 0.5)
        ann = [[round(x + 0.5, 3), round(y + 0.5, 3)] for x, y in joints]
        state = [float(torch.rand((), generator=rng)) for _ in range(16)]
        state[8] = state[9] = 1.0  # the head segment is always annotated and visible (PCKh's head size)
        annotated = [u >= MISSING for u in state]
        visible = [1 if u >= OCCLUDED else 0 for u in state]
        objpos = [round(centre[0] + 0.5, 3), round(centre[1] + 0.5, 3)]
        is_valid = k >= people - n_valid
        hourglass.append(
            {
                "dataset": "synthetic",
                "isValidation": float(is_valid),
                "img_paths": image_name,
                "img_width": float(width),
                "img_height": float(height),
                "objpos": objpos,
                "joint_self": [
                    [x, y, float(v)] if a else [0.0, 0.0, 0.0] for (x, y), v, a in zip(ann, visible, annotated)
                ],
                "scale_provided": round(scale, 4),
            }
        )
        (mmpose_valid if is_valid else mmpose_train).append(
            {
                "image": image_name,
                "joints": [p if a else [-1.0, -1.0] for p, a in zip(ann, annotated)],
                "joints_vis": [int(a) for a in annotated],
                "center": objpos,
                "scale": round(scale, 4),
                "headbox": [round(v, 3) for v in headbox_for_segment(ann[8], ann[9])],
            }
        )
    for name, entries in (
        ("hourglass.json", hourglass),
        ("mmpose_train.json", mmpose_train),
        ("mmpose_valid.json", mmpose_valid),
    ):
        (out / name).write_text(json.dumps(entries))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--people", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.people, seed=args.seed)
    print(f"wrote {args.people} people to {out}")


if __name__ == "__main__":
    main()

"""MPII person annotations in the two common json formats, parsed into one table of people.

- ``hourglass_json``: the stacked-hourglass PyTorch reimplementation's file (bearpaw/pytorch-pose,
  the one the paper used): a list (or ``{"root": [...]}``) of entries with ``img_paths``,
  ``joint_self`` [16 x (x, y, visible)], ``objpos``, ``scale_provided``, ``isValidation``
  (and ``img_width``/``img_height``).
- ``mmpose_json``: the other common MPII json (HRNet / mmpose): ``image``, ``joints`` [16 x (x, y)],
  ``joints_vis`` [16], ``center``, ``scale``.

Annotated vs visible. MPII's official evaluation scores every *annotated* joint (its `jnt_missing`
leaves out only joints without coordinates), occluded ones included, and the hourglass recipe draws a
training target for each. The two files say "annotated" differently:
- hourglass_json: the third value of ``joint_self`` is MPII's ``is_visible`` flag; 0 means occluded
  *or* missing. A missing joint is the placeholder the converter writes (bearpaw
  ``miscs/gen_mpii.m`` zero-pads: ``0, 0, 0``): flag 0 with both coordinates <= 0. An occluded joint
  has flag 0 and real coordinates (332 of 2,573 annotated joints in the shared 168-person sample).
  bearpaw itself tests ``y > 0``; that would also drop visible head tops annotated above the frame
  (5 in the sample), which the official evaluation counts, so we do not.
- mmpose_json: ``joints_vis`` already means "annotated" (missing joints are ``-1, -1`` with 0); the
  file has no occlusion flag, so `visible` equals `annotated` there.

Both store MATLAB-style pixel coordinates (1-based) and a person box of ``200 * scale`` pixels around
the centre. An optional ``headbox`` ([x1, y1, x2, y2] or [[x1, y1], [x2, y2]]) is read in either
format when present (neither public file has one; PCKh then falls back, see `metric.py`).

The pool unit is a person: one row per entry.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from al_runner.errors import ConfigError, DataError

NUM_JOINTS = 16
JOINT_NAMES = (
    "r_ankle",
    "r_knee",
    "r_hip",
    "l_hip",
    "l_knee",
    "l_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "r_wrist",
    "r_elbow",
    "r_shoulder",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
)
# Left/right joint pairs swapped by a horizontal flip (MPII joint order above).
FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
FORMATS = ("hourglass_json", "mmpose_json")

log = logging.getLogger(__name__)


@dataclass
class People:
    """Column table of persons. Coordinates are the file's (1-based pixel) coordinates."""

    images: list[str]  # image file name, relative to the image folder
    joints: torch.Tensor  # [N, 16, 2] float64; (0, 0) for a joint without coordinates, in either format
    annotated: torch.Tensor  # [N, 16] bool: the joint has coordinates; used by the loss and PCKh
    visible: torch.Tensor  # [N, 16] bool: annotated and not marked occluded (the file's own flag)
    centers: torch.Tensor  # [N, 2] float64
    scales: torch.Tensor  # [N] float64: person box side = 200 * scale pixels
    headboxes: torch.Tensor  # [N, 4] float64 (x1, y1, x2, y2); NaN where the file has none
    is_validation: torch.Tensor  # [N] bool
    split_rows: torch.Tensor  # [N] long: position among the file's entries of the same split (isValidation),
    # counting skipped ones: the row of MPII's official ground-truth file
    entries: list[str]  # "file#index (image)" for error messages

    def __len__(self) -> int:
        return len(self.images)

    def select(self, mask_or_index) -> "People":
        idx = torch.as_tensor(mask_or_index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        pick = idx.tolist()
        return People(
            [self.images[i] for i in pick],
            self.joints[idx],
            self.annotated[idx],
            self.visible[idx],
            self.centers[idx],
            self.scales[idx],
            self.headboxes[idx],
            self.is_validation[idx],
            self.split_rows[idx],
            [self.entries[i] for i in pick],
        )


def load_entries(path: Path) -> list[dict]:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"MPII annotation file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid json: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("root"), list):
        data = data["root"]  # the original CPM/hourglass json wraps the list in {"root": ...}
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise DataError(f"{path}: expected a non-empty json list of person entries")
    return data


def detect_format(entries: list[dict], path: Path) -> str:
    keys = set(entries[0])
    if {"img_paths", "joint_self", "objpos", "scale_provided"} <= keys:
        return "hourglass_json"
    if {"image", "joints", "center", "scale"} <= keys:
        return "mmpose_json"
    raise DataError(
        f"{path}: cannot tell the MPII annotation format from the keys {sorted(keys)}; expected "
        "hourglass_json (img_paths, joint_self, objpos, scale_provided) or mmpose_json (image, joints, "
        "joints_vis, center, scale)"
    )


def _hourglass_fields(entry: dict) -> tuple:
    joints = torch.as_tensor([j[:2] for j in entry["joint_self"]], dtype=torch.float64).reshape(-1, 2)
    flag = torch.as_tensor([j[2] for j in entry["joint_self"]], dtype=torch.float64).flatten() > 0
    placeholder = ~flag & (joints <= 0).all(-1)  # the converter's zero padding for a joint MPII does not annotate
    return entry["img_paths"], joints, ~placeholder, flag, entry["objpos"], entry["scale_provided"]


def _mmpose_fields(entry: dict) -> tuple:
    joints = torch.as_tensor(entry["joints"], dtype=torch.float64).reshape(-1, 2)
    annotated = torch.as_tensor(entry.get("joints_vis", [1] * len(joints)), dtype=torch.float64).flatten() > 0
    return entry["image"], joints, annotated, annotated.clone(), entry["center"], entry["scale"]


FIELDS = {"hourglass_json": _hourglass_fields, "mmpose_json": _mmpose_fields}


def _headbox(entry: dict) -> list[float]:
    box = entry.get("headbox", entry.get("head_box"))
    if box is None:
        return [math.nan] * 4
    flat = [float(v) for v in torch.as_tensor(box, dtype=torch.float64).flatten().tolist()]
    return flat if len(flat) == 4 else [math.nan] * 4


def parse(path: str | Path, fmt: str = "auto") -> People:
    """Parse an MPII annotation file; `fmt` is auto | hourglass_json | mmpose_json.

    Raises DataError naming the entry for a non-positive or non-finite scale, non-finite joints, or a
    malformed entry. People without any annotated joint are skipped with a log line (nothing to learn or
    score). Joint range checks need the image size and happen in `check_joints_in_range`.
    """
    path = Path(path)
    entries = load_entries(path)
    if fmt == "auto":
        fmt = detect_format(entries, path)
    elif fmt not in FORMATS:
        raise ConfigError(f"MPII annotation format '{fmt}' not supported, choose from auto, {', '.join(FORMATS)}")
    images, joints, annotated, visible, centers, scales, heads, valid, rows, names = ([] for _ in range(10))
    split_counts = {False: 0, True: 0}  # entries seen so far per split (isValidation), skipped ones included
    skipped = []
    for i, entry in enumerate(entries):
        try:
            is_val = bool(entry.get("isValidation", 0))
            image, j, a, v, c, s = FIELDS[fmt](entry)
            c = torch.as_tensor(c, dtype=torch.float64).flatten()
            s = float(s)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise DataError(f"{path} entry {i}: malformed {fmt} entry ({type(e).__name__}: {e})") from None
        row, split_counts[is_val] = split_counts[is_val], split_counts[is_val] + 1
        name = f"{path.name} entry {i} ({image})"
        if j.shape[0] != NUM_JOINTS or a.shape[0] != NUM_JOINTS or c.shape[0] != 2:
            raise DataError(
                f"{name}: expected {NUM_JOINTS} joints and a 2-d centre, got {j.shape[0]} joints, "
                f"{a.shape[0]} joint flags, centre {c.tolist()}"
            )
        if not (math.isfinite(s) and s > 0):
            raise DataError(f"{name}: person scale must be a positive number, got {s}")
        if not (torch.isfinite(c).all() and torch.isfinite(j[a]).all()):
            raise DataError(f"{name}: non-finite centre or annotated joint coordinates")
        if not a.any():
            skipped.append(name)
            continue
        j = torch.where(a[:, None], j, torch.zeros(()))  # one placeholder for "no coordinates" in both formats
        images.append(str(image))
        joints.append(j)
        annotated.append(a)
        visible.append(v & a)
        centers.append(c)
        scales.append(s)
        heads.append(_headbox(entry))
        valid.append(is_val)
        rows.append(row)
        names.append(name)
    if skipped:
        log.warning("%s: skipped %d person(s) with no annotated joint, e.g. %s", path.name, len(skipped), skipped[0])
    if not images:
        raise DataError(f"{path}: no person with an annotated joint")
    return People(
        images,
        torch.stack(joints),
        torch.stack(annotated),
        torch.stack(visible),
        torch.stack(centers),
        torch.tensor(scales, dtype=torch.float64),
        torch.tensor(heads, dtype=torch.float64),
        torch.tensor(valid),
        torch.tensor(rows, dtype=torch.long),
        names,
    )


def check_joints_in_range(people: People, image_sizes: list[tuple[int, int]], box_size: float = 200.0) -> None:
    """An annotated joint may lie a little outside the image (MPII annotates truncated limbs and head tops
    above the frame), so joints outside the image are kept. One farther than a whole person box
    (200 * scale px) outside the image is a corrupt entry."""
    for k, (w, h) in enumerate(image_sizes):
        margin = box_size * float(people.scales[k])
        j = people.joints[k][people.annotated[k]]
        bad = (j[:, 0] < -margin) | (j[:, 0] > w + margin) | (j[:, 1] < -margin) | (j[:, 1] > h + margin)
        if bad.any():
            joint = j[bad][0].tolist()
            raise DataError(
                f"{people.entries[k]}: annotated joint at {joint} lies outside the {w}x{h} image "
                f"by more than a person box ({margin:.0f} px)"
            )

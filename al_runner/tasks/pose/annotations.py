"""MPII person annotations in the two common json formats, parsed into one table of people.

- ``hourglass_json``: the stacked-hourglass PyTorch reimplementation's file (bearpaw/pytorch-pose,
  the one the paper used): a list (or ``{"root": [...]}``) of entries with ``img_paths``,
  ``joint_self`` [16 x (x, y, visible)], ``objpos``, ``scale_provided``, ``isValidation``
  (and ``img_width``/``img_height``).
- ``mmpose_json``: the other common MPII json (HRNet / mmpose): ``image``, ``joints`` [16 x (x, y)],
  ``joints_vis`` [16], ``center``, ``scale``.

Both store MATLAB-style pixel coordinates (1-based) and a person box of ``200 * scale`` pixels around
the centre. An optional ``headbox`` ([x1, y1, x2, y2] or [[x1, y1], [x2, y2]]) is read in either
format when present (neither public file has one; PCKh then falls back, see `metric.py`).

The pool unit is a person: one row per entry.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from al_runner.errors import ConfigError, DataError

NUM_JOINTS = 16
JOINT_NAMES = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)
# Left/right joint pairs swapped by a horizontal flip (MPII joint order above).
FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
FORMATS = ("hourglass_json", "mmpose_json")


@dataclass
class People:
    """Column table of persons. Coordinates are the file's (1-based pixel) coordinates."""

    images: list[str]           # image file name, relative to the image folder
    joints: torch.Tensor        # [N, 16, 2] float64
    visible: torch.Tensor       # [N, 16] bool: joint is used for the loss and PCKh
    centers: torch.Tensor       # [N, 2] float64
    scales: torch.Tensor        # [N] float64: person box side = 200 * scale pixels
    headboxes: torch.Tensor     # [N, 4] float64 (x1, y1, x2, y2); NaN where the file has none
    is_validation: torch.Tensor  # [N] bool
    entries: list[str]          # "file#index (image)" for error messages

    def __len__(self) -> int:
        return len(self.images)

    def select(self, mask_or_index) -> "People":
        idx = torch.as_tensor(mask_or_index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        pick = idx.tolist()
        return People([self.images[i] for i in pick], self.joints[idx], self.visible[idx], self.centers[idx],
                      self.scales[idx], self.headboxes[idx], self.is_validation[idx], [self.entries[i] for i in pick])


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
        "hourglass_json (img_paths, joint_self, objpos, scale_provided) or mmpose_json (image, joints, joints_vis, center, scale)"
    )


def _entry_fields(entry: dict, fmt: str) -> tuple:
    if fmt == "hourglass_json":
        joints = [j[:2] for j in entry["joint_self"]]
        visible = [j[2] for j in entry["joint_self"]]
        return (entry["img_paths"], joints, visible, entry["objpos"], entry["scale_provided"],
                bool(entry.get("isValidation", 0)))
    visible = entry.get("joints_vis", [1] * len(entry["joints"]))
    return entry["image"], entry["joints"], visible, entry["center"], entry["scale"], bool(entry.get("isValidation", 0))


def _headbox(entry: dict) -> list[float]:
    box = entry.get("headbox", entry.get("head_box"))
    if box is None:
        return [math.nan] * 4
    flat = [float(v) for v in torch.as_tensor(box, dtype=torch.float64).flatten().tolist()]
    return flat if len(flat) == 4 else [math.nan] * 4


def parse(path: str | Path, fmt: str = "auto") -> People:
    """Parse an MPII annotation file; `fmt` is auto | hourglass_json | mmpose_json.

    Raises DataError naming the entry for a non-positive or non-finite scale, non-finite joints, or a
    malformed entry. People without any visible joint are skipped with a warning (their loss would be
    0/0). Joint range checks need the image size and happen in `check_joints_in_range`.
    """
    path = Path(path)
    entries = load_entries(path)
    if fmt == "auto":
        fmt = detect_format(entries, path)
    elif fmt not in FORMATS:
        raise ConfigError(f"MPII annotation format '{fmt}' not supported, choose from auto, {', '.join(FORMATS)}")
    images, joints, visible, centers, scales, heads, valid, names = [], [], [], [], [], [], [], []
    skipped = []
    for i, entry in enumerate(entries):
        try:
            image, j, v, c, s, is_val = _entry_fields(entry, fmt)
            j = torch.as_tensor(j, dtype=torch.float64).reshape(-1, 2)
            v = torch.as_tensor(v, dtype=torch.float64).flatten() > 0
            c = torch.as_tensor(c, dtype=torch.float64).flatten()
            s = float(s)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"{path} entry {i}: malformed {fmt} entry ({type(e).__name__}: {e})") from None
        name = f"{path.name} entry {i} ({image})"
        if j.shape[0] != NUM_JOINTS or v.shape[0] != NUM_JOINTS or c.shape[0] != 2:
            raise DataError(f"{name}: expected {NUM_JOINTS} joints and a 2-d centre, got {j.shape[0]} joints, "
                            f"{v.shape[0]} visibility flags, centre {c.tolist()}")
        if not (math.isfinite(s) and s > 0):
            raise DataError(f"{name}: person scale must be a positive number, got {s}")
        if not (torch.isfinite(c).all() and torch.isfinite(j[v]).all()):
            raise DataError(f"{name}: non-finite centre or visible joint coordinates")
        if not v.any():
            skipped.append(name)
            continue
        images.append(str(image)); joints.append(j); visible.append(v); centers.append(c); scales.append(s)
        heads.append(_headbox(entry)); valid.append(is_val); names.append(name)
    if skipped:
        warnings.warn(f"{path.name}: skipped {len(skipped)} person(s) with no visible joint, e.g. {skipped[0]}",
                      stacklevel=2)
    if not images:
        raise DataError(f"{path}: no person with a visible joint")
    return People(images, torch.stack(joints), torch.stack(visible), torch.stack(centers),
                  torch.tensor(scales, dtype=torch.float64), torch.tensor(heads, dtype=torch.float64),
                  torch.tensor(valid), names)


def check_joints_in_range(people: People, image_sizes: list[tuple[int, int]], box_size: float = 200.0) -> None:
    """A visible joint may lie a little outside the image (MPII annotates truncated limbs and head tops
    above the frame: 12 of 2,688 joints in the shared sample), so joints outside the image are kept.
    One farther than a whole person box (200 * scale px) outside the image is a corrupt entry."""
    for k, (w, h) in enumerate(image_sizes):
        margin = box_size * float(people.scales[k])
        j = people.joints[k][people.visible[k]]
        bad = (j[:, 0] < -margin) | (j[:, 0] > w + margin) | (j[:, 1] < -margin) | (j[:, 1] > h + margin)
        if bad.any():
            joint = j[bad][0].tolist()
            raise DataError(f"{people.entries[k]}: visible joint at {joint} lies outside the {w}x{h} image "
                            f"by more than a person box ({margin:.0f} px)")

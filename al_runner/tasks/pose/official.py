"""MPII's official validation ground truth: the `.mat` file the official PCKh evaluation reads.

The file (Tompson et al.'s `detections_our_format.mat`, shipped by bearpaw/pytorch-pose as
`evaluation/data/detections_our_format.mat`; HRNet and mmpose ship the same arrays as `gt_valid.mat`)
holds, for the R = 2,958 validation people:

- ``pos_gt_src``    [16, 2, R]: joint coordinates (1-based pixels, MPII joint order),
- ``jnt_missing``   [16, R]: 1 where the joint is not annotated,
- ``headboxes_src`` [2, 2, R]: head box corners, [0] = (x1, y1), [1] = (x2, y2); the head size is
  0.6 x the box diagonal (`SC_BIAS` of the MPII evaluation),
- ``dataset_joints`` [1, 16] (optional here): joint names, checked against the MPII order.

Rows are matched to people by position: row r is the r-th validation person of the hourglass json
(`isValidation` = 1, in file order) or the r-th entry of a separate test file; people skipped for a
missing image keep their row numbers (`People.split_rows`). Each match is verified: the file's joints
must agree with the annotation's (1 px), so a file in another order is refused, not silently misread.
scipy.io.loadmat reads the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from al_runner.errors import DataError
from al_runner.tasks.pose.annotations import NUM_JOINTS, People

log = logging.getLogger(__name__)

SC_BIAS = 0.6  # official head size = 0.6 x head box diagonal (MPII evaluation, util_get_head_size.m)
MATCH_TOLERANCE_PX = 1.0  # the hourglass json stores 3 decimals; a row of another person is off by far more
# Joint names the official evaluation looks up (bearpaw evaluation/eval_PCKh.py) and their MPII index.
OFFICIAL_NAMES = {
    "rank": 0,
    "rkne": 1,
    "rhip": 2,
    "lhip": 3,
    "lkne": 4,
    "lank": 5,
    "head": 9,
    "rwri": 10,
    "relb": 11,
    "rsho": 12,
    "lsho": 13,
    "lelb": 14,
    "lwri": 15,
}
REQUIRED = ("pos_gt_src", "jnt_missing", "headboxes_src")


@dataclass
class OfficialTruth:
    joints: torch.Tensor  # [R, 16, 2] float64
    annotated: torch.Tensor  # [R, 16] bool (= 1 - jnt_missing)
    head_sizes: torch.Tensor  # [R] float64

    def __len__(self) -> int:
        return len(self.head_sizes)


def _joint_names(raw) -> list[str]:
    return [str(np.asarray(name).squeeze()) for name in np.asarray(raw, dtype=object).flatten()]


def _check_joint_order(names: list[str], path: Path) -> None:
    wrong = {name: names.index(name) for name, j in OFFICIAL_NAMES.items() if name in names and names.index(name) != j}
    if len(names) != NUM_JOINTS or wrong:
        raise DataError(
            f"{path}: dataset_joints {names} is not in the MPII joint order this runner uses "
            f"(r_ankle ... l_wrist); misplaced: {wrong}"
        )


def load_official_truth(path: str | Path) -> OfficialTruth:
    from scipy.io import loadmat  # scipy is needed only when an official file is given

    path = Path(path)
    if not path.is_file():
        raise DataError(f"official MPII ground-truth file not found: {path} (task.official_gt_file)")
    try:
        mat = loadmat(path)
    except (ValueError, TypeError, OSError) as e:
        raise DataError(f"{path} is not a readable .mat file: {e}") from None
    missing = [key for key in REQUIRED if key not in mat]
    if missing:
        raise DataError(f"{path}: missing {missing}; expected the official MPII evaluation arrays {list(REQUIRED)}")
    if "dataset_joints" in mat:
        _check_joint_order(_joint_names(mat["dataset_joints"]), path)
    pos, jnt_missing, boxes = (np.asarray(mat[key], dtype=np.float64) for key in REQUIRED)
    rows = pos.shape[-1]
    if pos.shape != (NUM_JOINTS, 2, rows) or jnt_missing.shape != (NUM_JOINTS, rows) or boxes.shape != (2, 2, rows):
        raise DataError(
            f"{path}: expected pos_gt_src [16, 2, R], jnt_missing [16, R], headboxes_src [2, 2, R]; got "
            f"{pos.shape}, {jnt_missing.shape}, {boxes.shape}"
        )
    head_sizes = SC_BIAS * np.linalg.norm(boxes[1] - boxes[0], axis=0)
    return OfficialTruth(
        torch.from_numpy(pos.transpose(2, 0, 1).copy()),
        torch.from_numpy(jnt_missing.T == 0),
        torch.from_numpy(head_sizes),
    )


def match_people(truth: OfficialTruth, people: People, path: str | Path) -> OfficialTruth:
    """The official rows of `people` (by `split_rows`), each verified against the annotation's joints."""
    rows = people.split_rows
    if len(rows.unique()) != len(rows):
        raise DataError(
            f"{path}: the test people do not map to distinct rows (a test file that mixes isValidation "
            "values); give the validation people only"
        )
    if len(rows) and int(rows.max()) >= len(truth):
        raise DataError(
            f"{path} has {len(truth)} rows but the test split has at least {int(rows.max()) + 1} people: "
            "the file must list the same validation people, in the annotation file's order"
        )
    picked = OfficialTruth(truth.joints[rows], truth.annotated[rows], truth.head_sizes[rows])
    both = picked.annotated & people.annotated
    error = torch.where(both, (picked.joints - people.joints).abs().amax(-1), torch.zeros(()))
    off = (error > MATCH_TOLERANCE_PX).any(-1)
    if off.any():
        k = int(off.nonzero()[0])
        raise DataError(
            f"{path} row {int(rows[k])} does not match {people.entries[k]} (joints differ by up to "
            f"{float(error[k].max()):.1f} px): the file must be in the validation order of the "
            "annotation file"
        )
    disagree = int((picked.annotated != people.annotated).sum())
    if disagree:
        log.info(
            "%s: %d joint(s) annotated in one file but not the other; PCKh follows the official jnt_missing",
            Path(path).name,
            disagree,
        )
    return picked

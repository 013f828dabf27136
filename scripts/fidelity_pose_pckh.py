"""Peer check of the runner's PCKh against MPII's official evaluation logic, re-typed, on identical inputs.

The reference (`official_pckh`) re-types bearpaw/pytorch-pose `evaluation/eval_PCKh.py` (itself Tompson's
`eval_PCKh.m`): arrays in the official layout, `jnt_visible = 1 - jnt_missing`,
`uv_err = ||pred - gt||`, head size = 0.6 x the head-box diagonal (SC_BIAS), `uv_err / headsize < 0.5`,
per-joint PCKh = correct / count, and the Mean over the 14 joints without pelvis and thorax weighted by
`jnt_ratio = count / sum(count)` (the MPII toolkit's pooled total, HRNet/mmpose's `np.sum(PCKh * jnt_ratio)`);
bearpaw's script prints the unweighted `np.mean` of the 14, reported beside it. It uses numpy and
scipy.io only and imports nothing from al_runner.

The runner's side reads the same inputs through its own code: the official `.mat` through
`al_runner.tasks.pose.official.load_official_truth`, the hourglass json and the mmpose json through
`al_runner.tasks.pose.annotations.parse` + the task's `annotation_truth`, and scores with
`al_runner.tasks.pose.metric.PCKh` (`update_points`: predictions already in image coordinates; the
heatmap decoding before it is not part of this check).

Cases: randomised people (random joints, missing joints, occluded-but-annotated joints, head boxes,
predictions = truth + Gaussian noise of a random fraction of the head size), and the real people of the
shared MPII sample (both json formats; head boxes: a square around the head segment with 0.6 x diagonal =
the segment, as the sample carries no boxes; predictions = truth + noise). The `visible only` column is
the reference with occluded joints also treated as missing: the runner's old behaviour.

    python scripts/fidelity_pose_pckh.py --seeds 20 --sample <mpii-sample dir> \
        --out outputs/reference/fidelity/pose_pckh

<mpii-sample dir> holds `mpii_annotations_sample.json` (168 people in the hourglass json format, the first
commit's small annotation file of bearpaw/pytorch-pose) and `test_mpii.json` (5 people, mmpose's
`tests/data/mpii`); the MPII data is not part of this repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat, savemat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al_runner, not an installed one

from al_runner.tasks.pose.annotations import parse  # noqa: E402
from al_runner.tasks.pose.metric import PCKh  # noqa: E402
from al_runner.tasks.pose.official import load_official_truth  # noqa: E402
from al_runner.tasks.pose.task import annotation_truth  # noqa: E402

THRESHOLD, SC_BIAS = 0.5, 0.6
MEAN_JOINTS = [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]  # the official 14: pelvis (6), thorax (7) masked
COLUMNS = [
    "case",
    "people",
    "annotated_joints",
    "occluded_joints",
    "missing_joints",
    "reference_mean",
    "ours_official_mat",
    "ours_hourglass_json",
    "ours_mmpose_json",
    "max_abs_diff_mean",
    "max_abs_diff_per_joint",
    "reference_unweighted",
    "ours_unweighted",
    "reference_visible_only",
]


# ---- the reference: official evaluation logic, re-typed --------------------------------------------------------
def official_pckh(pos_pred_src, pos_gt_src, jnt_missing, headboxes_src, threshold=THRESHOLD):
    """Arrays in the official layout: pos_* [16, 2, N], jnt_missing [16, N], headboxes_src [2, 2, N].
    Returns (per-joint PCKh [16] as fractions, weighted Mean, unweighted Mean) over the 14 joints."""
    jnt_visible = 1 - jnt_missing
    uv_err = np.linalg.norm(pos_pred_src - pos_gt_src, axis=1)  # [16, N]
    headsizes = SC_BIAS * np.linalg.norm(headboxes_src[1, :, :] - headboxes_src[0, :, :], axis=0)  # [N]
    scaled_uv_err = uv_err / (headsizes * np.ones((len(uv_err), 1)))
    scaled_uv_err = scaled_uv_err * jnt_visible
    jnt_count = np.sum(jnt_visible, axis=1)
    less_than_threshold = (scaled_uv_err < threshold) * jnt_visible
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.sum(less_than_threshold, axis=1) / jnt_count
    masked = np.ma.array(per_joint, mask=False)
    masked.mask[6:8] = True
    count = np.ma.array(jnt_count, mask=False)
    count.mask[6:8] = True
    jnt_ratio = count / np.sum(count).astype(np.float64)
    return per_joint, float(np.sum(masked * jnt_ratio)), float(np.mean(masked))


# ---- one case: people in arrays, written in the three formats -------------------------------------------------
@dataclass
class Case:
    name: str
    joints: np.ndarray  # [N, 16, 2] 1-based pixels (any value where missing)
    missing: np.ndarray  # [N, 16] bool: not annotated
    occluded: np.ndarray  # [N, 16] bool: annotated but marked occluded (hourglass json flag 0)
    headboxes: np.ndarray  # [N, 2, 2]: (x1, y1), (x2, y2)
    preds: np.ndarray  # [N, 16, 2]
    original: tuple[str, Path] | None = None  # (column, file): the runner reads this real file for that column


def random_case(seed: int) -> Case:
    """As in real MPII, joints differ in how often they are missing and how hard they are (so the weighted and
    unweighted means differ), and occluded joints are predicted worse (so counting them matters)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    joints = rng.uniform(5, 1000, size=(n, 16, 2))
    missing = rng.random((n, 16)) < rng.uniform(0.0, 0.25) * rng.uniform(0, 2, size=16)
    occluded = ~missing & (rng.random((n, 16)) < rng.uniform(0.05, 0.3))
    centre = rng.uniform(50, 900, size=(n, 2))
    half = rng.uniform(5, 60, size=(n, 2))
    headboxes = np.stack([centre - half, centre + half], axis=1)
    head = SC_BIAS * np.linalg.norm(2 * half, axis=-1)
    spread = rng.uniform(0.1, 0.5) * rng.uniform(0.5, 1.5, size=16) * np.where(occluded, 1.5, 1.0)  # [n, 16]
    preds = joints + rng.normal(size=(n, 16, 2)) * (spread * head[:, None])[..., None]
    return Case(f"random seed {seed}", joints, missing, occluded, headboxes, preds)


def segment_headboxes(joints: np.ndarray) -> np.ndarray:
    """A square head box centred on the head segment whose 0.6 x diagonal equals the segment (sample people)."""
    length = np.linalg.norm(joints[:, 9] - joints[:, 8], axis=-1)
    half = length / (SC_BIAS * np.sqrt(2)) / 2
    centre = (joints[:, 8] + joints[:, 9]) / 2
    return np.stack([centre - half[:, None], centre + half[:, None]], axis=1)


def noisy(joints: np.ndarray, headboxes: np.ndarray, seed: int, fraction: float = 0.3) -> np.ndarray:
    head = SC_BIAS * np.linalg.norm(headboxes[:, 1] - headboxes[:, 0], axis=-1)
    rng = np.random.default_rng(seed)
    return joints + rng.normal(size=joints.shape) * fraction * head[:, None, None]


def hourglass_sample_case(path: Path, seed: int = 0) -> Case:
    entries = json.loads(path.read_text())
    raw = np.array([e["joint_self"] for e in entries], dtype=np.float64)  # [N, 16, 3]
    missing = (raw[..., 0] == 0) & (raw[..., 1] == 0) & (raw[..., 2] == 0)  # gen_mpii.m's zero padding
    occluded = (raw[..., 2] == 0) & ~missing
    joints = raw[..., :2]
    boxes = segment_headboxes(joints)
    return Case(
        f"real sample, hourglass json ({path.name})",
        joints,
        missing,
        occluded,
        boxes,
        noisy(joints, boxes, seed),
        ("ours_hourglass_json", path),
    )


def mmpose_sample_case(path: Path, seed: int = 0) -> Case:
    entries = json.loads(path.read_text())
    joints = np.array([e["joints"] for e in entries], dtype=np.float64)
    missing = np.array([e["joints_vis"] for e in entries]) == 0
    boxes = segment_headboxes(joints)
    return Case(
        f"real sample, mmpose json ({path.name})",
        joints,
        missing,
        np.zeros_like(missing),
        boxes,
        noisy(joints, boxes, seed),
        ("ours_mmpose_json", path),
    )


def official_arrays(case: Case) -> dict:
    return {
        "pos_gt_src": case.joints.transpose(1, 2, 0),
        "jnt_missing": case.missing.T.astype(np.float64),
        "headboxes_src": case.headboxes.transpose(1, 2, 0),
    }


def write_hourglass_json(case: Case, path: Path) -> None:
    entries = []
    for k in range(len(case.joints)):
        joint_self = [
            [0.0, 0.0, 0.0]
            if case.missing[k, j]
            else [float(case.joints[k, j, 0]), float(case.joints[k, j, 1]), 0.0 if case.occluded[k, j] else 1.0]
            for j in range(16)
        ]
        entries.append(
            {
                "img_paths": f"{k:09d}.jpg",
                "joint_self": joint_self,
                "objpos": [500.0, 500.0],
                "scale_provided": 1.0,
                "isValidation": 1.0,
                "headbox": case.headboxes[k].flatten().tolist(),
            }
        )
    path.write_text(json.dumps(entries))


def write_mmpose_json(case: Case, path: Path) -> None:
    entries = [
        {
            "image": f"{k:09d}.jpg",
            "center": [500.0, 500.0],
            "scale": 1.0,
            "joints": [[-1.0, -1.0] if case.missing[k, j] else case.joints[k, j].tolist() for j in range(16)],
            "joints_vis": [0 if case.missing[k, j] else 1 for j in range(16)],
            "headbox": case.headboxes[k].flatten().tolist(),
        }
        for k in range(len(case.joints))
    ]
    path.write_text(json.dumps(entries))


# ---- the runner's side -----------------------------------------------------------------------------------------
def ours(preds: np.ndarray, joints, annotated, head_size, mean: str = "weighted") -> tuple[np.ndarray, float]:
    metric = PCKh(input_size=256, threshold=THRESHOLD, mean=mean)
    metric.update_points(
        torch.from_numpy(preds),
        {
            "joints": joints,
            "joints_annotated": annotated,
            "head_size": head_size,
            "head_size_source": torch.zeros(len(head_size), dtype=torch.long),
        },
    )
    per_joint = (metric.correct.double() / metric.counted.double()).numpy()  # NaN where nobody is annotated
    return per_joint, metric.compute()


def compare(case: Case, workdir: Path) -> dict:
    """One case through the reference and through the runner's three readers; one table row."""
    mat_path = workdir / "gt.mat"
    savemat(mat_path, official_arrays(case))
    loaded = loadmat(mat_path)
    pred_src = case.preds.transpose(1, 2, 0)
    ref_joint, ref_mean, ref_unweighted = official_pckh(
        pred_src, loaded["pos_gt_src"], loaded["jnt_missing"], loaded["headboxes_src"]
    )
    _, ref_visible_only, _ = official_pckh(
        pred_src,
        loaded["pos_gt_src"],
        (loaded["jnt_missing"].astype(bool) | case.occluded.T).astype(float),
        loaded["headboxes_src"],
    )
    truth = load_official_truth(mat_path)
    per_joint, mat_mean = ours(case.preds, truth.joints, truth.annotated, truth.head_sizes)
    _, unweighted = ours(case.preds, truth.joints, truth.annotated, truth.head_sizes, mean="unweighted")
    readers = {"ours_official_mat": mat_mean}
    for column, write in (("ours_hourglass_json", write_hourglass_json), ("ours_mmpose_json", write_mmpose_json)):
        if case.original is not None and case.original[0] == column:
            people_file = case.original[1]  # the real file itself: its own missing/occluded encoding, no head boxes
        else:
            people_file = workdir / "people.json"
            write(case, people_file)
        t = annotation_truth(parse(people_file))
        readers[column] = ours(case.preds, t.joints, t.annotated, t.head_size)[1]
    defined = ~np.isnan(ref_joint)
    assert np.array_equal(defined, ~np.isnan(per_joint)), "the two sides disagree on which joints are annotated"
    return {
        "case": case.name,
        "people": len(case.joints),
        "annotated_joints": int((~case.missing).sum()),
        "occluded_joints": int(case.occluded.sum()),
        "missing_joints": int(case.missing.sum()),
        "reference_mean": ref_mean,
        **readers,
        "max_abs_diff_mean": max(abs(v - ref_mean) for v in readers.values()),
        "max_abs_diff_per_joint": float(np.abs(per_joint[defined] - ref_joint[defined]).max()),
        "reference_unweighted": ref_unweighted,
        "ours_unweighted": unweighted,
        "reference_visible_only": ref_visible_only,
    }


def run(seeds: list[int], sample: Path | None) -> list[dict]:
    cases = [random_case(seed) for seed in seeds]
    if sample is not None:
        cases += [
            hourglass_sample_case(sample / "mpii_annotations_sample.json"),
            mmpose_sample_case(sample / "test_mpii.json"),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        return [compare(case, Path(tmp)) for case in cases]


def write_outputs(rows: list[dict], out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fmt = {k: (lambda v: f"{v:.6f}") for k in COLUMNS if k.startswith(("reference", "ours"))}
    fmt |= {"max_abs_diff_mean": lambda v: f"{v:.1e}", "max_abs_diff_per_joint": lambda v: f"{v:.1e}"}
    shown = [
        "case",
        "people",
        "annotated_joints",
        "occluded_joints",
        "missing_joints",
        "reference_mean",
        "ours_official_mat",
        "ours_hourglass_json",
        "ours_mmpose_json",
        "max_abs_diff_mean",
        "max_abs_diff_per_joint",
        "reference_unweighted",
        "ours_unweighted",
        "reference_visible_only",
    ]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.get(k, str)(row[k]) for k in shown) + " |")
    worst = max(max(r["max_abs_diff_mean"], r["max_abs_diff_per_joint"]) for r in rows)
    text = f"""# Pose PCKh@0.5: the runner vs MPII's official evaluation logic (re-typed), identical inputs

Made by:

    {command}

`<mpii-sample dir>`: `mpii_annotations_sample.json` (168 real MPII people, hourglass json: bearpaw/pytorch-pose's
first small annotation file) and `test_mpii.json` (5 people, mmpose json: open-mmlab/mmpose `tests/data/mpii`);
not part of this repository. Head boxes for those people: a square around the head segment (0.6 x diagonal =
segment), as the files carry none; predictions = truth + Gaussian noise (sigma 0.3 head sizes per axis).

`reference_*`: `official_pckh` in `scripts/fidelity_pose_pckh.py`, bearpaw/pytorch-pose `evaluation/eval_PCKh.py`
re-typed (jnt_visible = 1 - jnt_missing, head size 0.6 x head-box diagonal, strict `< 0.5`), Mean over the 14
joints without pelvis/thorax weighted by `jnt_ratio` (HRNet / mmpose; the MPII toolkit pools the joints, the
same number); `reference_unweighted` is the plain `np.mean` over the 14 that bearpaw's script prints.
`ours_*`: `al_runner.tasks.pose.metric.PCKh` fed by the runner's readers of the same people: the official
`.mat` (`load_official_truth`), the hourglass json and the mmpose json (`parse` + `annotation_truth`, head boxes
written into the files). For the real people, the column of their own format reads the original file (its own
encoding of missing and occluded joints; no head boxes, so the runner falls back to the head segment, which the
boxes above equal). `reference_visible_only`: the reference with occluded joints treated as missing (the
runner's behaviour before this check). In the random cases occluded joints get 1.5x the noise *by construction*,
so that column's gap there illustrates the effect; it is not a measurement on real predictions. Values are
fractions (the official script prints percent).

Largest absolute difference, runner vs reference, over all cases, Mean and per-joint: {worst:.1e}.

{chr(10).join(lines)}
"""
    out.with_suffix(".md").write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="randomised cases: seeds 0 .. N-1")
    parser.add_argument("--sample", type=Path, default=None, help="the shared mpii-sample folder (real people)")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/reference/fidelity/pose_pckh"), help="writes <out>.csv and <out>.md"
    )
    args = parser.parse_args(argv)
    rows = run(list(range(args.seeds)), args.sample)
    shown_args = [
        ("<mpii-sample dir>" if args.sample is not None and a == str(args.sample) else a)
        for a in (argv if argv is not None else sys.argv[1:])
    ]
    command = "python scripts/fidelity_pose_pckh.py " + " ".join(shown_args)
    write_outputs(rows, args.out, command.strip())
    worst = max(max(r["max_abs_diff_mean"], r["max_abs_diff_per_joint"]) for r in rows)
    print(f"{len(rows)} cases; largest |runner - reference| = {worst:.1e}; wrote {args.out}.md and .csv")


if __name__ == "__main__":
    main()

"""Make the "Label your own data" walkthrough's input from an ImageFolder tree (e.g. the CIFAR-10 JPEG copy):
a folder of images with neutral names (the class is not in the path), the user's first labels, a held-out
labeled part, and the answers the scripted annotator reads (truth.csv: never given to al-label).

    python scripts/label_walkthrough_data.py --tree <root with train/<class>/*.jpg and test/<class>/*.jpg> \\
        --out <dir> [--pool 600] [--holdout 200] [--initial 100] [--seed 0]

Writes <dir>/images/ (pool images img_NNNNN.jpg and held-out images held/img_NNNNN.jpg, copied),
<dir>/initial_labels.csv, <dir>/holdout.csv and <dir>/truth.csv (path,label for every image).
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from al_runner.tasks.classification.imagefolder import list_image_tree


def pick(split_dir: Path, n: int, rng: random.Random) -> list[tuple[Path, str]]:
    files, labels, classes = list_image_tree(split_dir)
    chosen = rng.sample(range(len(files)), n)
    return [(files[i], classes[labels[i]]) for i in chosen]


def write_labels(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pool", type=int, default=600)
    parser.add_argument("--holdout", type=int, default=200)
    parser.add_argument("--initial", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    images = args.out / "images"
    (images / "held").mkdir(parents=True, exist_ok=False)
    truth = []
    for k, (source, label) in enumerate(pick(args.tree / "train", args.pool, rng)):
        shutil.copy(source, images / f"img_{k:05d}.jpg")
        truth.append((f"img_{k:05d}.jpg", label))
    held = []
    for k, (source, label) in enumerate(pick(args.tree / "test", args.holdout, rng)):
        shutil.copy(source, images / "held" / f"img_{k:05d}.jpg")
        held.append((f"held/img_{k:05d}.jpg", label))
    write_labels(args.out / "truth.csv", truth + held)
    write_labels(args.out / "holdout.csv", held)
    write_labels(args.out / "initial_labels.csv", rng.sample(truth, args.initial))
    print(
        f"wrote {args.pool} images to label from and {args.holdout} held-out images under {images}; "
        f"{args.initial} initial labels in {args.out / 'initial_labels.csv'}"
    )


if __name__ == "__main__":
    main()

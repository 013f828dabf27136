"""A scripted annotator standing in for people: labels what a round asked for with the true answer.

    # files: answer a round's picks.csv with a CSV al-label imports
    python scripts/scripted_annotator.py --truth truth.csv --picks <project>/rounds/round-001/picks.csv \\
        --out answers.csv
    # Label Studio: submit annotations for open tasks of a project, as an annotator in the UI would
    python scripts/scripted_annotator.py --truth truth.csv --label-studio http://localhost:8080 --token <PAT> \\
        --project 1 [--limit N]

truth.csv is path,label (classification); only this script reads it, never al-label.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_truth(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return {row["path"]: row["label"] for row in csv.DictReader(f)}


def answer_picks(truth: dict[str, str], picks: Path, out: Path) -> int:
    with open(picks, newline="") as f:
        asked = [row["path"] for row in csv.DictReader(f)]
    out.write_text("path,label\n" + "".join(f"{p},{truth[p]}\n" for p in asked))
    return len(asked)


def answer_label_studio(truth: dict[str, str], url: str, token: str, project: int, limit: int | None) -> int:
    """Submit the true class for every task (or the first `limit`) that has no annotation yet."""
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=url, api_key=token)
    done = 0
    for task in client.tasks.list(project=project, fields="all"):
        if task.annotations or (limit is not None and done >= limit):
            continue
        client.annotations.create(
            id=task.id,
            result=[
                {
                    "from_name": "label",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": [truth[task.data["path"]]]},
                }
            ],
        )
        done += 1
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--picks", type=Path, help="a round's picks.csv")
    parser.add_argument("--out", type=Path, help="where to write the answers (path,label CSV)")
    parser.add_argument("--label-studio", metavar="URL")
    parser.add_argument("--token")
    parser.add_argument("--project", type=int, help="Label Studio project id (al-label sync prints it)")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    truth = read_truth(args.truth)
    if args.label_studio:
        print(
            f"annotated {answer_label_studio(truth, args.label_studio, args.token, args.project, args.limit)} task(s)"
        )
    elif args.picks and args.out:
        print(f"answered {answer_picks(truth, args.picks, args.out)} pick(s) in {args.out}")
    else:
        parser.error("give --picks and --out, or --label-studio, --token and --project")


if __name__ == "__main__":
    main()

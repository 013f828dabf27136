"""Pool bookkeeping: per point, the cycle in which it was labeled (-1 = unlabeled)."""

from __future__ import annotations

import torch


class Pool:
    def __init__(self, size: int):
        if size <= 0:
            raise ValueError("pool size must be positive")
        self.labeled_cycle = torch.full((size,), -1, dtype=torch.long)

    def __len__(self) -> int:
        return self.labeled_cycle.numel()

    @property
    def n_labeled(self) -> int:
        return int((self.labeled_cycle >= 0).sum())

    @property
    def labeled_indices(self) -> torch.Tensor:
        return torch.nonzero(self.labeled_cycle >= 0).flatten()

    @property
    def unlabeled_indices(self) -> torch.Tensor:
        return torch.nonzero(self.labeled_cycle < 0).flatten()

    def labeled_in(self, cycle: int) -> torch.Tensor:
        return torch.nonzero(self.labeled_cycle == cycle).flatten()

    def label(self, indices: torch.Tensor, cycle: int) -> None:
        indices = torch.as_tensor(indices, dtype=torch.long).flatten().cpu()
        if indices.numel() and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"pool indices out of range [0, {len(self)})")
        if indices.unique().numel() != indices.numel():
            raise ValueError("the same point was selected twice")
        already = indices[self.labeled_cycle[indices] >= 0]
        if already.numel():
            raise ValueError(f"points already labeled: {already[:10].tolist()}")
        self.labeled_cycle[indices] = cycle

    def label_initial(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """Cycle 0's K points, uniformly at random: depends only on the generator (i.e. the seed)."""
        if k > len(self):
            raise ValueError(f"initial set of {k} is larger than the pool ({len(self)})")
        picks = torch.randperm(len(self), generator=generator)[:k]
        self.label(picks, 0)
        return picks

    def state_dict(self) -> dict:
        return {"labeled_cycle": self.labeled_cycle.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["labeled_cycle"].shape != self.labeled_cycle.shape:
            raise ValueError("checkpoint pool size differs from the dataset's")
        self.labeled_cycle = state["labeled_cycle"].clone()

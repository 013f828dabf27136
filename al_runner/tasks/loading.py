"""DataLoaders whose worker processes live across passes (epochs), for the tasks that decode per batch.

A task hands each pass its own list of batches (index lists drawn in the main process from the loop's
generator, with per-sample augmentation seeds), so the batches are the same whatever the number of workers.
A fresh DataLoader per pass would start `num_workers` processes every epoch; here one DataLoader per
(owner, name) keeps them (`persistent_workers=True`) and a `BatchPlan` hands it the next pass's batches: the
DataLoader reads its batch sampler in the main process at the start of each pass, so workers only ever see
(index, seed) items and the output is unchanged.

One pass at a time per loader: starting a new pass abandons what an unfinished one had not yet yielded
(torch resets its persistent iterator and drops the stale batches).

`limit_workers(n)` caps the workers of every loader made afterwards in this process: a launcher that runs
several jobs on one machine gives each its share of the cores (`al_runner.cli`), as it does for torch threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

LOADERS_ATTRIBUTE = "_persistent_loaders"
_worker_limit: int | None = None  # process-wide, like torch.set_num_threads


def limit_workers(limit: int | None) -> None:
    """At most `limit` DataLoader workers per loader made from now on in this process (None: the task's count)."""
    global _worker_limit
    if limit is not None and int(limit) < 0:
        raise ValueError(f"a worker limit must be >= 0, got {limit}")
    _worker_limit = None if limit is None else int(limit)


def effective_workers(num_workers: int) -> int:
    return int(num_workers) if _worker_limit is None else min(int(num_workers), _worker_limit)


class BatchPlan(Sampler):
    """The batch sampler of a persistent loader: the batches of the next pass, set before it starts."""

    def __init__(self):
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class PersistentLoader:
    """One DataLoader over `dataset` whose workers survive between passes; `loader(batches)` runs one pass."""

    def __init__(self, dataset: Dataset, num_workers: int, pin_memory: bool, collate_fn: Callable | None = None):
        self.num_workers, self.pin_memory, self.collate_fn = effective_workers(num_workers), pin_memory, collate_fn
        self.plan = BatchPlan()
        # Own generator: the DataLoader draws its (unused) worker base seed from it, not from the global RNG.
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.plan,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(0),
        )

    def fits(self, num_workers: int, pin_memory: bool, collate_fn: Callable | None) -> bool:
        return (self.num_workers, self.pin_memory, self.collate_fn) == (
            effective_workers(num_workers),
            pin_memory,
            collate_fn,
        )

    def __call__(self, batches: list[list]) -> Iterator:
        self.plan.batches = list(batches)
        return iter(self.loader)


def persistent_batches(
    owner,
    name: str,
    dataset: Dataset,
    batches: list[list],
    num_workers: int,
    pin_memory: bool,
    collate_fn: Callable | None = None,
) -> Iterator:
    """One pass over `batches` of `dataset` through `owner`'s persistent loader `name`, made on first use (and
    again if the worker count, pinning or collate function changed). The loader lives as long as `owner`."""
    loaders = vars(owner).setdefault(LOADERS_ATTRIBUTE, {})
    loader = loaders.get(name)
    if loader is None or not loader.fits(num_workers, pin_memory, collate_fn):
        loaders[name] = loader = PersistentLoader(dataset, num_workers, pin_memory, collate_fn)
    return loader(batches)

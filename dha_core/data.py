"""Deterministic batch streams over a dataset split, with resumable positions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from dha_core.errors import UserInputError

__all__ = ["BatchStream", "epoch_batches", "eval_batches", "shuffled_batches"]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True) -> list[list[int]]:
    """Shuffled index batches for one epoch; a function of ``(seed, epoch)`` only."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    stop = (n // batch_size) * batch_size if drop_last and n >= batch_size else n
    return [perm[i : i + batch_size] for i in range(0, stop, batch_size)]


def _loader(dataset: TorchDataset, batches: list[list[int]], workers: int) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, persistent_workers=False)


def eval_batches(dataset: TorchDataset, batch_size: int, workers: int = 0) -> DataLoader:
    """In-order batches for evaluation (so results are reproducible)."""
    n = len(dataset)
    return _loader(dataset, [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)], workers)


def shuffled_batches(dataset: TorchDataset, batch_size: int, seed: int, workers: int = 0) -> DataLoader:
    """One shuffled pass over ``dataset`` in full batches; a function of ``seed`` only."""
    return _loader(dataset, epoch_batches(len(dataset), min(batch_size, len(dataset)), seed, 0), workers)


class BatchStream:
    """An endless, reproducible stream of shuffled batches.

    Its position ``(cycle, index)`` is part of the checkpoint, so a resumed run draws the
    same batches an uninterrupted one would.
    """

    def __init__(self, dataset: TorchDataset, batch_size: int, seed: int, workers: int = 0, name: str = "") -> None:
        if len(dataset) == 0:
            raise UserInputError(f"data: the {name or 'requested'} split is empty")
        self.dataset = dataset
        self.batch_size = min(batch_size, len(dataset))
        self.seed = seed
        self.workers = workers
        self.cycle = 0
        self.index = 0
        self._iter: Iterator[Any] | None = None

    def batches_per_cycle(self) -> int:
        return max(len(self.dataset) // self.batch_size, 1)

    def cycle_batches(self) -> list[list[int]]:
        """The index batches of the current cycle (a function of ``(seed, cycle)``)."""
        return epoch_batches(len(self.dataset), self.batch_size, self.seed, self.cycle)

    def _start(self) -> None:
        batches = self.cycle_batches()[self.index :]
        self._iter = iter(_loader(self.dataset, batches, self.workers))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._iter is None:
            self._start()
        assert self._iter is not None
        try:
            batch = next(self._iter)
        except StopIteration:
            self.cycle += 1
            self.index = 0
            self._start()
            batch = next(self._iter)  # type: ignore[arg-type]
        self.index += 1
        return batch[0], batch[1]

    def state_dict(self) -> dict[str, int]:
        return {"cycle": self.cycle, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cycle, self.index = int(state["cycle"]), int(state["index"])
        self._iter = None

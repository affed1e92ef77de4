"""Batches cut from resident tensors by index: the seeded per-epoch sampler and multi-step batches."""

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class ResidentImages(Dataset):
    """Images and labels held as whole tensors; indexing with an index tensor returns a batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.to(self.images.device, non_blocking=True)
        return self.images[index].float().div_(255), self.labels[index]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random generator of one epoch's shuffle: a function of (seed, epoch) only, so runs resume exactly."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class StepGroups(Dataset):
    """A split indexed by lists of index tensors: one Lightning batch of several steps' batches."""

    def __init__(self, split: Dataset) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: list[torch.Tensor]) -> list[Any]:
        return [self.split[index] for index in indices]


def step_batches(batch: Any) -> list[Any]:
    """The (images, labels) pairs of a Lightning batch: itself, or each of a list of them (data.steps_per_batch)."""
    return list(batch) if isinstance(batch[0], (list, tuple)) else [batch]


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of a torch.distributed job; (0, 1) in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BatchIndexSampler(Sampler):
    """Index tensors, one per batch, a fresh permutation per epoch; under DDP equal shards, every world-th image."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world: int | None = None, group: int = 1) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.rank, self.world, self.group = rank, world, group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning each epoch, so shuffling depends only on (seed, epoch) — resumable."""
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        """This process's rank and the number of processes (given, or from torch.distributed)."""
        rank, world = rank_and_world()
        return (rank if self.rank is None else self.rank), (world if self.world is None else self.world)

    def _shard_size(self) -> int:
        rank, world = self._shard()
        return self.n // world if self.shuffle else len(range(rank, self.n, world))

    def num_batches(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.num_batches() / self.group)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = (torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)) if self.shuffle
                 else torch.arange(self.n))
        rank, world = self._shard()
        order = order[rank::world][: self._shard_size()]
        batches = order[: self.num_batches() * self.batch_size].split(self.batch_size)
        if self.group == 1:
            return iter(batches)
        return (list(batches[i : i + self.group]) for i in range(0, len(batches), self.group))

"""Repeated augmentation (official ``samplers.py``: DeiT's ``RASampler``, used when ``repeated_aug`` is on, the
main.py default): every epoch shuffles the training set, repeats each index ``repeats`` (3) times back to back,
pads the list to a multiple of the world size, deals it to the ranks by stride (rank r takes positions r, r + W,
...), so the copies of one image land on different ranks, and each rank keeps the first
``floor(n // 256 * 256 / W)`` of its indices: an epoch still has about n samples in all, a third of the images
seen three times each."""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

from suite import distributed as D
from suite.errors import ConfigError


def ra_indices(perm: torch.Tensor, repeats: int, num_replicas: int, rank: int, multiple: int = 256) -> torch.Tensor:
    """One epoch's indices for ``rank`` from the epoch's permutation ``perm`` of the n training indices
    (RASampler.__iter__): each repeated ``repeats`` times consecutively, padded with the list's head to
    ``ceil(n * repeats / W) * W``, positions ``rank::W``, the first ``floor(n // multiple * multiple / W)``."""
    n = len(perm)
    num_samples = math.ceil(n * repeats / num_replicas)
    total = num_samples * num_replicas
    rep = perm.repeat_interleave(repeats)
    rep = torch.cat([rep, rep[: total - len(rep)]])
    return rep[rank:total:num_replicas][: ra_count(n, num_replicas, multiple)]


def ra_count(n: int, num_replicas: int, multiple: int = 256) -> int:
    """Indices per rank and epoch: ``floor(n // multiple * multiple / W)`` (RASampler.num_selected_samples)."""
    return int(math.floor(n // multiple * multiple / num_replicas))


class RepeatedAugSampler(Sampler[int]):
    """DeiT's RASampler over ``n`` items with ``repeats`` copies per index, for this process's rank of the
    ``suite.distributed`` group (``num_replicas`` / ``rank`` override it; one process: rank 0 of 1).

    The epoch's permutation is ``randperm(n)`` under a seed drawn from ``generator`` when the epoch starts (the
    official sampler seeds it with the epoch number, ``set_epoch``). Give the DataLoader the same ``generator``:
    it is the same on every rank (one permutation for all ranks, which the stride split needs), and ``suite.train.fit``
    saves its state at each epoch start and restores it on resume, so a resumed fit redraws the same epoch."""

    def __init__(self, n: int, repeats: int = 3, generator: torch.Generator | None = None, *, multiple: int = 256,
                 num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True) -> None:
        self.n, self.repeats, self.multiple, self.shuffle = int(n), int(repeats), int(multiple), shuffle
        self.num_replicas = D.world_size() if num_replicas is None else int(num_replicas)
        self.rank = D.rank() if rank is None else int(rank)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        if self.repeats < 1 or self.multiple < 1 or not 0 <= self.rank < self.num_replicas:
            raise ConfigError(f"repeated augmentation needs repeats >= 1, multiple >= 1 and 0 <= rank < world "
                              f"(got {self.repeats}, {self.multiple}, rank {self.rank} of {self.num_replicas})")

    def __len__(self) -> int:
        """Indices per epoch; an empty epoch (fewer than ``multiple`` images, e.g. the dry run's fixture) raises
        here, when training asks for it, rather than training for 0 steps."""
        k = ra_count(self.n, self.num_replicas, self.multiple)
        if k == 0:
            raise ConfigError(f"repeated augmentation keeps floor({self.n} // {self.multiple} * {self.multiple} / "
                              f"{self.num_replicas}) = 0 of the {self.n} training images per rank; set "
                              f"repeated_aug_multiple below {self.n} or repeated_aug=0")
        return k

    def epoch_indices(self, seed: int) -> torch.Tensor:
        """This rank's indices of the epoch whose permutation is seeded with ``seed``."""
        perm = (torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)) if self.shuffle
                else torch.arange(self.n))
        return ra_indices(perm, self.repeats, self.num_replicas, self.rank, self.multiple)

    def __iter__(self) -> Iterator[int]:
        len(self)
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        return iter(self.epoch_indices(seed).tolist())

"""Environments as one tensor set: inputs, binary labels and an environment (or group) id per example.

All OoD objectives here evaluate one forward pass on the concatenated environments and split the
per-example quantities by environment with index masks (no Python loop over examples).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from suite.errors import ConfigError


@dataclass
class EnvData:
    """``x`` (N, ...), ``y`` float (N,) in {0, 1}, ``env`` long (N,) in ``[0, n_envs)``."""

    x: torch.Tensor
    y: torch.Tensor
    env: torch.Tensor
    n_envs: int

    def __post_init__(self) -> None:
        n = len(self.y)
        if len(self.x) != n or len(self.env) != n:
            raise ConfigError(f"EnvData: x, y, env lengths differ ({len(self.x)}, {n}, {len(self.env)})")
        if n and (int(self.env.min()) < 0 or int(self.env.max()) >= self.n_envs):
            raise ConfigError(f"EnvData: env ids must lie in [0, {self.n_envs})")

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> "EnvData":
        """Concatenate ``[(x_e, y_e), ...]``; example ``i`` of pair ``e`` gets env id ``e``."""
        xs, ys = zip(*pairs)
        env = torch.cat([torch.full((len(y),), e, dtype=torch.long) for e, y in enumerate(ys)])
        return cls(torch.cat(xs), torch.cat(ys).float(), env, len(pairs))

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "EnvData":
        return EnvData(self.x.to(device), self.y.to(device), self.env.to(device), self.n_envs)

    def subset(self, idx: torch.Tensor) -> "EnvData":
        """The examples ``idx``; the index goes to each tensor's device (x may live elsewhere than y and env,
        e.g. frozen features kept on the host while the labels are on the GPU)."""
        return EnvData(self.x[idx.to(self.x.device)], self.y[idx.to(self.y.device)], self.env[idx.to(self.env.device)],
                       self.n_envs)

    def with_x(self, x: torch.Tensor) -> "EnvData":
        return EnvData(x, self.y, self.env, self.n_envs)

    def sample(self, per_env: int, gen: torch.Generator) -> "EnvData":
        """A minibatch of ``per_env`` examples drawn (with replacement) from every environment."""
        idx = []
        for e in range(self.n_envs):  # loop over environments, not examples
            members = torch.nonzero(self.env == e).flatten()
            if len(members):
                idx.append(members[torch.randint(len(members), (per_env,), generator=gen).to(members.device)])
        return self.subset(torch.cat(idx))

    def sample_groups(self, per_group: int, n_groups: int, gen: torch.Generator) -> "EnvData":
        """A minibatch as WILDS' ``GroupSampler`` draws it (``train_loader='group'``, ``uniform_over_groups``,
        ``distinct_groups``): ``n_groups`` distinct environments picked uniformly among the non-empty ones, then
        ``per_group`` examples from each, without replacement unless the environment has no more than
        ``per_group`` examples. The batch's environment ids are renumbered ``0..n_groups-1`` (in the order
        picked) and its ``n_envs`` is ``n_groups``: every objective then averages over the groups present in the
        batch, as WILDS' algorithms do (``split_into_groups(results['g'])``)."""
        present = [e for e in range(self.n_envs) if bool((self.env == e).any())]
        if n_groups < 1 or n_groups > len(present):
            raise ConfigError(f"EnvData.sample_groups: {n_groups} groups per batch, {len(present)} non-empty "
                              "environments")
        picked = torch.randperm(len(present), generator=gen)[:n_groups].tolist()
        idx, env = [], []
        for g, k in enumerate(picked):  # loop over the picked environments, not examples
            members = torch.nonzero(self.env == present[k]).flatten()
            if len(members) <= per_group:  # WILDS: replace = len(group) <= n_points_per_group
                take = torch.randint(len(members), (per_group,), generator=gen)
            else:
                take = torch.randperm(len(members), generator=gen)[:per_group]
            idx.append(members[take.to(members.device)])
            env.append(torch.full((per_group,), g, dtype=torch.long))
        batch = self.subset(torch.cat(idx))
        return EnvData(batch.x, batch.y, torch.cat(env).to(self.env.device), n_groups)

    def slice_per_env(self, per_env: int, gen: torch.Generator) -> "EnvData":
        """A minibatch as the official ColoredMNIST ``clove_train`` draws it (RFC coloredmnist/train.py):
        ``length`` = the smallest environment's size, one random permutation of ``range(length)`` per
        environment, and ``per_env`` examples at a fixed slice of it (the official loop over slices keeps only its
        last slice; any fixed slice of a uniform permutation is a uniform draw without replacement). Only the
        first ``length`` examples of each environment (in data order) can be drawn, as in the official code."""
        members = [torch.nonzero(self.env == e).flatten() for e in range(self.n_envs)]
        length = min(len(m) for m in members)
        if per_env < 1 or length < per_env:  # the official loop would run zero slices (and crash)
            raise ConfigError(f"EnvData.slice_per_env: {per_env} examples per environment, the smallest "
                              f"environment has {length}")
        idx = [m[torch.randperm(length, generator=gen)[:per_env].to(m.device)] for m in members]
        return self.subset(torch.cat(idx))


def env_means(values: torch.Tensor, env: torch.Tensor, n_envs: int) -> torch.Tensor:
    """Per-environment mean of per-example ``values`` (N,) -> (n_envs,); empty envs give 0."""
    sums = torch.zeros(n_envs, dtype=values.dtype, device=values.device).index_add(0, env, values)
    counts = torch.bincount(env, minlength=n_envs).to(values.dtype).clamp_min(1)
    return sums / counts


def group_means(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (N,) within each of the (possibly overlapping) groups ``masks`` (G, N) bool."""
    m = masks.to(values.dtype)
    return (m @ values) / m.sum(1).clamp_min(1)

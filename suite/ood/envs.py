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
        return EnvData(self.x[idx], self.y[idx], self.env[idx], self.n_envs)

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


def env_means(values: torch.Tensor, env: torch.Tensor, n_envs: int) -> torch.Tensor:
    """Per-environment mean of per-example ``values`` (N,) -> (n_envs,); empty envs give 0."""
    sums = torch.zeros(n_envs, dtype=values.dtype, device=values.device).index_add(0, env, values)
    counts = torch.bincount(env, minlength=n_envs).to(values.dtype).clamp_min(1)
    return sums / counts


def group_means(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (N,) within each of the (possibly overlapping) groups ``masks`` (G, N) bool."""
    m = masks.to(values.dtype)
    return (m @ values) / m.sum(1).clamp_min(1)

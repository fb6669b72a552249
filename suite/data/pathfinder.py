"""A small procedural Pathfinder (Linsley et al. 2018; LRA) as an offline stand-in.

Each image holds ``2 + n_distractors`` dashed curved paths (random walks with smooth heading,
folded back at the borders) and two endpoint markers. Label 1: both markers sit on the two ends
of the same path; label 0: they sit on ends of two different paths. Both classes draw the same
number of paths, so only connectivity separates them. Generated for a whole batch at once with
torch; output as LRA's loader gives it: x uint8 (N, side*side), extra ``side``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from suite.data.base import ArrayDataset, DatasetRef


@dataclass(frozen=True)
class PathfinderConfig:
    n: int = 2000
    side: int = 32
    path_len: int = 24  # steps of ~1 pixel per path
    n_distractors: int = 1
    dash: int = 2  # on/off dash period in steps (0 = solid)
    turn_std: float = 0.35  # heading change per step (radians)
    marker: int = 1  # marker half-width in pixels (a (2m+1)^2 square)
    seed: int = 0


def _fold(p: torch.Tensor, hi: float) -> torch.Tensor:
    """Reflect coordinates into [0, hi] (triangle wave), keeping paths continuous."""
    m = torch.remainder(p, 2 * hi)
    return hi - (m - hi).abs()


def generate(cfg: PathfinderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, side, side) and labels (N,)."""
    g = torch.Generator().manual_seed(cfg.seed)
    n, s, k, t = cfg.n, cfg.side, 2 + cfg.n_distractors, cfg.path_len
    hi = s - 1.0
    start = 2 + torch.rand(n, k, 1, 2, generator=g) * (s - 5)
    heading = torch.rand(n, k, 1, generator=g) * 6.2832 + torch.cumsum(
        torch.randn(n, k, t, generator=g) * cfg.turn_std, dim=2)
    step = torch.stack([torch.cos(heading), torch.sin(heading)], -1)  # (n, k, t, 2)
    pos = _fold(torch.cat([start, start + torch.cumsum(step, 2)], 2), hi)  # (n, k, t+1, 2)
    pix = pos.round().long().clamp(0, s - 1)
    keep = torch.ones(t + 1, dtype=torch.bool)
    if cfg.dash > 0:
        keep = (torch.arange(t + 1) // cfg.dash) % 2 == 0
        keep[-1] = True
    img = torch.zeros(n, s, s, dtype=torch.uint8)
    b = torch.arange(n).view(n, 1, 1).expand(n, k, t + 1)[..., keep]
    img[b.reshape(-1), pix[..., keep, 1].reshape(-1), pix[..., keep, 0].reshape(-1)] = 160
    label = (torch.rand(n, generator=g) < 0.5).long()
    a_end = pix[:, 0, 0]  # marker A: start of path 0
    b_end = torch.where(label.view(n, 1) == 1, pix[:, 0, -1], pix[:, 1, -1])  # marker B: end of path 0 or 1
    m = cfg.marker
    off = torch.stack(torch.meshgrid(torch.arange(-m, m + 1), torch.arange(-m, m + 1), indexing="ij"), -1).view(-1, 2)
    for end in (a_end, b_end):
        q = (end.view(n, 1, 2) + off.view(1, -1, 2)).clamp(0, s - 1)
        rows = torch.arange(n).view(n, 1).expand_as(q[..., 0])
        img[rows.reshape(-1), q[..., 1].reshape(-1), q[..., 0].reshape(-1)] = 255
    return img, label


def procedural_pathfinder(cfg: PathfinderConfig = PathfinderConfig(), cache: bool = True) -> ArrayDataset:
    """The generated set as LRA-style sequences, cached on disk keyed by the config."""

    def build() -> ArrayDataset:
        img, y = generate(cfg)
        return ArrayDataset(img.reshape(cfg.n, -1), y, DatasetRef("pathfinder-procedural", "stand-in"),
                            {"side": cfg.side})

    if not cache:
        return build()
    from suite.data.cache import cached

    return cached("pathfinder", {"v": 1, **asdict(cfg)}, build)

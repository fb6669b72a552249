"""DiverseDigits (spec §6): held-out sklearn digits (8→16 px) in 4 domains mixed equally, and the
3 single-domain Reptile source tasks; the full protocol's downstream sets come from suite.data."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from suite.data.base import seeded_perm
from suite.data.digits import load_digits_arrays

DOMAINS = ("invert", "rot90", "noise", "contrast")
SOURCES = ("blur", "translate", "saltpepper")


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor
    domain: torch.Tensor  # (N,) int64 (-1 where not applicable)


def transform(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """One domain transform of (N, 1, H, W) images in [0, 1]."""
    if kind == "invert":
        return 1.0 - x
    if kind == "rot90":
        return torch.rot90(x, 1, (2, 3))
    if kind == "noise":  # heavy Gaussian noise σ = 0.3
        return x + 0.3 * torch.randn(x.shape, generator=gen)
    if kind == "contrast":  # contrast reduced + shifted
        return 0.3 * x + 0.5
    if kind == "blur":
        return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    if kind == "translate":  # 2-px shift right and down, zero fill
        return F.pad(x, (2, 0, 2, 0))[..., : x.shape[2], : x.shape[3]]
    if kind == "saltpepper":
        u = torch.rand(x.shape, generator=gen)
        return torch.where(u < 0.05, torch.zeros_like(x), torch.where(u > 0.95, torch.ones_like(x), x))
    raise ValueError(kind)


@dataclass
class DigitTasks:
    backbone_train: Split
    train: Split
    val: Split
    test: Split
    sources: dict[str, Split]


def diverse_digits(seed: int, size: int = 16, backbone_frac: float = 0.5, source_n: int = 300) -> DigitTasks:
    """Clean backbone-training digits; the rest → DiverseDigits (domain i mod 4 after a seeded
    permutation), split 60/20/20; source tasks on random subsets of the backbone-training digits."""
    x, y = load_digits_arrays()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    perm = seeded_perm(len(y), seed)
    nb = int(backbone_frac * len(y))
    bi, di = perm[:nb], perm[nb:]
    gen = torch.Generator().manual_seed(seed + 4242)
    dom = torch.arange(len(di)) % len(DOMAINS)
    xd = torch.empty_like(x[di])
    for k, name in enumerate(DOMAINS):  # one vectorised transform per domain
        xd[dom == k] = transform(x[di][dom == k], name, gen)
    n = len(di)
    a, b = int(0.6 * n), int(0.8 * n)
    mk = lambda s: Split(xd[s], y[di][s], dom[s])  # noqa: E731
    sources = {}
    for name in SOURCES:
        idx = torch.randperm(nb, generator=gen)[:source_n]
        sources[name] = Split(transform(x[bi][idx], name, gen), y[bi][idx], torch.full((len(idx),), -1))
    return DigitTasks(Split(x[bi], y[bi], torch.full((nb,), -1)), mk(slice(0, a)), mk(slice(a, b)),
                      mk(slice(b, n)), sources)

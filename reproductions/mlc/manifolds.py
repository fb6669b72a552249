"""Procedural union of nonlinear manifolds (mlc spec §6 (i)); generic, a candidate for suite/data.

K random smooth closed curves in R^3 (Fourier series with ``harmonics`` harmonics, random
coefficients), each sampled at ``n_per`` points, jointly lifted to R^``ambient`` by one random MLP
with tanh, plus Gaussian noise. Cached on disk by config hash.
"""
from __future__ import annotations

import math

import torch

from suite.data.base import ArrayDataset
from suite.data.cache import cached
from suite.spec import DatasetRef


def fourier_curves(k: int = 5, n_per: int = 300, ambient: int = 32, harmonics: int = 3, noise: float = 0.02,
                   hidden: int = 64, seed: int = 0) -> ArrayDataset:
    """Points ``x`` (k*n_per, ambient) float32 and curve labels ``y`` (stand-in data, cached)."""
    cfg = {"k": k, "n_per": n_per, "ambient": ambient, "harmonics": harmonics, "noise": noise,
           "hidden": hidden, "seed": seed, "v": 1}

    def build() -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        t = torch.rand(k, n_per, generator=g) * 2 * math.pi  # curve parameter per point
        h = torch.arange(1, harmonics + 1, dtype=torch.float32)
        # coefficients decay as 1/h so that curves are smooth; random offset per curve
        a = torch.randn(k, 3, harmonics, generator=g) / h
        b = torch.randn(k, 3, harmonics, generator=g) / h
        off = 0.5 * torch.randn(k, 3, 1, generator=g)
        ang = t[:, None, :, None] * h  # (k, 1, n, H)
        pts = (a[:, :, None, :] * torch.cos(ang) + b[:, :, None, :] * torch.sin(ang)).sum(-1) + off  # (k, 3, n)
        pts = pts.permute(0, 2, 1).reshape(k * n_per, 3)
        w1 = torch.randn(3, hidden, generator=g)
        w2 = torch.randn(hidden, ambient, generator=g) / math.sqrt(hidden)
        x = torch.tanh(torch.tanh(pts @ w1) @ w2)
        x = x + noise * torch.randn(x.shape, generator=g)
        y = torch.arange(k).repeat_interleave(n_per)
        return ArrayDataset(x.float(), y, DatasetRef(f"fourier-curves-k{k}", "stand-in"))

    return cached("mlc-fourier-curves", cfg, build)

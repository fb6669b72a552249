"""Synthetic unions of manifolds for clustering (offline stand-ins, provenance ``stand-in``).

``kind="subspaces"``: k random ``dim``-dimensional linear subspaces of R^ambient through the
origin (the subspace-clustering setting), points = basis @ N(0, I) coefficients.
``kind="spheres"``: k ``dim``-spheres of radius ``radius`` placed in random (dim+1)-dimensional
affine subspaces with centres N(0, spread^2 I). Isotropic Gaussian noise ``noise`` on top.
y = manifold id; extra ``bases`` (k, ambient, dim or dim+1).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch

from suite.data.base import ArrayDataset, DatasetRef


@dataclass(frozen=True)
class ManifoldConfig:
    kind: Literal["subspaces", "spheres"] = "subspaces"
    k: int = 5
    n_per: int = 100
    ambient: int = 30
    dim: int = 3
    noise: float = 0.0
    radius: float = 1.0
    spread: float = 3.0
    seed: int = 0


def generate(cfg: ManifoldConfig) -> ArrayDataset:
    g = torch.Generator().manual_seed(cfg.seed)
    k, n, d = cfg.k, cfg.n_per, cfg.ambient
    if cfg.kind == "subspaces":
        q = cfg.dim
        bases, _ = torch.linalg.qr(torch.randn(k, d, q, generator=g))  # orthonormal columns
        x = torch.einsum("kdq,knq->knd", bases, torch.randn(k, n, q, generator=g))
    elif cfg.kind == "spheres":
        q = cfg.dim + 1
        if q > d:
            raise ValueError(f"a {cfg.dim}-sphere needs ambient >= {q}")
        bases, _ = torch.linalg.qr(torch.randn(k, d, q, generator=g))
        u = torch.randn(k, n, q, generator=g)
        u = cfg.radius * u / u.norm(dim=-1, keepdim=True)
        centres = cfg.spread * torch.randn(k, 1, d, generator=g)
        x = torch.einsum("kdq,knq->knd", bases, u) + centres
    else:
        raise ValueError(f"unknown manifold kind {cfg.kind!r}; use 'subspaces' or 'spheres'")
    x = x + cfg.noise * torch.randn(k, n, d, generator=g)
    y = torch.arange(k).repeat_interleave(n)
    perm = torch.randperm(k * n, generator=g)
    return ArrayDataset(x.reshape(k * n, d)[perm], y[perm], DatasetRef(f"union-of-{cfg.kind}", "stand-in"),
                        {"bases": bases})


def union_of_manifolds(cfg: ManifoldConfig = ManifoldConfig(), cache: bool = True) -> ArrayDataset:
    """The generated set, cached on disk keyed by the config."""
    if not cache:
        return generate(cfg)
    from suite.data.cache import cached

    return cached("manifolds", {"v": 1, **asdict(cfg)}, lambda: generate(cfg))

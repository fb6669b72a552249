"""A MIP instance (min/max cᵀx s.t. A x {=,≤,≥} b, bounds, integrality) and its variable–constraint
bipartite graph with FORGE's 10-d node features (spec §3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from suite.errors import CorruptDataError

EQ, LE, GE = 0, 1, 2  # constraint senses
CONT, BIN, INT = 0, 1, 2  # variable types
N_FEAT = 10


@dataclass
class MIPInstance:
    """Sparse constraint matrix as COO triplets (row, col, value) plus row/column data."""

    rows: np.ndarray  # (nnz,) int64 constraint index
    cols: np.ndarray  # (nnz,) int64 variable index
    vals: np.ndarray  # (nnz,) float64 coefficient
    sense: np.ndarray  # (m,) int8 in {EQ, LE, GE}
    rhs: np.ndarray  # (m,) float64
    vtype: np.ndarray  # (n,) int8 in {CONT, BIN, INT}
    obj: np.ndarray  # (n,) float64
    lb: np.ndarray  # (n,) float64, -inf = none
    ub: np.ndarray  # (n,) float64, +inf = none
    maximize: bool = False
    name: str = ""

    @property
    def m(self) -> int:
        return len(self.sense)

    @property
    def n(self) -> int:
        return len(self.obj)

    def check(self) -> "MIPInstance":
        if self.m == 0 or self.n == 0 or len(self.vals) == 0:
            raise CorruptDataError(f"MIP instance {self.name or '?'} has m={self.m}, n={self.n}, "
                                   f"nnz={len(self.vals)}; it needs constraints, variables and non-zeros")
        if self.rows.max() >= self.m or self.cols.max() >= self.n:
            raise CorruptDataError(f"MIP instance {self.name or '?'}: matrix index out of range; regenerate the file")
        return self


@dataclass
class Graph:
    """Bipartite graph: nodes 0..m-1 are constraints, m..m+n-1 variables (constraints first, §7)."""

    x: torch.Tensor  # (m+n, 10) float32 in [0, 1]
    edge_index: torch.Tensor  # (2, 2·nnz) int64 (src, dst), both directions
    edge_weight: torch.Tensor  # (2·nnz,) float32
    m: int
    n: int

    def as_batch(self) -> dict:
        return {"x": self.x, "edge_index": self.edge_index, "edge_weight": self.edge_weight, "m": self.m,
                "n": self.n}


def _minmax_cols(f: np.ndarray) -> np.ndarray:
    lo, hi = f.min(0), f.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (f - lo) / span


EDGE_EPS = 1e-4  # official offset (skadio/forge processor.py `_normalize_edge_weights`, `small_eps`)


def normalise_coefficients(vals: np.ndarray, how: str = "minmax") -> np.ndarray:
    """Edge weights ("normalised coefficient", spec §3). "minmax" as the official code: min-max over the
    instance's coefficients plus 1e-4 (no weight is exactly 0), all equal (span < 1e-12) → 1e-4;
    "maxabs": a / max|a|."""
    if how == "maxabs":
        return vals / max(np.abs(vals).max(), 1e-12)
    lo, hi = vals.min(), vals.max()
    if hi - lo < 1e-12:
        return np.full_like(vals, EDGE_EPS, dtype=np.float64)
    return (vals - lo) / (hi - lo) + EDGE_EPS


def relax(inst: MIPInstance, ratio: float, rng: np.random.Generator) -> MIPInstance | None:
    """A relaxed copy for pre-training: ``int(m·ratio)`` constraints, chosen uniformly at random without
    replacement, removed (variables kept). None where that removes nothing (as the official code, which
    skips k ≤ 0) or leaves no constraint or non-zero."""
    k = int(inst.m * ratio)
    if k <= 0:
        return None
    drop = rng.choice(inst.m, k, replace=False)
    keep = np.ones(inst.m, bool)
    keep[drop] = False
    new_id = np.cumsum(keep) - 1
    nz = keep[inst.rows]
    if not keep.any() or not nz.any():
        return None
    return MIPInstance(new_id[inst.rows[nz]], inst.cols[nz].copy(), inst.vals[nz].copy(), inst.sense[keep].copy(),
                       inst.rhs[keep].copy(), inst.vtype.copy(), inst.obj.copy(), inst.lb.copy(), inst.ub.copy(),
                       inst.maximize, f"{inst.name}_relaxed_{ratio}")


def bipartite_graph(inst: MIPInstance, edge_norm: str = "minmax") -> Graph:
    """Spec §3 features: constraint = [=, ≤, ≥, rhs, 0×6]; variable = [0×4, cont, bin, int, c, has_lb,
    has_ub]; every column min-max normalised per instance over all nodes; edges both directions."""
    m, n = inst.m, inst.n
    f = np.zeros((m + n, N_FEAT))
    f[np.arange(m), inst.sense.astype(np.int64)] = 1.0
    f[:m, 3] = inst.rhs
    f[m + np.arange(n), 4 + inst.vtype.astype(np.int64)] = 1.0
    f[m:, 7] = inst.obj
    f[m:, 8] = np.isfinite(inst.lb)
    f[m:, 9] = np.isfinite(inst.ub)
    f = _minmax_cols(f)
    src = np.concatenate([inst.rows, m + inst.cols])
    dst = np.concatenate([m + inst.cols, inst.rows])
    w = normalise_coefficients(inst.vals, edge_norm)
    return Graph(torch.from_numpy(f.astype(np.float32)), torch.from_numpy(np.stack([src, dst]).astype(np.int64)),
                 torch.from_numpy(np.concatenate([w, w]).astype(np.float32)), m, n)


def instance_statistics(inst: MIPInstance) -> np.ndarray:
    """Hand-crafted instance statistics (the spec §6 baseline): sizes, density, sense/type mix,
    moments of coefficients, rhs, objective and row/column degrees."""
    m, n, nnz = inst.m, inst.n, len(inst.vals)
    rdeg = np.bincount(inst.rows, minlength=m)
    cdeg = np.bincount(inst.cols, minlength=n)
    fin = lambda a: a[np.isfinite(a)] if np.isfinite(a).any() else np.zeros(1)  # noqa: E731
    parts = [np.log(m), np.log(n), nnz / (m * n),
             *np.bincount(inst.sense.astype(np.int64), minlength=3) / m,
             *np.bincount(inst.vtype.astype(np.int64), minlength=3) / n,
             inst.vals.mean(), inst.vals.std(), fin(inst.rhs).mean(), fin(inst.rhs).std(),
             inst.obj.mean(), inst.obj.std(), rdeg.mean(), rdeg.std(), cdeg.mean(), cdeg.std()]
    return np.asarray(parts, dtype=np.float64)

"""Procedural MIP generators (spec §6): set cover, combinatorial auction, independent set (edge
formulation on Erdős–Rényi graphs), capacitated facility location, multi-dimensional knapsack.
Each takes a seeded numpy Generator and a size preset; all are vectorised numpy."""
from __future__ import annotations

from typing import Callable

import numpy as np

from reproductions.forge.instance import BIN, CONT, GE, LE, MIPInstance
from suite.errors import UnknownNameError

TYPES = ("setcover", "cauction", "indset", "facility", "knapsack")
# size presets: 0 and 1 are pre-training sizes, 2 is the unseen larger test size (≈100–330 nodes)
SIZES: dict[str, tuple[tuple, ...]] = {
    "setcover": ((40, 80, 0.08), (60, 120, 0.06), (100, 200, 0.04)),  # rows, cols, density
    "cauction": ((30, 80), (45, 120), (75, 200)),  # items, bids
    "indset": ((40, 0.10), (60, 0.08), (90, 0.06)),  # nodes, edge probability
    "facility": ((8, 5), (12, 6), (16, 9)),  # customers, facilities
    "knapsack": ((90, 5), (140, 8), (250, 12)),  # items, dimensions
}


def _binary(n: int) -> dict:
    return {"vtype": np.full(n, BIN, np.int8), "lb": np.zeros(n), "ub": np.ones(n)}


def set_cover(rng: np.random.Generator, m: int, n: int, density: float) -> MIPInstance:
    """min cᵀx, A x ≥ 1, x ∈ {0,1}ⁿ; every row covers ≥ 2 columns, every column covers ≥ 1 row."""
    a = rng.random((m, n)) < density
    a[np.arange(m), rng.integers(0, n, m)] = True
    a[np.arange(m), rng.integers(0, n, m)] = True
    empty = ~a.any(0)
    a[rng.integers(0, m, empty.sum()), np.flatnonzero(empty)] = True
    r, c = np.nonzero(a)
    return MIPInstance(r, c, np.ones(len(r)), np.full(m, GE, np.int8), np.ones(m),
                       obj=rng.integers(1, 101, n).astype(float), **_binary(n), name="setcover")


def combinatorial_auction(rng: np.random.Generator, n_items: int, n_bids: int) -> MIPInstance:
    """max Σ p_b x_b, Σ_{b∋i} x_b ≤ 1 per item; bundles of 1+Poisson(2) items drawn by item popularity."""
    size = np.minimum(1 + rng.poisson(2.0, n_bids), n_items)
    pop = rng.random(n_items) + 0.2
    score = rng.random((n_bids, n_items)) ** (1.0 / pop)  # popular items rank higher
    rank = np.argsort(np.argsort(-score, 1), 1)
    a = rank < size[:, None]  # (bids, items)
    value = rng.uniform(1, 100, n_items)
    price = (a * value).sum(1) * rng.uniform(0.8, 1.3, n_bids)
    a = a[:, a.any(0)].T  # rows = items that appear in some bid
    r, c = np.nonzero(a)
    m = a.shape[0]
    return MIPInstance(r, c, np.ones(len(r)), np.full(m, LE, np.int8), np.ones(m), obj=price,
                       **_binary(n_bids), maximize=True, name="cauction")


def independent_set(rng: np.random.Generator, n_nodes: int, p: float) -> MIPInstance:
    """max Σ x_v, x_u + x_v ≤ 1 for every edge of G(n, p) (edge formulation)."""
    iu, ju = np.triu_indices(n_nodes, 1)
    keep = rng.random(len(iu)) < p
    if not keep.any():
        keep[rng.integers(0, len(iu))] = True
    u, v = iu[keep], ju[keep]
    e = len(u)
    r = np.repeat(np.arange(e), 2)
    c = np.stack([u, v], 1).ravel()
    return MIPInstance(r, c, np.ones(2 * e), np.full(e, LE, np.int8), np.ones(e), obj=np.ones(n_nodes),
                       **_binary(n_nodes), maximize=True, name="indset")


def facility_location(rng: np.random.Generator, n_cust: int, n_fac: int, ratio: float = 3.0) -> MIPInstance:
    """Capacitated facility location (Cornuéjols et al.): x_cf ∈ [0,1] served fraction, y_f ∈ {0,1} open.
    Rows: Σ_f x_cf ≥ 1 (customers), Σ_c d_c x_cf − s_f y_f ≤ 0 (capacity), Σ_f s_f y_f ≥ Σ d (total),
    x_cf − y_f ≤ 0 (tightening). Variables: x (c-major) then y."""
    d = rng.uniform(5, 35, n_cust)
    s = rng.uniform(10, 160, n_fac)
    s *= ratio * d.sum() / s.sum()
    cpos, fpos = rng.random((n_cust, 2)), rng.random((n_fac, 2))
    cost = np.linalg.norm(cpos[:, None] - fpos[None], axis=2) * 10 * d[:, None]
    fixed = rng.uniform(100, 200, n_fac) * np.sqrt(s)
    nx = n_cust * n_fac
    xi = np.arange(nx).reshape(n_cust, n_fac)
    yi = nx + np.arange(n_fac)
    r0 = np.repeat(np.arange(n_cust), n_fac), xi.ravel(), np.ones(nx)  # customers
    base = n_cust
    r1 = (base + np.tile(np.arange(n_fac), n_cust), xi.ravel(), np.repeat(d, n_fac))  # capacity: x part
    r1y = base + np.arange(n_fac), yi, -s
    base += n_fac
    r2 = np.full(n_fac, base), yi, s  # total capacity
    base += 1
    r3 = base + np.arange(nx), xi.ravel(), np.ones(nx)  # tightening
    r3y = base + np.arange(nx), np.tile(yi, n_cust), -np.ones(nx)
    parts = (r0, r1, r1y, r2, r3, r3y)
    rows, cols, vals = (np.concatenate([p[k] for p in parts]) for k in range(3))
    sense = np.concatenate([np.full(n_cust, GE), np.full(n_fac, LE), [GE], np.full(nx, LE)]).astype(np.int8)
    rhs = np.concatenate([np.ones(n_cust), np.zeros(n_fac), [d.sum()], np.zeros(nx)])
    n = nx + n_fac
    vtype = np.concatenate([np.full(nx, CONT), np.full(n_fac, BIN)]).astype(np.int8)
    return MIPInstance(rows.astype(np.int64), cols.astype(np.int64), vals, sense, rhs, vtype,
                       np.concatenate([cost.ravel(), fixed]), np.zeros(n), np.ones(n), name="facility")


def knapsack(rng: np.random.Generator, n_items: int, n_dims: int) -> MIPInstance:
    """Multi-dimensional knapsack: max pᵀx, W x ≤ ½ W 1, x ∈ {0,1}ⁿ, profits correlated with weights."""
    w = rng.integers(1, 101, (n_dims, n_items)).astype(float)
    cap = np.floor(0.5 * w.sum(1))
    p = w.mean(0) + rng.uniform(0, 20, n_items)
    r, c = np.nonzero(w)
    return MIPInstance(r, c, w[r, c], np.full(n_dims, LE, np.int8), cap, obj=p, **_binary(n_items),
                       maximize=True, name="knapsack")


GENERATORS: dict[str, Callable[..., MIPInstance]] = {
    "setcover": set_cover, "cauction": combinatorial_auction, "indset": independent_set,
    "facility": facility_location, "knapsack": knapsack}


def _jitter_sizes(rng: np.random.Generator, params: tuple, noise: float) -> tuple:
    """Every integer size parameter times an independent log-uniform factor in [2^−noise, 2^noise]
    (densities/probabilities kept): sizes and their ratios overlap across types."""
    f = lambda v: max(2, int(round(v * 2.0 ** rng.uniform(-noise, noise))))  # noqa: E731
    return tuple(f(v) if isinstance(v, int) else v for v in params)


def perturb(inst: MIPInstance, rng: np.random.Generator, noise: float) -> MIPInstance:
    """Overlap between types: a fraction ``noise`` of the constraints is replaced by generic random rows
    (random sense, support of the row's degree, integer coefficients in ±[1, 10], rhs in [0, 10]) and a
    fraction ``noise`` of the variables gets a random type, bounds and objective coefficient."""
    m, n = inst.m, inst.n
    rows = np.flatnonzero(rng.random(m) < noise)
    keep = ~np.isin(inst.rows, rows)
    deg = np.maximum(np.bincount(inst.rows, minlength=m)[rows], 1)
    r_new = np.repeat(rows, deg)
    c_new = rng.integers(0, n, len(r_new))
    v_new = rng.integers(1, 11, len(r_new)) * rng.choice([-1.0, 1.0], len(r_new))
    rc = np.unique(np.stack([np.concatenate([inst.rows[keep], r_new]), np.concatenate([inst.cols[keep], c_new])]),
                   axis=1, return_index=True)[1]
    r_all = np.concatenate([inst.rows[keep], r_new])[rc]
    c_all = np.concatenate([inst.cols[keep], c_new])[rc]
    v_all = np.concatenate([inst.vals[keep], v_new])[rc]
    sense, rhs = inst.sense.copy(), inst.rhs.copy()
    sense[rows] = rng.integers(0, 3, len(rows))
    rhs[rows] = rng.uniform(0, 10, len(rows))
    cols = np.flatnonzero(rng.random(n) < noise)
    vtype, obj, lb, ub = inst.vtype.copy(), inst.obj.copy(), inst.lb.copy(), inst.ub.copy()
    vtype[cols] = rng.integers(0, 3, len(cols))
    lo, hi = float(obj.min()), float(obj.max())
    obj[cols] = rng.uniform(lo, hi if hi > lo else lo + 1.0, len(cols))
    lb[cols] = 0.0
    ub[cols] = np.where(vtype[cols] == BIN, 1.0, np.where(rng.random(len(cols)) < 0.5, np.inf, 10.0))
    return MIPInstance(r_all.astype(np.int64), c_all.astype(np.int64), v_all.astype(float), sense, rhs, vtype,
                       obj, lb, ub, inst.maximize, inst.name)


def generate(kind: str, size: int, seed: int, noise: float = 0.0) -> MIPInstance:
    """One instance of ``kind`` at size preset ``size`` (0, 1 = training sizes; 2 = unseen larger).
    ``noise`` > 0 makes the types overlap: jittered sizes and perturbed rows/variables (see ``perturb``)."""
    if kind not in GENERATORS:
        raise UnknownNameError(f"unknown MIP type {kind!r}; use one of {TYPES}")
    rng = np.random.default_rng(seed)
    params = SIZES[kind][size]
    if noise > 0:
        params = _jitter_sizes(rng, params, noise)
    inst = GENERATORS[kind](rng, *params)
    if noise > 0:
        inst = perturb(inst, rng, noise)
    inst.name = f"{kind}-s{size}-{seed}"
    return inst.check()

"""Exact validity checks by enumeration (spec §6 smoke): the law of a random population is a
finite list of outcomes, and every transformation is applied to it *through the real code*.

A transformation's randomness is a uniform mapped through a piecewise-constant function (inverse
CDF of the ancestor or pick distribution). Its exact law is the function evaluated at the
midpoints of the intervals between breakpoints, weighted by the interval lengths: exact whenever
every breakpoint of the function is among the given ones, which for the correct code are the
normalised cumulative weights (and i/n, the breakpoints of the uniform-ancestor variants, are
added so that the broken variants' laws are exact too).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .method import (Population, ancestors_multinomial, ancestors_systematic, apply_ancestors, collapse,
                     mh_log_acceptance, propose, push_evidence, spawn)
from .program import F64, Paths, Program, enumerate_paths


@dataclass
class PopLaw:
    """K outcomes, each an R=1 population of n particles with probability ``prob``; ``outer`` is a
    log weight pushed out of the population (Weighted(Population))."""

    prob: torch.Tensor   # (K,)
    value: torch.Tensor  # (K, n) long
    logw: torch.Tensor   # (K, n)
    outer: torch.Tensor  # (K,)

    def measure(self, V: int) -> torch.Tensor:
        """E[W · Σ_i w_i δ_{x_i}] as a dense vector over values."""
        mass = self.prob.log()[:, None] + self.outer[:, None] + self.logw
        return torch.zeros(V, dtype=F64).index_add_(0, self.value.reshape(-1), mass.reshape(-1).exp())

    def pop(self) -> Population:
        return Population({"value": self.value}, self.logw)


def fixed_law(values: list[int], weights: list[float]) -> PopLaw:
    """A single known population (probability 1)."""
    w = torch.tensor(weights, dtype=F64)
    return PopLaw(torch.ones(1, dtype=F64), torch.tensor([values]), w.log()[None], torch.zeros(1, dtype=F64))


def _product(P: int, n: int) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(P)] * n, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], 1)  # (P^n, n)


def spawn_law(paths: Paths, n: int, variant: str = "correct") -> PopLaw:
    """Law of ``spawn(n)`` then the program in every particle: spawn (the real code) gives n copies
    of weight 1/n; each particle then runs independently, so the outcomes are the n-fold product
    of the program's enumerated paths."""
    pop = spawn({"value": torch.zeros(1, dtype=torch.long)}, torch.zeros(1, dtype=F64), n, variant)
    idx = _product(paths.logq.numel(), n)
    return PopLaw(paths.logq[idx].sum(1).exp(), paths.value[idx], pop.logw[0] + paths.logw[idx],
                  torch.zeros(idx.shape[0], dtype=F64))


def _intervals(breaks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoints and lengths (K, J+1) of the intervals of [0,1) cut at ``breaks`` (K, J)."""
    K = breaks.shape[0]
    b = torch.sort(torch.cat([torch.zeros(K, 1, dtype=F64), breaks.clamp(0, 1), torch.ones(K, 1, dtype=F64)], 1), 1).values
    return (b[:, 1:] + b[:, :-1]) / 2, b[:, 1:] - b[:, :-1]


def _cum(logw: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logw, -1).cumsum(-1)[:, :-1]


def _grid(K: int, n: int) -> torch.Tensor:
    return (torch.arange(1, n, dtype=F64) / n).expand(K, -1)


def resample_law(law: PopLaw, scheme: str = "multinomial", variant: str = "correct") -> PopLaw:
    """Exact law of ``resample`` applied to every outcome of ``law``."""
    K, n = law.logw.shape
    c = _cum(law.logw)
    if scheme == "multinomial":
        mid, ln = _intervals(torch.cat([c, _grid(K, n)], 1))           # per-offspring intervals (K, Q)
        Q = mid.shape[1]
        u = mid.reshape(K * Q, 1).expand(-1, n)                       # every offspring j at the same point
        a_q = ancestors_multinomial(law.logw.repeat_interleave(Q, 0), u, variant).reshape(K, Q, n)
        combo = _product(Q, n)                                         # offspring j in interval combo[:, j]
        anc = a_q[:, combo, torch.arange(n)]                           # (K, Q^n, n)
        p = ln[:, combo].prod(-1)                                      # (K, Q^n)
    elif scheme == "systematic":
        nc = c * n
        mid, p = _intervals(nc - nc.floor())                           # u crosses c_i at frac(n c_i)
        anc = ancestors_systematic(law.logw.repeat_interleave(mid.shape[1], 0), mid.reshape(-1, 1),
                                   variant).reshape(K, mid.shape[1], n)
    else:
        raise ValueError(scheme)
    C = anc.shape[1]
    rep = Population({"value": law.value.repeat_interleave(C, 0)}, law.logw.repeat_interleave(C, 0))
    out = apply_ancestors(rep, anc.reshape(K * C, n), variant)
    return PopLaw(law.prob.repeat_interleave(C) * p.reshape(-1), out.state["value"], out.logw,
                  law.outer.repeat_interleave(C))


def push_evidence_law(law: PopLaw, variant: str = "correct") -> PopLaw:
    norm, outer = push_evidence(law.pop(), variant)
    return PopLaw(law.prob, norm.state["value"], norm.logw, law.outer + outer)


def collapse_law(law: PopLaw, variant: str = "correct") -> PopLaw:
    """Exact law of ``collapse``: a Weighted representation (one particle, outer weight Z)."""
    K, n = law.logw.shape
    norm = torch.softmax(law.logw, -1)
    mid, ln = _intervals(torch.cat([norm.cumsum(-1)[:, :-1], _grid(K, n)], 1))
    Q = mid.shape[1]
    rep = Population({"value": law.value.repeat_interleave(Q, 0)}, law.logw.repeat_interleave(Q, 0))
    st, outer = collapse(rep, mid.reshape(-1), variant)
    return PopLaw(law.prob.repeat_interleave(Q) * ln.reshape(-1), st["value"][:, None],
                  torch.zeros(K * Q, 1, dtype=F64), law.outer.repeat_interleave(Q) + outer)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to the total mass of b."""
    return float((a - b).abs().max() / b.abs().sum())


def mh_kernel(prog: Program, V: int, variant: str = "correct", tilt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact one-step trace-MH transition from the posterior: (π, πK) over values.
    (``tilt``: start from π·m instead, the distribution the kernel without m/m' leaves invariant.)

    The chain lives on uniforms; π is uniform on the box of uniforms of each path. From every
    posterior path a and site i < m_a, the re-runs of (a's boxes, site i and everything past m_a
    fresh) are enumerated: each is a proposal with probability (1/m_a) · P(c | a), accepted with
    min(1, exp(mh_log_acceptance)) (the real code)."""
    P = enumerate_paths(prog)
    lp = P.logq + P.logw + (P.m.to(F64).log() if tilt else 0.0)
    pi = torch.softmax(lp, 0)
    a_idx = torch.repeat_interleave(torch.arange(pi.numel()), P.m)
    start = torch.cumsum(P.m, 0) - P.m
    i = torch.arange(a_idx.numel()) - start[a_idx]
    # under π the uniforms of a path are uniform on its box: replay them as boxes, site i and every
    # position past m fresh (the proposal of mh_step, integrated over the box)
    keep = propose(P.u[a_idx], P.m[a_idx], i)
    lo = torch.where(keep, P.lo[a_idx], torch.zeros((), dtype=F64))
    hi = torch.where(keep, P.hi[a_idx], torch.ones((), dtype=F64))
    C = enumerate_paths(prog, lo, hi)
    a = a_idx[C.origin]
    acc = mh_log_acceptance(P.logw[a], P.m[a], C.logw, C.m, variant).clamp(max=0).exp()
    acc = torch.nan_to_num(acc, nan=0.0)
    flow = C.logq.exp() / P.m[a].to(F64) * acc                    # P(propose c and accept | a)
    leave = torch.zeros(pi.numel(), dtype=F64).index_add_(0, a, flow)
    piK = torch.zeros(V, dtype=F64).index_add_(0, C.value, pi[a] * flow)
    piK.index_add_(0, P.value, pi * (1 - leave))
    target = torch.zeros(V, dtype=F64).index_add_(0, P.value, pi)
    return target, piK

"""Probabilistic programs as batched generators, run against a trace of uniforms (spec §3).

A *program* is ``prog(B) -> generator``: it runs B independent copies ("particles") in lockstep,
yields effects and returns a tensor of B values.

- ``Sample(dist, active)``: draw from ``dist`` (batched over the B rows). Every draw is the inverse
  CDF of a U(0,1), so a run is a deterministic function of its list of uniforms u_1..u_m (the
  Traced representation's base measure, spec §3 "Traced"). Rows with ``active == False`` do not
  draw here (variable-length programs: the number of draws m differs between rows).
- ``Score(logw)``: multiply the row's weight by ``exp(logw)`` (``-inf`` = weight 0).

The k-th yield of a program is the same address for every row; a row that does not use a site
is masked inactive. Draws are consumed *positionally*: row b's j-th active draw reads ``u[b, j]``,
exactly the list-of-draws trace of the spec.

``execute`` is the one interpreter. It replays a trace (positions < its length) and, in sampling
mode, draws fresh uniforms where the trace ends; a *score window* (``skip``, ``stop``) makes the same
interpreter the Sequential representation: a program suspended after its k-th Score is re-run from
its trace and advanced to the next Score (Python generators cannot be copied, so a suspended
particle is its trace, and resuming it is deterministic replay). In enumeration mode it halts at
the first draw that is not fixed and reports the distribution there; ``enumerate_paths`` expands
each discrete draw into its intervals of u (one child per outcome, at the interval's midpoint) and
re-runs, which yields the exact denotation of a discrete program (spec §3 "Enumerator").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator

import torch

F64 = torch.float64
Program = Callable[[int], Generator[Any, torch.Tensor, torch.Tensor]]
_TINY = 2.0 ** -60  # keeps icdf finite at u = 0


class Categorical:
    """Discrete distribution over 0..K-1 (probs (B, K) or (K,)), sampled by inverse CDF."""

    discrete = True

    def __init__(self, probs: torch.Tensor):
        self.probs = probs.to(F64)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        c = self.probs.expand(u.shape[0], -1).cumsum(-1)
        # number of cumulative masses c_0..c_{K-2} that are <= u: the category whose interval holds u
        return torch.searchsorted(c[:, :-1].contiguous(), u[:, None], right=True)[:, 0]

    def value_as_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(F64)


class Normal:
    """N(loc, scale²) sampled by inverse CDF (continuous: not enumerable)."""

    discrete = False

    def __init__(self, loc: torch.Tensor | float, scale: torch.Tensor | float):
        self.loc, self.scale = torch.as_tensor(loc, dtype=F64), torch.as_tensor(scale, dtype=F64)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        return self.loc + self.scale * torch.special.ndtri(u.clamp(_TINY, 1 - _TINY))

    def value_as_float(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class Sample:
    dist: Any
    active: torch.Tensor | None = None  # (B,) bool; None = every row draws


@dataclass
class Score:
    logw: torch.Tensor  # (B,) log factor


@dataclass
class Exec:
    """One run of a program on B rows.

    ``u``/``x``: (B, L) the uniforms and the drawn values per position (positions >= m unused);
    ``m``: (B,) draws consumed; ``logw``: sum of the log scores inside the window;
    ``done``: the program returned (``value`` set) rather than suspending at ``stop``;
    ``halt``: enumeration mode stopped at a free draw: (probs (B, K), need (B,) bool, ptr (B,)).
    """

    u: torch.Tensor
    x: torch.Tensor
    m: torch.Tensor
    logw: torch.Tensor
    done: bool
    value: torch.Tensor | None = None
    n_scores: int = 0
    halt: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


def fresh_uniforms(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=F64)


def refresh(u: torch.Tensor, keep: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``u`` where ``keep``, fresh uniforms elsewhere (positions a re-run must not reuse)."""
    return torch.where(keep, u, fresh_uniforms(tuple(u.shape), gen))


def positions(L: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(L, device=like.device).expand(*like.shape, L)


def execute(prog: Program, B: int, u: torch.Tensor | None = None, *, gen: torch.Generator | None = None,
            fixed: torch.Tensor | None = None, skip: int = 0, stop: int | None = None) -> Exec:
    """Run ``prog`` on B rows reading draws from ``u`` (B, L) positionally.

    Sampling mode (``fixed is None``): every position of ``u`` is read as is; when a row runs past
    L, fresh uniforms from ``gen`` are appended. Enumeration mode: positions with ``fixed`` False
    (or past L) are free; the run halts at the first site where an active row needs a free draw.
    Scores with index < ``skip`` are not added (already counted by the caller); the run suspends
    right after the score with index ``stop - 1``.
    """
    u = torch.zeros(B, 0, dtype=F64) if u is None else u.clone()
    L = u.shape[1]
    x = torch.zeros(B, L, dtype=F64)
    ptr = torch.zeros(B, dtype=torch.long)
    logw = torch.zeros(B, dtype=F64)
    rows = torch.arange(B)
    g = prog(B)
    send: torch.Tensor | None = None
    n_scores = 0
    while True:
        try:
            eff = g.send(send) if send is not None else next(g)
        except StopIteration as fin:
            return Exec(u, x, ptr, logw, True, fin.value, n_scores)
        if isinstance(eff, Score):
            if n_scores >= skip:
                logw = logw + eff.logw.to(F64).expand(B)
            n_scores += 1
            send = None
            if stop is not None and n_scores >= stop:
                g.close()
                return Exec(u, x, ptr, logw, False, None, n_scores)
            continue
        if not isinstance(eff, Sample):
            raise TypeError(f"a program yields Sample or Score, got {type(eff).__name__}")
        active = torch.ones(B, dtype=torch.bool) if eff.active is None else eff.active.expand(B)
        need_cols = int(ptr.max()) + 1 if B else 0
        if fixed is not None:
            fx = fixed if fixed.shape[1] >= need_cols else torch.nn.functional.pad(fixed, (0, need_cols - fixed.shape[1]))
            free = active & ~fx[rows, ptr.clamp(max=fx.shape[1] - 1)] if need_cols else active
            if bool(free.any()):
                if not eff.dist.discrete:
                    raise ValueError("enumeration needs discrete distributions; this program samples a continuous one")
                g.close()
                probs = eff.dist.probs.expand(B, -1)
                return Exec(u, x, ptr, logw, False, None, n_scores, halt=(probs, free, ptr.clone()))
        if need_cols > L:  # grow the buffer (fresh draws in sampling mode)
            extra = max(need_cols - L, L)
            add = fresh_uniforms((B, extra), gen) if fixed is None else torch.full((B, extra), 0.5, dtype=F64)
            u, x = torch.cat([u, add], 1), torch.cat([x, torch.zeros(B, extra, dtype=F64)], 1)
            L = u.shape[1]
        ui = torch.where(active, u[rows, ptr.clamp(max=L - 1)], torch.full_like(logw, 0.5))
        val = eff.dist.icdf(ui)
        x[rows[active], ptr[active]] = eff.dist.value_as_float(val)[active]
        ptr = ptr + active.long()
        send = val


@dataclass
class Paths:
    """Every path of a discrete program (or every completion of given partial traces).

    ``origin``: the input row each path extends; ``logq``: log probability of the path given its
    input row (the product of the fractions of each draw's box that lead to this path);
    ``logw``: log product of its scores in the window; ``lo``/``hi``: the box of uniforms
    [lo, hi) per position that gives this path (every u in it runs the same path); ``u``: the
    boxes' midpoints."""

    origin: torch.Tensor
    u: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    x: torch.Tensor
    m: torch.Tensor
    logq: torch.Tensor
    logw: torch.Tensor
    value: torch.Tensor | None
    done: bool


def enumerate_paths(prog: Program, lo0: torch.Tensor | None = None, hi0: torch.Tensor | None = None, *,
                    skip: int = 0, stop: int | None = None, max_paths: int = 5_000_000) -> Paths:
    """Exact enumeration (spec §3 "Enumerator"): breadth-first over the discrete draws.

    Each draw's uniform is uniform on a box [lo, hi) ([0, 1) for a fresh draw). At a draw with
    category intervals [c_{k-1}, c_k), the path splits into the outcomes whose interval meets the
    box, with probability |overlap| / |box|; the child's box is the overlap. With ``lo0``/``hi0``
    (B0, L) the draws of B0 rows start in those boxes (a trace replayed where the uniforms are only
    known up to their box, e.g. a path of the posterior); positions past L are fresh."""
    if lo0 is None or hi0 is None:
        lo0, hi0 = torch.zeros(1, 0, dtype=F64), torch.ones(1, 0, dtype=F64)
    lo, hi = lo0.clone(), hi0.clone()
    u = (lo + hi) / 2
    fixed = torch.zeros_like(lo, dtype=torch.bool)  # positions already split in this enumeration
    origin = torch.arange(u.shape[0])
    logq = torch.zeros(u.shape[0], dtype=F64)
    while True:
        ex = execute(prog, u.shape[0], u, fixed=fixed, skip=skip, stop=stop)
        if ex.halt is None:
            return Paths(origin, ex.u[:, :lo.shape[1]], lo, hi, ex.x, ex.m, logq, ex.logw, ex.value, ex.done)
        probs, need, ptr = ex.halt
        P, K = probs.shape
        if int(ptr.max()) + 1 > u.shape[1]:
            pad = int(ptr.max()) + 1 - u.shape[1]
            lo = torch.nn.functional.pad(lo, (0, pad), value=0.0)
            hi = torch.nn.functional.pad(hi, (0, pad), value=1.0)
            u = torch.nn.functional.pad(u, (0, pad), value=0.5)
            fixed = torch.nn.functional.pad(fixed, (0, pad), value=False)
        c = probs.cumsum(-1)
        c_lo = torch.cat([torch.zeros(P, 1, dtype=F64), c[:, :-1]], 1)  # outcome k is drawn on [c_lo, c_hi)
        c_hi = torch.cat([c[:, :-1], torch.ones(P, 1, dtype=F64)], 1)
        rows = torch.arange(P)
        b_lo, b_hi = lo[rows, ptr.clamp(max=lo.shape[1] - 1)], hi[rows, ptr.clamp(max=lo.shape[1] - 1)]
        o_lo, o_hi = torch.maximum(c_lo, b_lo[:, None]), torch.minimum(c_hi, b_hi[:, None])
        frac = ((o_hi - o_lo).clamp(min=0) / (b_hi - b_lo)[:, None])
        # children: the outcomes met by the box for a row that draws here, the row itself otherwise
        keep = torch.where(need[:, None], (frac > 0) & (probs > 0), torch.arange(K)[None, :] == 0)
        parent, k = keep.nonzero(as_tuple=True)
        if parent.numel() > max_paths:
            raise ValueError(f"enumeration exceeds {max_paths} paths; use a smaller model")
        u, lo, hi, fixed = u[parent].clone(), lo[parent].clone(), hi[parent].clone(), fixed[parent].clone()
        grows = need[parent]
        r, pos, pr, kk = torch.arange(parent.numel())[grows], ptr[parent][grows], parent[grows], k[grows]
        lo[r, pos], hi[r, pos] = o_lo[pr, kk], o_hi[pr, kk]
        u[r, pos] = (o_lo[pr, kk] + o_hi[pr, kk]) / 2
        fixed[r, pos] = True
        logq = logq[parent] + torch.where(grows, frac[parent, k].log(), torch.zeros((), dtype=F64))
        origin = origin[parent]


def measure_of(values: torch.Tensor, logmass: torch.Tensor, V: int) -> torch.Tensor:
    """Dense unnormalised measure over value codes 0..V-1: Σ exp(logmass) δ_value."""
    out = torch.zeros(V, dtype=F64)
    return out.index_add_(0, values.reshape(-1).long(), logmass.reshape(-1).exp())


def program_measure(prog: Program, V: int) -> torch.Tensor:
    """The exact denotation of a discrete program: value -> Σ_paths P(path) · Π scores."""
    p = enumerate_paths(prog)
    return measure_of(p.value, p.logq + p.logw, V)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p / p.sum() - q / q.sum()).abs().sum())


def logmeanexp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])

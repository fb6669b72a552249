"""PAM, FastPAM1 and FasterPAM (Schubert & Rousseeuw 2021), vectorised with numpy.

All algorithms work on a dense, symmetric float64 dissimilarity matrix ``D`` (spec §3, §7) and
share one cache (:class:`SwapState`): per object o its nearest medoid slot n(o) with distance
d_n(o), its second-nearest slot with distance d_s(o), and the removal loss ΔR(i) per medoid slot.
Tie rules follow the paper / reference implementation: strict ``<`` everywhere, the first index
wins, so FastPAM1 takes exactly PAM's decisions (claim C1).

Distance evaluations are counted deterministically: one unit per d(·,·) entry an algorithm reads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp

SWAP_EPS = 1e-12
"""A swap is taken only if its gain < −SWAP_EPS·TD. The paper's rule is ``gain < 0``; with float
sums, a swap whose exact gain is 0 (equidistant objects, common on integer-pixel data) can come out
as −1e-13 in one formula and +1e-13 in another, so PAM and FastPAM1 would diverge on a tie. The
threshold (≈ 1e-9 at TD ≈ 1e3, far above rounding, far below any real gain) treats those as ties."""

Variant = Literal["correct", "no-correction", "stale-second", "per-medoid-gains"]
"""``variant`` is test-only (teeth of the claims): ``no-correction`` drops the
``Δ[n(o)] += d_n(o) − d_s(o)`` term of the O(n) gain routine, ``stale-second`` skips the
second-nearest rescan after a swap (spec §7 pitfalls), ``per-medoid-gains`` keeps FastPAM1's and
FasterPAM's decisions but evaluates each candidate's k swaps one medoid at a time (PAM's O(k·n) per
candidate instead of the shared O(n) pass of §3): the O(k) saving the paper claims is gone."""


@dataclass
class KMedoidsResult:
    """Outcome of one SWAP (or init) procedure: medoids, total deviation and its cost."""

    medoids: np.ndarray
    td: float
    swaps: int = 0
    iters: int = 0
    evals: int = 0
    seconds: float = 0.0
    labels: np.ndarray | None = None
    history: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Cache: nearest / second-nearest medoid and removal loss (spec §3)
# --------------------------------------------------------------------------------------------
@dataclass
class SwapState:
    """Per-object cache n(o), d_n(o), s(o), d_s(o) and per-slot removal loss ΔR (spec §3)."""

    med: np.ndarray      # (k,) object index of each medoid slot
    near: np.ndarray     # (n,) slot of nearest medoid
    dn: np.ndarray       # (n,) distance to nearest medoid
    sec: np.ndarray      # (n,) slot of second-nearest medoid (-1 when k == 1)
    ds: np.ndarray       # (n,) distance to second-nearest medoid (inf when k == 1)
    rloss: np.ndarray    # (k,) ΔR(i) = Σ_{n(o)=i} d_s(o) − d_n(o)
    evals: int = 0
    _members: sp.csr_matrix | None = None  # (k, n) 0/1 cluster membership, for per-slot sums

    @property
    def k(self) -> int:
        return int(self.med.shape[0])

    @property
    def td(self) -> float:
        return float(self.dn.sum())

    def refresh(self) -> None:
        """Recompute ΔR (O(n)) and the (k, n) membership matrix used for per-slot sums."""
        k, n = self.k, self.near.shape[0]
        self.rloss = np.bincount(self.near, weights=self.ds - self.dn, minlength=k)
        keys = self.near.astype(np.int16) if k < 2**15 else self.near
        perm = np.argsort(keys, kind="stable")          # radix sort: O(n)
        indptr = np.zeros(k + 1, np.int64)
        np.cumsum(np.bincount(self.near, minlength=k), out=indptr[1:])
        if self._members is None:
            self._members = sp.csr_matrix((np.ones(n), perm, indptr), shape=(k, n))
        else:                                          # same shape and nnz: refill in place
            self._members.indices[:] = perm
            self._members.indptr[:] = indptr


def initial_assignment(D: np.ndarray, medoids: np.ndarray) -> SwapState:
    """Assign every object to its nearest and second-nearest medoid (first slot wins ties).

    A medoid is always assigned to its own slot (as in the reference implementation), so no
    cluster is ever empty.
    """
    med = np.asarray(medoids, dtype=np.int64).copy()
    n, k = D.shape[0], med.shape[0]
    if len(np.unique(med)) != k:
        raise ValueError("initial medoids must be distinct")
    Dm = D[:, med].copy()                              # (n, k)
    Dm[med, np.arange(k)] = -1.0                       # force self-assignment of medoids
    near = np.argmin(Dm, axis=1)                       # first minimum wins
    rows = np.arange(n)
    dn = D[rows, med[near]].copy()
    if k > 1:
        Dm[rows, near] = np.inf
        sec = np.argmin(Dm, axis=1)
        ds = Dm[rows, sec].copy()
    else:
        sec = np.full(n, -1, dtype=np.int64)
        ds = np.full(n, np.inf)
    st = SwapState(med=med, near=near.astype(np.int64), dn=dn, sec=sec.astype(np.int64), ds=ds,
                   rloss=np.zeros(k), evals=n * k)
    st.refresh()
    return st


def _rescan_second(D: np.ndarray, st: SwapState, objs: np.ndarray, b: int, dox: np.ndarray) -> None:
    """Second nearest for ``objs`` after slot b got a new medoid: start from (b, d(o,x)), replace
    only on strictly smaller distance, scanning the other slots in index order (spec §3)."""
    if objs.size == 0:
        return
    Dm = D[objs][:, st.med]                            # (m, k) with the updated medoids
    st.evals += Dm.size
    Dm[np.arange(objs.size), st.near[objs]] = np.inf
    Dm[:, b] = np.inf
    j = np.argmin(Dm, axis=1)
    dj = Dm[np.arange(objs.size), j]
    better = dj < dox
    st.sec[objs] = np.where(better, j, b)
    st.ds[objs] = np.where(better, dj, dox)


def apply_swap(D: np.ndarray, st: SwapState, b: int, x: int, variant: str = "correct") -> None:
    """Replace the medoid in slot b by object x and update the cache (spec §3 'Swap update').

    Only objects with d(o,x) < d_s(o), or whose nearest/second medoid was slot b, can change;
    they are gathered first so that the update costs O(n) comparisons plus O(changed) work.
    """
    st.med[b] = x
    dx_all = D[x]                                      # d(o, x) for all o (symmetric D)
    st.evals += dx_all.shape[0]
    near, sec, dn, ds = st.near, st.sec, st.dn, st.ds
    old_near_x, old_dn_x = int(near[x]), float(dn[x])
    o = np.flatnonzero((dx_all < ds) | (near == b) | (sec == b))
    dx, nr, sc, dno, dso = dx_all[o], near[o], sec[o], dn[o], ds[o]
    was_b = nr == b
    lt_n, lt_s = dx < dno, dx < dso
    a_new = was_b & lt_s                               # nearest removed, x is closer than second
    a_sec = was_b & ~lt_s                              # nearest removed: second moves up, rescan
    kept = ~was_b
    b1 = kept & lt_n                                   # x becomes nearest, old nearest → second
    b2 = kept & ~lt_n & lt_s                           # x becomes second
    b3 = kept & ~lt_s & (sc == b)                      # second removed: rescan
    new_near = np.where(a_sec, sc, np.where(b1, b, nr))
    new_dn = np.where(a_new | b1, dx, np.where(a_sec, dso, dno))
    new_sec = np.where(b1, nr, np.where(b2, b, sc))
    new_ds = np.where(b1, dno, np.where(b2, dx, dso))
    near[o], dn[o], sec[o], ds[o] = new_near, new_dn, new_sec, new_ds
    if variant != "stale-second":                      # broken on purpose: stale d_s
        rescan = o[a_sec | b3]
        rescan = rescan[rescan != x]
        _rescan_second(D, st, rescan, b, dx_all[rescan])
    # the new medoid itself (handled first in the reference; overrides the above)
    if old_near_x != b:
        sec[x] = old_near_x
        ds[x] = old_dn_x
    near[x] = b
    dn[x] = 0.0
    st.refresh()


def recompute_state(D: np.ndarray, medoids: np.ndarray) -> SwapState:
    """From-scratch cache for ``medoids`` (used by the cache-invariant tests)."""
    return initial_assignment(D, medoids)


# --------------------------------------------------------------------------------------------
# Gains
# --------------------------------------------------------------------------------------------
def candidate_gains(D: np.ndarray, st: SwapState, X: np.ndarray,
                    variant: str = "correct") -> tuple[np.ndarray, np.ndarray]:
    """O(n) best-swap routine of FastPAM1, for a block of candidates at once (spec §3 box).

    For each candidate x: Δ = ΔR; shared = Σ_o min(d(o,x) − d_n(o), 0); for each o,
    Δ[n(o)] += clip(d(o,x), d_n(o), d_s(o)) − d_s(o), which equals d_n − d_s when x is closer
    than the nearest (the correction term), d(o,x) − d_s when x lies between nearest and second,
    and 0 otherwise. Returns (best TD change, best slot) per candidate; first slot wins ties.
    """
    if variant == "per-medoid-gains":
        # broken on purpose: one O(n) pass per (candidate, medoid) pair, as PAM does
        G = pam_gains(D, st, X)
        slot = np.argmin(G, axis=1)
        return G[np.arange(X.shape[0]), slot], slot
    Dx = D[X]                                          # (b, n) rows = d(x, ·)
    st.evals += Dx.size
    dn, ds = st.dn, st.ds
    buf = np.minimum(Dx, dn)
    buf -= dn
    shared = buf.sum(axis=1)
    np.maximum(Dx, dn, out=buf)
    np.minimum(buf, ds, out=buf)
    if variant == "no-correction":
        # broken on purpose: objects moving to x are still charged the removal loss
        buf[Dx < dn] = ds[np.nonzero(Dx < dn)[1]]
    # last op writes transposed, so the sparse product below reads a C-contiguous (n, b) array
    cT = np.empty((Dx.shape[1], Dx.shape[0]))
    np.subtract(buf, ds, out=cT.T)
    # per-slot sums Σ_{o: n(o)=i} c[x, o] for all x at once: O(b·n) sparse product
    per_slot = (st._members @ cT).T
    delta = per_slot + st.rloss
    slot = np.argmin(delta, axis=1)
    gain = delta[np.arange(X.shape[0]), slot] + shared
    return gain, slot


def pam_gains(D: np.ndarray, st: SwapState, X: np.ndarray) -> np.ndarray:
    """Original PAM: TD change of every (candidate x, slot i) computed directly (O(k·n) per x).

    TD(M − m_i + x) − TD(M) = Σ_o min(d_{−i}(o), d(o,x)) − d_n(o), where d_{−i}(o) = d_s(o)
    if n(o) = i else d_n(o) (Kaufman & Rousseeuw's C_{jih} cases). Returns a (b, k) matrix.
    """
    Dx = D[X]
    k = st.k
    out = np.empty((X.shape[0], k))
    buf = np.empty_like(Dx)
    for i in range(k):                                 # k · b · n work: the honest PAM cost
        w = np.where(st.near == i, st.ds, st.dn)
        np.minimum(Dx, w, out=buf)
        buf -= st.dn
        out[:, i] = buf.sum(axis=1)
    st.evals += Dx.size * k
    return out


def brute_force_delta(D: np.ndarray, medoids: np.ndarray, i: int, x: int) -> float:
    """TD(after swapping slot i with x) − TD(before), by full recomputation."""
    new = np.array(medoids).copy()
    new[i] = x
    return float(D[:, new].min(axis=1).sum() - D[:, medoids].min(axis=1).sum())


# --------------------------------------------------------------------------------------------
# Initialisations (spec §3)
# --------------------------------------------------------------------------------------------
def random_init(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct random object indices."""
    return rng.choice(n, size=k, replace=False).astype(np.int64)


def build_init(D: np.ndarray, k: int, block: int = 256) -> KMedoidsResult:
    """PAM BUILD: greedy, each step adds the object that lowers TD the most (O(k·n²))."""
    t0 = time.perf_counter()
    n = D.shape[0]
    first = int(np.argmin(D.sum(axis=1)))
    meds = [first]
    dn = D[first].copy()
    is_med = np.zeros(n, bool)
    is_med[first] = True
    evals = n * n
    for _ in range(1, k):
        gains = np.empty(n)
        for s in range(0, n, block):
            buf = np.minimum(D[s:s + block], dn)
            buf -= dn
            gains[s:s + block] = buf.sum(axis=1)
        evals += n * n
        gains[is_med] = np.inf
        c = int(np.argmin(gains))
        meds.append(c)
        is_med[c] = True
        np.minimum(dn, D[c], out=dn)
    return KMedoidsResult(np.array(meds, np.int64), float(dn.sum()), evals=evals,
                          seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# SWAP procedures
# --------------------------------------------------------------------------------------------
def _best_of_iteration(gain_rows: np.ndarray, slots: np.ndarray, cands: np.ndarray) -> tuple[float, int, int]:
    """Overall best (gain, slot, x): first candidate index wins, then first slot (PAM loop order)."""
    j = int(np.argmin(gain_rows))
    return float(gain_rows[j]), int(slots[j]), int(cands[j])


def pam_swap(D: np.ndarray, medoids: np.ndarray, max_iter: int = 100, block: int = 128,
             check=None) -> KMedoidsResult:
    """Original PAM SWAP: per iteration evaluate all k·(n−k) swaps directly, apply the best."""
    return _best_swap_loop(D, medoids, max_iter, block, fast=False, check=check)


def fastpam1_swap(D: np.ndarray, medoids: np.ndarray, max_iter: int = 100, block: int = 256,
                  variant: str = "correct", check=None) -> KMedoidsResult:
    """FastPAM1: PAM's decisions with the O(n) per-candidate routine (an O(k) speed-up)."""
    return _best_swap_loop(D, medoids, max_iter, block, fast=True, variant=variant, check=check)


def _single_medoid(D: np.ndarray, medoids: np.ndarray, t0: float) -> KMedoidsResult:
    """k = 1 (no second nearest, spec §7): the best medoid is the object of least row sum."""
    sums = D.sum(axis=1)
    m = int(np.argmin(sums))
    old = int(np.asarray(medoids)[0])
    swaps = int(sums[m] < sums[old])
    m = m if swaps else old
    n = D.shape[0]
    return KMedoidsResult(np.array([m], np.int64), float(sums[m]), swaps, 1, n * n,
                          time.perf_counter() - t0, np.zeros(n, np.int64))


def _best_swap_loop(D, medoids, max_iter, block, fast, variant="correct", check=None) -> KMedoidsResult:
    t0 = time.perf_counter()
    if len(medoids) == 1:
        return _single_medoid(D, medoids, t0)
    st = initial_assignment(D, medoids)
    n = D.shape[0]
    loss = st.td
    hist = [loss]
    swaps = iters = 0
    while iters < max_iter:
        iters += 1
        is_med = np.zeros(n, bool)
        is_med[st.med] = True
        cands = np.flatnonzero(~is_med)
        g = np.empty(cands.size)
        sl = np.empty(cands.size, np.int64)
        for s in range(0, cands.size, block):
            X = cands[s:s + block]
            if fast:
                g[s:s + block], sl[s:s + block] = candidate_gains(D, st, X, variant)
            else:
                G = pam_gains(D, st, X)
                sl[s:s + block] = np.argmin(G, axis=1)
                g[s:s + block] = G[np.arange(X.size), sl[s:s + block]]
        gain, b, x = _best_of_iteration(g, sl, cands)
        if not gain < -SWAP_EPS * loss:
            break
        apply_swap(D, st, b, x, variant)
        swaps += 1
        if check is not None:
            check(st)
        new = st.td
        if new >= loss:                                # numerically stuck (as the reference)
            loss = new
            break
        loss = new
        hist.append(loss)
    secs = time.perf_counter() - t0
    # reported TD is recomputed from scratch (not read from the cache a broken variant may corrupt)
    return KMedoidsResult(st.med.copy(), total_deviation(D, st.med), swaps, iters, st.evals, secs,
                          st.near.copy(), hist)


def fasterpam_swap(D: np.ndarray, medoids: np.ndarray, max_iter: int = 100,
                   order: np.ndarray | None = None, variant: str = "correct",
                   min_block: int = 4, max_block: int = 128, check=None) -> KMedoidsResult:
    """FasterPAM: eager swaps. Scan candidates x in ``order``; perform the best swap for x as soon
    as it improves TD; a pass ends at the object of the last swap (spec §3: ``if x == last: break``);
    stop after a pass without swaps or after ``max_iter`` passes.

    Candidates are evaluated speculatively in blocks with the current cache; the first improving
    one in a block is exactly what the sequential loop would find (nothing changed before it),
    so the decisions equal the one-candidate-at-a-time loop. Work after it is discarded (and
    counted in ``evals``). The block size adapts to how often swaps occur.
    """
    t0 = time.perf_counter()
    if len(medoids) == 1:
        return _single_medoid(D, medoids, t0)
    n = D.shape[0]
    order = np.arange(n) if order is None else np.asarray(order, np.int64)
    pos_of = np.empty(n, np.int64)
    pos_of[order] = np.arange(n)
    st = initial_assignment(D, medoids)
    is_med = np.zeros(n, bool)
    is_med[st.med] = True
    loss = st.td
    hist = [loss]
    last = n                                           # position of the last swap, n = none
    swaps = iters = 0
    bs = min_block
    while iters < max_iter:
        iters += 1
        swaps_before, lastloss = swaps, loss
        stop = last
        i = 0
        while i < stop:
            blk = order[i:min(i + bs, stop)]
            X = blk[~is_med[blk]]
            if X.size == 0:
                i += blk.size
                continue
            gain, slot = candidate_gains(D, st, X, variant)
            hit = np.flatnonzero(gain < -SWAP_EPS * loss)
            if hit.size == 0:
                i += blk.size
                bs = min(2 * bs, max_block)
                continue
            p = int(hit[0])
            x, b = int(X[p]), int(slot[p])
            is_med[st.med[b]] = False
            is_med[x] = True
            apply_swap(D, st, b, x, variant)
            swaps += 1
            if check is not None:
                check(st)
            loss = st.td
            hist.append(loss)
            last = int(pos_of[x])
            i = last + 1
            bs = max(min_block, min(max_block, p + 1))   # next block ≈ observed gap
        if swaps == swaps_before or loss >= lastloss:
            break
    secs = time.perf_counter() - t0
    # reported TD is recomputed from scratch (not read from the cache a broken variant may corrupt)
    return KMedoidsResult(st.med.copy(), total_deviation(D, st.med), swaps, iters, st.evals, secs,
                          st.near.copy(), hist)


# --------------------------------------------------------------------------------------------
# Baselines (spec §4): alternating k-medoids, CLARA, FastCLARA
# --------------------------------------------------------------------------------------------
def alternating(D: np.ndarray, medoids: np.ndarray, max_iter: int = 100) -> KMedoidsResult:
    """Voronoi iteration: assign to nearest medoid, then move each medoid to its cluster's medoid."""
    t0 = time.perf_counter()
    med = np.asarray(medoids, np.int64).copy()
    n, k = D.shape[0], med.shape[0]
    evals = 0
    iters = 0
    labels = np.argmin(D[:, med], axis=1)
    evals += n * k
    while iters < max_iter:
        iters += 1
        changed = False
        for c in range(k):                             # per cluster: one |C|×|C| block op
            members = np.flatnonzero(labels == c)
            if members.size == 0:
                continue
            sub = D[np.ix_(members, members)]
            evals += sub.size
            cost = sub.sum(axis=1)
            j = int(np.argmin(cost))
            cur = np.flatnonzero(members == med[c])
            if cur.size == 0 or cost[j] < cost[cur[0]]:
                med[c] = int(members[j])
                changed = True
        labels = np.argmin(D[:, med], axis=1)
        evals += n * k
        if not changed:
            break
    td = float(D[np.arange(n), med[labels]].sum())
    return KMedoidsResult(med, td, 0, iters, evals, time.perf_counter() - t0, labels)


def _clara(D: np.ndarray, k: int, rng: np.random.Generator, samples: int, sample_size: int,
           inner: str, max_iter: int) -> KMedoidsResult:
    """CLARA: cluster random samples (inner PAM = BUILD+SWAP, or FasterPAM), keep the medoids with
    the best TD on the full data (spec §3 'FastCLARA')."""
    t0 = time.perf_counter()
    n = D.shape[0]
    m = min(n, sample_size)
    best: KMedoidsResult | None = None
    evals = 0
    for _ in range(samples):
        # previous best medoids are kept in the next sample (Kaufman & Rousseeuw's CLARA)
        keep = best.medoids if best is not None else np.empty(0, np.int64)
        rest = np.setdiff1d(np.arange(n), keep)
        idx = np.concatenate([keep, rng.choice(rest, m - keep.size, replace=False)])
        sub = D[np.ix_(idx, idx)]
        if inner == "pam":
            init = build_init(sub, k)
            res = pam_swap(sub, init.medoids, max_iter)
            evals += init.evals
        else:
            res = fasterpam_swap(sub, random_init(m, k, rng), max_iter)
        evals += res.evals
        med = idx[res.medoids]
        td = float(D[:, med].min(axis=1).sum())
        evals += n * k
        if best is None or td < best.td:
            best = KMedoidsResult(med, td)
    assert best is not None
    best.evals, best.seconds, best.iters = evals, time.perf_counter() - t0, samples
    return best


def clara(D: np.ndarray, k: int, rng: np.random.Generator, samples: int = 5,
          max_iter: int = 100) -> KMedoidsResult:
    """CLARA with PAM (BUILD + SWAP) on 5 samples of size 40 + 2k (Kaufman & Rousseeuw)."""
    return _clara(D, k, rng, samples, 40 + 2 * k, "pam", max_iter)


def fastclara(D: np.ndarray, k: int, rng: np.random.Generator, samples: int = 5,
              max_iter: int = 100) -> KMedoidsResult:
    """FastCLARA: FasterPAM on 5 samples of size 80 + 4k (spec §3)."""
    return _clara(D, k, rng, samples, 80 + 4 * k, "fasterpam", max_iter)


def total_deviation(D: np.ndarray, medoids: np.ndarray) -> float:
    """TD(M) = Σ_o min_{m∈M} d(o, m)."""
    return float(D[:, np.asarray(medoids)].min(axis=1).sum())

"""Diversity-centric selection (Yu et al. 2024, spec §3): seeded k-means on instruction embeddings,
kM-Random, kMQ (within-cluster sampling without replacement, p_i ∝ exp(q_i)), and one round of the
iterative refinement's cluster re-weighting (softmax of mean reward differences, multinomial allocation,
random unselected items per cluster, exhausted clusters flagged or redistributed).

Everything is vectorised torch on the tensors' device; sampling without replacement with p ∝ exp(key)
is the Gumbel-top-k trick (equal in law to sequential draws, numpy's ``choice(replace=False, p=...)``).
"""
from __future__ import annotations

import hashlib
from typing import Literal

import torch

Variant = Literal["correct", "sign-flipped", "uniform-sampling", "shuffled-clusters"]


# ----------------------------------------------------------------------------- embeddings
def hash_embeddings(texts: list[str], dim: int = 256) -> torch.Tensor:
    """Deterministic offline stand-in for MiniLM (smoke): hashed bag of words + character trigrams,
    L2-normalised (spec §3 normalises the encoder's output too)."""
    rows, cols = [], []
    for i, t in enumerate(texts):
        s = f" {t.lower()} "
        feats = s.split() + [s[j:j + 3] for j in range(len(s) - 2)]
        for f in feats:
            rows.append(i)
            cols.append(int.from_bytes(hashlib.md5(f.encode()).digest()[:4], "little") % dim)
    x = torch.zeros(len(texts), dim)
    x.index_put_((torch.tensor(rows), torch.tensor(cols)), torch.ones(len(rows)), accumulate=True)
    return torch.nn.functional.normalize(x, dim=-1)


# ----------------------------------------------------------------------------- k-means (spec §3)
def kmeans(x: torch.Tensor, k: int, *, niter: int, nredo: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Lloyd k-means (faiss.Kmeans(d, K, niter, nredo) in the repo): ``nredo`` seeded restarts from
    k-means++ seeds, keep the lowest inertia. Returns (assignment (N,), centroids (K, D), inertia)."""
    n = x.shape[0]
    best = (None, None, float("inf"))
    for _ in range(nredo):
        # k-means++ seeding, drawn with the CPU generator
        first = int(torch.randint(n, (1,), generator=generator))
        cent = [x[first]]
        d2 = ((x - x[first]) ** 2).sum(1)
        for _ in range(1, k):
            p = (d2 / d2.sum().clamp(min=1e-12)).cpu().double()
            j = int(torch.multinomial(p if p.sum() > 0 else torch.ones(n, dtype=torch.double), 1, generator=generator))
            cent.append(x[j])
            d2 = torch.minimum(d2, ((x - x[j]) ** 2).sum(1))
        c = torch.stack(cent)
        for _ in range(niter):
            assign = torch.cdist(x, c).argmin(1)
            sums = torch.zeros_like(c).index_add_(0, assign, x)
            cnt = torch.bincount(assign, minlength=k).to(x.dtype)
            new = torch.where(cnt[:, None] > 0, sums / cnt.clamp(min=1)[:, None], c)  # empty cluster: keep centroid
            if torch.allclose(new, c):
                c = new
                break
            c = new
        assign = torch.cdist(x, c).argmin(1)
        inertia = float(((x - c[assign]) ** 2).sum())
        if inertia < best[2]:
            best = (assign, c, inertia)
    return best  # type: ignore[return-value]


# ----------------------------------------------------------------------------- samplers (spec §3)
def gumbel(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(device)


def sample_per_cluster(cluster: torch.Tensor, quota: torch.Tensor, logits: torch.Tensor,
                       available: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """In each cluster c draw min(quota[c], #available in c) items without replacement with
    p ∝ exp(logits) (Gumbel-top-k, vectorised over clusters). Returns sorted indices (CPU long)."""
    dev = cluster.device
    key = logits.double() + gumbel((cluster.numel(),), generator, dev)
    key = torch.where(available, key, torch.full_like(key, -float("inf")))
    # order by (cluster asc, key desc): stable sort on key, then stable sort on cluster
    o1 = torch.argsort(key, descending=True, stable=True)
    o2 = torch.argsort(cluster[o1], stable=True)
    order = o1[o2]
    cl = cluster[order]
    start = torch.zeros_like(quota)
    counts = torch.bincount(cl, minlength=quota.numel())
    start[1:] = counts.cumsum(0)[:-1]
    rank = torch.arange(cl.numel(), device=dev) - start[cl]
    keep = (rank < quota[cl]) & available[order]
    return torch.sort(order[keep]).values.cpu()


def kmq_select(cluster: torch.Tensor, k: int, budget: int, quality: torch.Tensor, generator: torch.Generator,
               *, variant: str = "correct", available: torch.Tensor | None = None) -> torch.Tensor:
    """kMQ (spec §3): per cluster min(B/K, |c|) items, without replacement, p_i ∝ exp(q_i).
    Teeth ``uniform-sampling`` drops exp(q) (= kM-Random)."""
    quota = torch.full((k,), budget // k, dtype=torch.long, device=cluster.device)  # repo: int(B/K), no redistribution
    logits = torch.zeros_like(quality) if variant == "uniform-sampling" else quality
    avail = torch.ones_like(cluster, dtype=torch.bool) if available is None else available
    return sample_per_cluster(cluster, quota, logits, avail, generator)


def kmrandom_select(cluster: torch.Tensor, k: int, budget: int, generator: torch.Generator) -> torch.Tensor:
    """kM-Random (spec §3): per cluster min(B/K, |c|) items uniformly without replacement."""
    return kmq_select(cluster, k, budget, torch.zeros(cluster.numel(), device=cluster.device), generator,
                      variant="uniform-sampling")


def random_select(n: int, budget: int, generator: torch.Generator) -> torch.Tensor:
    return torch.sort(torch.randperm(n, generator=generator)[:budget]).values


# ----------------------------------------------------------------------------- iterative refinement (spec §3)
def reward_difference(rm_gold: torch.Tensor, rm_gen: torch.Tensor, variant: str = "correct") -> torch.Tensor:
    """s_i = RM(x_i, y_gold_i) - RM(x_i, y_hat_i) (spec §3, repo ``reward_diff``); teeth flips the sign."""
    s = rm_gold - rm_gen
    return -s if variant == "sign-flipped" else s


def cluster_weights(s: torch.Tensor, cluster_of_s: torch.Tensor, k: int, temperature: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """S_c = mean of s over selected items of cluster c; w = softmax_c(S_c / T) (spec §3, repo: exp then
    normalise). Clusters with no scored item get weight 0 (the repo's groupby has no row for them).
    Returns (w (K,), S_c (K,), nan where unscored)."""
    tot = torch.zeros(k, dtype=torch.float64, device=s.device).index_add_(0, cluster_of_s, s.double())
    cnt = torch.bincount(cluster_of_s, minlength=k).double()
    sc = torch.where(cnt > 0, tot / cnt.clamp(min=1), torch.full_like(tot, float("nan")))
    logit = torch.where(cnt > 0, sc / temperature, torch.full_like(tot, -float("inf")))
    return torch.softmax(logit, 0), sc


def allocate(w: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n_c ~ Multinomial(n, w) (spec §3; numpy ``choice(K, size=n, p=w)`` counted per cluster)."""
    if n <= 0:
        return torch.zeros(w.numel(), dtype=torch.long, device=w.device)
    draws = torch.multinomial(w.cpu().double(), n, replacement=True, generator=generator)
    return torch.bincount(draws, minlength=w.numel()).to(w.device)


def add_round(cluster: torch.Tensor, selected: torch.Tensor, w: torch.Tensor, n: int, generator: torch.Generator,
              *, redistribute: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """One refinement step: allocate n draws over clusters, add min(n_c, #unselected in c) random
    unselected items of each cluster (never an item twice). ``redistribute`` (spec §7; off = the repo)
    re-draws the shortfall of exhausted clusters over the clusters that still have items.
    Returns (new indices (CPU long), stats)."""
    k = w.numel()
    avail = ~selected
    n_avail = torch.bincount(cluster[avail], minlength=k)
    alloc = allocate(w, n, generator)
    take = torch.minimum(alloc, n_avail)
    shortfall = int((alloc - take).sum())
    stats = {"allocated": float(alloc.sum()), "shortfall": float(shortfall)}
    while redistribute and shortfall > 0:
        room = n_avail - take
        w2 = torch.where(room > 0, w, torch.zeros_like(w))
        if float(w2.sum()) <= 0:  # weights zero on every cluster with room: fall back to room-proportional
            w2 = room.double()
        if float(w2.sum()) <= 0:
            break
        extra = torch.minimum(allocate(w2 / w2.sum(), shortfall, generator), room)
        take = take + extra
        shortfall -= int(extra.sum())
    stats["unfilled"] = float(shortfall)
    idx = sample_per_cluster(cluster, take, torch.zeros(cluster.numel(), device=cluster.device), avail, generator)
    return idx, stats


def entropy_bits(counts: torch.Tensor) -> float:
    p = counts.double() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())

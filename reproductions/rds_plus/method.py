"""RDS+ (Ivison et al. 2025, spec §3): representation-based data selection with the base LM itself.

1. Represent every pool item and every query example by the final-layer hidden states h_1..h_L of the
   base LM, pooled with the SGPT-style position-weighted mean w_t = t / sum_{s=1}^{L} s (spec §3,
   "Representation"), then L2-normalised.
2. Score a pool item d against a query q by cos(e_q, e_d) (spec §3, "Scoring").
3. Aggregate over a task's queries by the max (default) or the mean (spec §3, "Aggregation").
4. Single task: take the top n. Several tasks: round-robin over per-task sorted lists, each task
   taking its best item not yet taken (spec §3, "Multi-task"; §7 "skip items already taken").

Everything works on padded batches: the pooling weights are restricted to each row's real tokens and
renormalised (spec §7, the repository's version assumes batch size 1), so a padded batch gives the
batch-1 result. Baselines of spec §3: plain mean pooling and the last token ("RDS" variants), any
sentence-embedding model's unit vectors, and random selection.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from suite.errors import ConfigError

Pooling = Literal["weighted_mean", "mean", "last", "reversed"]
Aggregation = Literal["max", "mean"]
RRSkip = Literal["next_unseen", "lose_turn"]
# deliberately broken variants (teeth only): "negated" ranks by -cos (selects the least similar items);
# "reversed" weights positions by (L - t + 1) instead of t (the SGPT weights turned around)
Variant = Literal["correct", "negated", "reversed"]


def position_weights(mask: torch.Tensor, pooling: Pooling = "weighted_mean") -> torch.Tensor:
    """Pooling weights (N, T) over the real tokens of right- or left-padded rows (``mask`` (N, T) bool).

    ``weighted_mean`` (spec §3): w_t = t / sum_{s=1}^{L} s with t = 1..L counted over real tokens only
    (padding gets weight 0, spec §7); ``mean``: 1/L; ``last``: one-hot at the last real token;
    ``reversed`` (teeth): w_t = (L - t + 1) / sum_s s. Each row sums to 1.
    """
    m = mask.to(torch.float32)
    if bool((m.sum(1) == 0).any()):
        raise ConfigError("position_weights: a row has no real token")
    t = m.cumsum(1) * m  # 1..L at real tokens, 0 at padding
    length = m.sum(1, keepdim=True)
    if pooling == "weighted_mean":
        w = t
    elif pooling == "reversed":
        w = (length - t + 1) * m
    elif pooling == "mean":
        w = m
    elif pooling == "last":
        w = (t == length).to(torch.float32) * m
    else:
        raise ConfigError(f"position_weights: pooling {pooling!r} unknown; use weighted_mean, mean, last, reversed")
    return w / w.sum(1, keepdim=True)


def pool_hidden(h: torch.Tensor, mask: torch.Tensor, pooling: Pooling = "weighted_mean",
                normalize: bool = True) -> torch.Tensor:
    """e = sum_t w_t h_t (spec §3), then L2-normalised: (N, T, d) hidden states -> (N, d) unit vectors."""
    w = position_weights(mask.to(h.device), pooling).to(h.dtype)
    e = torch.einsum("nt,ntd->nd", w, h)
    return F.normalize(e.float(), dim=-1) if normalize else e


def weighted_mean_single(h: torch.Tensor) -> torch.Tensor:
    """The repository's batch-size-1 form (spec §3, no padding): h (L, d) -> sum_t t/sum(s) h_t (not normalised)."""
    t = torch.arange(1, h.shape[0] + 1, dtype=h.dtype, device=h.device)
    return (t / t.sum()) @ h


def task_scores(query_emb: torch.Tensor, pool_emb: torch.Tensor, aggregation: Aggregation = "max",
                chunk: int = 65536, negate: bool = False) -> torch.Tensor:
    """Per-item score (N,) for one task: max (or mean) over the task's queries of cos(e_q, e_d)
    (spec §3 "Scoring"/"Aggregation"); embeddings must be unit vectors. The pool is processed in chunks,
    so an fp16 index shard can be scored on the GPU without materialising (Q, N) at once.
    ``negate`` (teeth "negated"): -cos."""
    q = query_emb.float()
    out = []
    for s in range(0, pool_emb.shape[0], chunk):
        sim = q @ pool_emb[s:s + chunk].to(q.device, torch.float32).T  # (Q, n) cosine similarities
        if negate:
            sim = -sim
        out.append(sim.amax(0) if aggregation == "max" else sim.mean(0))
    return torch.cat(out) if out else torch.zeros(0, device=q.device)


def top_n(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n highest scores, best first (single-task selection, spec §3)."""
    if not 0 < n <= scores.shape[0]:
        raise ConfigError(f"top_n: n={n} but the pool has {scores.shape[0]} items")
    return torch.topk(scores, n).indices


def round_robin(scores: torch.Tensor, n: int, skip: RRSkip = "next_unseen") -> torch.Tensor:
    """Multi-task selection (spec §3): ``scores`` (K, N), one row per task; each task keeps its items
    sorted by score; tasks take turns 0, 1, ..., K-1, 0, ... until n distinct items are selected.

    ``next_unseen`` (spec §3/§7): a task's turn yields its best item not taken yet. ``lose_turn``: the
    official ``get_top_aggregated_influences.py`` pops the task's next item and, if another task already
    took it, the turn passes without a new item (the same set as interleaving the sorted lists rank by
    rank and dropping repeats). Returns the selected indices in selection order (no duplicates).
    """
    k, num = scores.shape
    if not 0 < n <= num:
        raise ConfigError(f"round_robin: n={n} but the pool has {num} items")
    order = torch.argsort(scores, dim=1, descending=True, stable=True)  # (K, N)
    if skip == "lose_turn":  # interleave rank-major, keep the first occurrence of each item
        flat = order.T.reshape(-1)
        uniq, inv = torch.unique(flat, return_inverse=True)
        pos = torch.full((uniq.shape[0],), flat.shape[0], dtype=torch.long, device=flat.device)
        pos.scatter_reduce_(0, inv, torch.arange(flat.shape[0], device=flat.device), reduce="amin")
        keep = torch.sort(pos).values[:n]
        return flat[keep]
    # next_unseen: sequential by nature (each pick depends on all earlier picks); O(n + skips) over
    # Python lists, a few seconds for millions of picks
    rows = order.cpu().tolist()
    ptr = [0] * k
    taken = bytearray(num)
    out: list[int] = []
    while len(out) < n:
        for j in range(k):
            if len(out) >= n:
                break
            row, p = rows[j], ptr[j]
            while taken[row[p]]:
                p += 1
            taken[row[p]] = 1
            out.append(row[p])
            ptr[j] = p + 1
    return torch.tensor(out, dtype=torch.long)


def random_selection(num: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """The common baseline: n distinct items uniformly at random (spec §3 "random")."""
    if not 0 < n <= num:
        raise ConfigError(f"random_selection: n={n} but the pool has {num} items")
    return torch.randperm(num, generator=gen)[:n]


def select(query_embs: Sequence[torch.Tensor], pool_emb: torch.Tensor, n: int, aggregation: Aggregation = "max",
           skip: RRSkip = "next_unseen", negate: bool = False) -> torch.Tensor:
    """RDS+ end to end on embeddings: one query set per task -> n pool indices (top n for one task,
    round-robin for several)."""
    scores = torch.stack([task_scores(q, pool_emb, aggregation, negate=negate) for q in query_embs])
    return top_n(scores[0], n) if scores.shape[0] == 1 else round_robin(scores, n, skip)


__all__ = ["Pooling", "Aggregation", "RRSkip", "Variant", "position_weights", "pool_hidden", "weighted_mean_single",
           "task_scores", "top_n", "round_robin", "random_selection", "select"]

"""MIG (Chen et al., ACL 2025 Findings, arXiv 2504.13835): data selection by maximising information
gain in a semantic label space (spec §3), and the baselines of the spec's CPU protocol (§6).

Read top to bottom as the paper's method:

1. label embeddings, L2-normalised (paper: e5-mistral-7b-instruct; here MiniLM or a deterministic
   character-trigram stand-in, :func:`trigram_embeddings`);
2. label graph W = cos-sim with entries < theta set to 0 (:func:`label_graph`);
3. propagation matrix P = diag(W) + beta * offdiag(W), each column normalised to sum 1
   (:func:`propagation_matrix`);
4. sample vectors v_i[l] = s_i (or s_i / |L_i| with ``norm``) for l in L_i, propagated u_i = v_i P
   (:func:`sample_vectors`);
5. Phi(S) = sum_l phi(x_l), x = sum_{i in S} u_i, phi concave (:func:`phi`, :func:`phi_prime`);
6. greedy selection by the gradient approximation of the marginal gain, gain_i = u_i . phi'(x),
   batched over candidates (:func:`mig_select`); the exact marginal gain Phi(S + i) - Phi(S) is
   :func:`exact_gains` (the smoke check and the ``gain="exact"`` option).

Baselines: random, quality top-k, and #InsTag's complexity-first tag-coverage sampler
(:func:`instag_select`).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

Variant = Literal["correct", "linear-phi", "sign-flipped"]
PhiType = Literal["pow", "exp", "linear"]


# ---------------------------------------------------------------- 1. label embeddings

def trigram_embeddings(labels: Sequence[str]) -> torch.Tensor:
    """Deterministic offline stand-in for a sentence encoder: bag of character trigrams of
    ``" label "`` (lower-cased), L2-normalised, (L, n_trigrams). Labels sharing words share trigrams."""
    grams = [[f" {s.lower()} "[i:i + 3] for i in range(len(s) + 1)] for s in labels]
    vocab = {g: j for j, g in enumerate(sorted({g for gs in grams for g in gs}))}
    rows = torch.tensor([i for i, gs in enumerate(grams) for _ in gs], dtype=torch.long)
    cols = torch.tensor([vocab[g] for gs in grams for g in gs], dtype=torch.long)
    e = torch.zeros(len(labels), max(len(vocab), 1))
    e.index_put_((rows, cols), torch.ones(len(rows)), accumulate=True)
    return torch.nn.functional.normalize(e, dim=-1)


# ---------------------------------------------------------------- 2.-3. label graph, propagation

def label_graph(emb: torch.Tensor, theta: float) -> torch.Tensor:
    """Spec §3 / official SimLabelGraph: W = E E^T (cosine of normalised embeddings), W[W < theta] = 0."""
    w = emb @ emb.T
    return torch.where(w >= theta, w, torch.zeros_like(w))


def propagation_matrix(w: torch.Tensor, beta: float) -> torch.Tensor:
    """Spec §3: P = diag(W) + beta * offdiag(W); every column normalised to sum 1."""
    eye = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
    p = w * eye + beta * w * (1 - eye)
    return p / p.sum(0, keepdim=True)


def mean_degree(w: torch.Tensor) -> float:
    """Average number of other labels a label is connected to (spec §7: tune theta on it)."""
    n = w.shape[0]
    return float(((w > 0).sum() - n) / max(n, 1))


# ---------------------------------------------------------------- 4. sample vectors

def sample_vectors(rows: torch.Tensor, cols: torch.Tensor, scores: torch.Tensor, n_labels: int,
                   norm: bool = False) -> torch.Tensor:
    """Dense (N, L) v with v[i, l] = s_i (or s_i / |L_i| if ``norm``) for the (row, label) pairs
    ``(rows[j], cols[j])`` (spec §3; the official CLI default is norm off)."""
    n = scores.shape[0]
    v = torch.zeros(n, n_labels, device=scores.device, dtype=torch.float32)
    val = scores[rows].float()
    if norm:
        cnt = torch.bincount(rows, minlength=n).clamp(min=1).to(val)
        val = val / cnt[rows]
    v[rows, cols] = val  # a label listed twice for one sample is set once, as in the official vectorize
    return v


# ---------------------------------------------------------------- 5. information function

def phi(x: torch.Tensor, kind: PhiType, a: float, b: float, alpha: float) -> torch.Tensor:
    """phi with phi(0) = 0 whose derivative is :func:`phi_prime` (spec §3): pow: (x+a)^b - a^b;
    exp: 1 - e^{-alpha x}; linear: x (no diminishing returns)."""
    if kind == "pow":
        return (x + a) ** b - a ** b
    if kind == "exp":
        return 1.0 - torch.exp(-alpha * x)
    return x


def phi_prime(x: torch.Tensor, kind: PhiType, a: float, b: float, alpha: float) -> torch.Tensor:
    """pow: b (x + a)^(b - 1); exp: alpha e^{-alpha x}; linear: 1."""
    if kind == "pow":
        return b * (x + a) ** (b - 1)
    if kind == "exp":
        return alpha * torch.exp(-alpha * x)
    return torch.ones_like(x)


def information(x: torch.Tensor, kind: PhiType, a: float, b: float, alpha: float) -> torch.Tensor:
    """Phi(S) = sum_l phi(x_l) (spec §3)."""
    return phi(x, kind, a, b, alpha).sum(-1)


def gradient_gains(u: torch.Tensor, g: torch.Tensor, batch_size: int = 0) -> torch.Tensor:
    """gain_i = u_i . g for every row, in row chunks of ``batch_size`` (0 = one product)."""
    if not batch_size or batch_size >= u.shape[0]:
        return u @ g
    return torch.cat([u[s:s + batch_size] @ g for s in range(0, u.shape[0], batch_size)])


def exact_gains(u: torch.Tensor, x: torch.Tensor, kind: PhiType, a: float, b: float, alpha: float,
                batch_size: int = 0) -> torch.Tensor:
    """Phi(S + {i}) - Phi(S) = sum_l phi(x_l + u_il) - phi(x_l) for every row (chunked)."""
    base = information(x, kind, a, b, alpha)
    step = batch_size or u.shape[0]
    return torch.cat([information(x + u[s:s + step], kind, a, b, alpha) - base
                      for s in range(0, u.shape[0], step)])


# ---------------------------------------------------------------- 6. greedy selection

def mig_select(u: torch.Tensor, k: int, *, phi_type: PhiType = "pow", a: float = 1e-6, b: float = 0.8,
               alpha: float = 1.0, batch_size: int = 0, gain: Literal["gradient", "exact"] = "gradient",
               variant: Variant = "correct") -> torch.Tensor:
    """Greedy maximisation of Phi (spec §3 algorithm box): k times, g = phi'(x), gain_i = u_i . g over
    the remaining candidates, pick the argmax, x += u_j. One index space: removed rows get -inf.
    Returns the selected row indices in selection order (LongTensor on u's device).

    Teeth (``variant``): ``linear-phi`` uses phi' = 1 (no diminishing returns: quality-weighted top-k);
    ``sign-flipped`` picks the argmax of -gain (the least informative sample)."""
    n = u.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"mig_select: k={k} must be in 1..{n}")
    kind: PhiType = "linear" if variant == "linear-phi" else phi_type
    sign = -1.0 if variant == "sign-flipped" else 1.0
    x = torch.zeros(u.shape[1], device=u.device, dtype=u.dtype)
    taken = torch.zeros(n, dtype=torch.bool, device=u.device)
    out = torch.empty(k, dtype=torch.long, device=u.device)
    neg_inf = torch.tensor(-math.inf, device=u.device, dtype=u.dtype)
    for t in range(k):
        if gain == "exact":
            s = exact_gains(u, x, kind, a, b, alpha, batch_size)
        else:
            s = gradient_gains(u, phi_prime(x, kind, a, b, alpha), batch_size)
        s = torch.where(taken, neg_inf, sign * s)
        j = torch.argmax(s)
        out[t] = j
        taken[j] = True
        x = x + u[j]
    return out


# ---------------------------------------------------------------- baselines (spec §4 / §6)

def random_select(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[:k]


def quality_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Quality top-k (a DEITA-score-only selector): the k highest s_i."""
    return torch.topk(scores, k).indices


def instag_select(tags: torch.Tensor, k: int, chunk: int = 32768) -> torch.Tensor:
    """#InsTag's complexity-first diverse sampling (Lu et al. 2023): visit samples by tag count
    (descending, stable), add a sample when it brings a tag not yet in the covered set; when a pass
    over the remaining samples is done (the covered set saturates), reset it and pass again.

    ``tags`` is a bool (N, T) matrix. Vectorised per pass: in one sequential pass a sample is added iff
    it is the first remaining sample (in visit order) holding one of its tags (a tag of i is covered
    before i exactly when an earlier remaining sample holds it), so a pass is a scatter-min per tag."""
    n, t = tags.shape
    order = torch.argsort(tags.sum(1), descending=True, stable=True)
    pos = torch.empty(n, dtype=torch.long, device=tags.device)
    pos[order] = torch.arange(n, device=tags.device)  # visit position of each sample
    remaining = tags.any(1)
    picked: list[torch.Tensor] = []
    count = 0
    big = torch.tensor(n, device=tags.device)
    while count < k and bool(remaining.any()):
        p = torch.full((t,), n, dtype=torch.long, device=tags.device)  # first remaining holder per tag
        for s in range(0, n, chunk):
            cand = tags[s:s + chunk] & remaining[s:s + chunk, None]
            p = torch.minimum(p, torch.where(cand, pos[s:s + chunk, None], big).amin(0))
        first = p[p < n].unique()  # visit positions of this pass's picks, in visit order
        sel = order[first]
        picked.append(sel)
        remaining[sel] = False
        count += sel.numel()
    out = torch.cat(picked) if picked else torch.zeros(0, dtype=torch.long, device=tags.device)
    if out.numel() < k:  # samples without any tag come last, in visit order
        rest = order[~tags.any(1)[order]]
        out = torch.cat([out, rest])
    return out[:k]


def instag_select_reference(tags: list[set], k: int) -> list[int]:
    """Literal sequential #InsTag pass loop (for the equivalence check on toys only)."""
    order = sorted(range(len(tags)), key=lambda i: -len(tags[i]))
    remaining = [i for i in order if tags[i]]
    out: list[int] = []
    while len(out) < k and remaining:
        covered: set = set()
        nxt = []
        for i in remaining:
            if tags[i] - covered and len(out) < k:
                out.append(i)
                covered |= tags[i]
            else:
                nxt.append(i)
        remaining = nxt
    return out[:k]


# ---------------------------------------------------------------- diagnostics

def entropy_bits(counts: torch.Tensor) -> float:
    p = counts.float() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def rank(v: torch.Tensor) -> torch.Tensor:
        v = v.double().cpu()
        r = torch.empty_like(v)
        srt, idx = torch.sort(v)
        r[idx] = torch.arange(len(v), dtype=torch.float64)
        uniq, inv = torch.unique(srt, return_inverse=True)
        mean_rank = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.arange(len(v)).double())
        mean_rank /= torch.bincount(inv).double()
        r[idx] = mean_rank[inv]
        return r
    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()).clamp(min=1e-12))

"""Initialisers of new embedding rows (spec §3) and the convex-hull logit bound (C1).

Every initialiser takes the old matrix E (V x d) and returns E_new (T x d). Hull methods return convex
combinations of the old rows, so for any hidden state h: h.e_t = sum_k w_tk h.e_k <= max_k h.e_k (C1).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Variant = Literal["correct", "hull-unnormalised", "cw2v-unconstrained", "cw2v-ascent", "cw2v-ascent-unconstrained",
                  "multivariate-unscaled-cov"]
METHODS = ("random", "zero", "mean", "multivariate", "hull", "cw2v")


def init_random(E: torch.Tensor, T: int, g: torch.Generator, sigma: float = 0.02) -> torch.Tensor:
    return torch.randn(T, E.shape[1], generator=g, dtype=E.dtype).to(E.device) * sigma


def init_mean(E: torch.Tensor, T: int) -> torch.Tensor:  # Hewitt (2021)
    return E.mean(0, keepdim=True).expand(T, -1).clone()


def init_multivariate(E: torch.Tensor, T: int, g: torch.Generator, ridge: float = 1e-5,
                      variant: str = "correct") -> torch.Tensor:
    """e_t ~ N(mu, Sigma), Sigma with a small ridge for the Cholesky (spec §7).
    Teeth ``multivariate-unscaled-cov``: the scatter matrix X^T X used as the covariance (missing 1/(V-1))."""
    mu = E.mean(0)
    X = (E - mu).double()
    cov = X.T @ X / (1 if variant == "multivariate-unscaled-cov" else max(E.shape[0] - 1, 1))
    L = torch.linalg.cholesky(cov + ridge * cov.diagonal().mean() * torch.eye(E.shape[1], dtype=cov.dtype,
                                                                                device=E.device))
    z = torch.randn(T, E.shape[1], generator=g, dtype=torch.float64).to(E.device)
    return (mu.double() + z @ L.T).to(E.dtype)


def hull_weights(V: int, T: int, g: torch.Generator, variant: str = "correct") -> torch.Tensor:
    """w_t ~ Dirichlet(1) over the old vocabulary (spec §3). Teeth: weights off the simplex."""
    if variant == "hull-unnormalised":  # BROKEN: signed, unnormalised weights (not a convex combination)
        return torch.randn(T, V, generator=g, dtype=torch.float64) * 3.0
    x = -torch.log(torch.rand(T, V, generator=g, dtype=torch.float64).clamp_min(1e-12))  # Exp(1) draws
    return x / x.sum(1, keepdim=True)


def init_hull(E: torch.Tensor, T: int, g: torch.Generator, variant: str = "correct") -> torch.Tensor:
    w = hull_weights(E.shape[0], T, g, variant).to(E.device)
    return (w @ E.double()).to(E.dtype)


def cw2v(E: torch.Tensor, new_ids: torch.Tensor, text: torch.Tensor, steps: int, window: int, negatives: int,
         lr: float, g: torch.Generator, variant: str = "correct", batch: int = 512) -> tuple[torch.Tensor, list[float]]:
    """Constrained word2vec (spec §3): skip-gram with negative sampling on target-language text, the new rows
    parameterised as e_t = softmax(W_t) E with the old rows E frozen, so every new row stays in the hull.
    Context vectors are the (tied) embeddings: old tokens frozen, new tokens their current hull rows.
    ``text``: (N, L) token ids of the expanded vocabulary; ``new_ids``: ids V..V+T-1."""
    V, d = E.shape
    T = new_ids.numel()
    dev = E.device
    Ed = E.detach()
    free = variant in ("cw2v-unconstrained", "cw2v-ascent-unconstrained")
    sign = -1.0 if variant.startswith("cw2v-ascent") else 1.0  # BROKEN (ascent): gradient sign flipped
    if free:  # BROKEN: free rows, no softmax/simplex constraint
        W = (torch.randn(T, d, generator=g) * Ed.norm(dim=1).mean() / d ** 0.5).to(dev).requires_grad_(True)
    else:
        W = torch.zeros(T, V, device=dev, requires_grad=True)
    opt = torch.optim.Adam([W], lr=lr)

    def rows() -> torch.Tensor:
        return W if free else torch.softmax(W, -1) @ Ed

    # (center, context) pairs within the window whose center is a new token
    N, L = text.shape
    cs, xs = [], []
    for o in range(1, window + 1):
        for a, b in ((text[:, :-o], text[:, o:]), (text[:, o:], text[:, :-o])):
            cs.append(a.reshape(-1)); xs.append(b.reshape(-1))
    c, x = torch.cat(cs), torch.cat(xs)
    keep = c >= V
    c, x = (c[keep] - V).to(dev), x[keep].to(dev)
    losses: list[float] = []
    for s in range(steps):
        idx = torch.randint(c.numel(), (batch,), generator=g).to(dev)
        neg = torch.randint(V + T, (batch, negatives), generator=g).to(dev)
        R = rows()
        table = torch.cat([Ed, R], 0)
        ec = R[c[idx]]
        pos = (ec * table[x[idx]]).sum(-1)
        ng = torch.einsum("bd,bkd->bk", ec, table[neg])
        loss = -(F.logsigmoid(pos).mean() + F.logsigmoid(-ng).sum(-1).mean())
        opt.zero_grad(); (sign * loss).backward(); opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        return rows().detach().clone(), losses


@torch.no_grad()
def hull_bound_excess(E_old: torch.Tensor, E_new: torch.Tensor, H: torch.Tensor) -> float:
    """C1: max over hidden states h of (max_t h.e_new_t - max_k h.e_old_k); <= 0 for hull rows."""
    lo = H.double() @ E_old.double().T
    ln = H.double() @ E_new.double().T
    return float((ln.max(1).values - lo.max(1).values).max())


def simplex_recovery(E_old: torch.Tensor, E_new: torch.Tensor, steps: int = 500) -> float:
    """Fits w_t on the simplex (softmax param.) to reproduce each new row; returns the worst relative residual
    (a small value certifies the row is (nearly) in the hull of E_old)."""
    Eo = E_old.double()
    W = torch.zeros(E_new.shape[0], Eo.shape[0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([W], lr=0.1)
    tgt = E_new.double()
    for _ in range(steps):
        r = torch.softmax(W, -1) @ Eo - tgt
        loss = (r ** 2).sum()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        r = torch.softmax(W, -1) @ Eo - tgt
        return float((r.norm(dim=1) / tgt.norm(dim=1).clamp_min(1e-12)).max())

"""BackSlash rate-constrained training step and DeepShape post-training reshaping (spec §3)."""
from __future__ import annotations

import torch
from torch import nn

from suite.errors import ConfigError

from . import gg
from .codecs import all_params


@torch.no_grad()
def backslash_step_(model: nn.Module, lam: float, c: float = 1.0, variant: str = "paper") -> float:
    """One BackSlash update, applied after every optimiser step (BackSlash, arXiv 2504.16968):
    nu from ALL parameters jointly (spec §7), then for every tensor
    theta <- theta - lam * (nu / n) * sign(theta) * (|theta| + c)^(nu - 1), n = total count.
    Returns the estimated nu. TEST-ONLY broken variants (teeth): ``backslash-sign-flipped`` adds the
    term (pushes weights away from 0), ``backslash-no-n`` drops the 1/n normalisation."""
    flat = all_params(model)
    _, nu, _ = gg.estimate(flat)
    n = 1 if variant == "backslash-no-n" else flat.numel()
    sgn = -1.0 if variant == "backslash-sign-flipped" else 1.0
    for p in model.parameters():
        p.sub_(sgn * lam * nu / n * torch.sign(p) * (p.abs() + c) ** (nu - 1))
    return nu


def target_counts(levels: torch.Tensor, mu: float, nu: float, beta: float, total: int) -> torch.Tensor:
    """Integer counts per quantised level following GG(mu, nu, beta) that sum to ``total`` exactly
    (largest-remainder rounding; the reference floors and leaves the remainder unmapped)."""
    w = torch.exp(-((levels.double() - mu).abs() / beta) ** nu)
    exp = total * w / w.sum()
    base = torch.floor(exp).to(torch.int64)
    short = total - int(base.sum())
    if short > 0:
        base[torch.argsort(exp - base.double(), descending=True)[:short]] += 1
    return base


@torch.no_grad()
def deepshape_(model: nn.Module, shape_scale: float = 0.8, std_scale: float = 0.6, adj_minnum: int = 1000,
               step_log2: int = 13, variant: str = "paper") -> dict[str, float]:
    """DeepShape (spec §3): quantise all parameters with step 2^-13; the central range is
    |q - mu| <= the smallest positive level seen at most ``adj_minnum`` times; (mu, nu, beta) are estimated
    on |x| below that level;
    target nu' = shape_scale * nu, beta' = std_scale * beta; rank-preserving histogram specification:
    the central values, sorted, are assigned in order to levels whose counts follow GG(mu, nu', beta').
    Values outside the central range keep their quantised value. ``variant='unsorted'`` (TEST-ONLY)
    assigns the levels without sorting (breaks rank preservation)."""
    step = 2.0 ** -step_log2
    flat = all_params(model).double()
    q = torch.round(flat / step).to(torch.int64)
    levels, counts = torch.unique(q, return_counts=True)
    rare = levels[(counts <= adj_minnum) & (levels > 0)]
    if adj_minnum > 0 and rare.numel() == 0:
        raise ConfigError(f"DeepShape: no positive level has <= {adj_minnum} values; raise adj_minnum")
    qmax = int(rare.min()) if adj_minnum > 0 else int(q.abs().max())
    mu, nu, beta = gg.estimate(flat[flat.abs() <= qmax * step])
    mu_q, beta_q = round(mu / step), beta / step
    central = (q - mu_q).abs() <= qmax  # a contiguous value interval, remapped onto itself
    grid = torch.arange(mu_q - qmax, mu_q + qmax + 1, dtype=torch.int64, device=flat.device)
    idx = torch.nonzero(central).flatten()
    cnt = target_counts(grid, mu_q, shape_scale * nu, std_scale * beta_q, idx.numel())
    order = idx[torch.argsort(flat[idx], stable=True)] if variant == "paper" else idx
    if variant not in ("paper", "unsorted"):
        raise ConfigError(f"DeepShape variant {variant!r} unknown; use 'paper' (test-only: 'unsorted')")
    new_q = q.clone()
    new_q[order] = torch.repeat_interleave(grid, cnt)
    new = new_q.double() * step
    off = 0
    for p in model.parameters():
        p.copy_(new[off:off + p.numel()].view_as(p).to(p.dtype))
        off += p.numel()
    return {"mu": mu, "nu": nu, "beta": beta, "nu_target": shape_scale * nu, "beta_target": std_scale * beta,
            "central_frac": float(central.double().mean()), "qmax": float(qmax)}


def rank_violations(before: torch.Tensor, after: torch.Tensor) -> int:
    """Pairs of neighbours (in the order of ``before``) whose order ``after`` reverses (0 = the remap
    is rank preserving; ties after quantisation are allowed)."""
    o = torch.argsort(before, stable=True)
    return int((after[o][1:] < after[o][:-1]).sum())

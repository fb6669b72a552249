"""Adaptive Weighted Rejection Sampling (Lipkin et al., COLM 2025, §3 / Alg. 1) and AWRS-SMC.

Two implementations of one AWRS call:
- :func:`awrs_reference`: the algorithm box, sequential, calling a counted checker.
- :func:`awrs_batch`: the same draws vectorised over many rows, given each row's validity vector;
  it returns the number of constraint calls the sequential algorithm makes with the same noise
  (``test_awrs`` checks the two agree call for call).
Baselines: full-vocabulary masking (LCD with |V| checks) and rejection with replacement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from .constraints import Checker

# TEST-ONLY mutations: "no_round2" skips round 2 (spec §6 T4); "no_early_exit" keeps checking the whole
# Gumbel order after the first valid token (the draw is unchanged, the adaptive saving is lost);
# "negated_weight" subtracts the AWRS log-weight in SMC instead of adding it.
Variant = Literal["paper", "no_round2", "no_early_exit", "negated_weight"]


def gumbel(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
    return -torch.log(-torch.log(u))


def awrs_reference(logw: torch.Tensor, ctx_text: str, tokens: list[str], checker: Checker,
                   g1: torch.Tensor, g2: torch.Tensor, proper_weights: bool = True) -> tuple[int | None, float, int]:
    """One AWRS call at a context (spec §3). ``logw``: LM log-weights over vocab + EOS (last).

    Returns (token or None for a dead particle, log-weight, rejections). ``g1``/``g2`` are the
    Gumbel noises of the two rounds.
    """
    log_z = torch.logsumexp(logw, 0)
    logp = (logw - log_z).clone()
    eos = len(tokens)
    tok, nrej, r1 = None, 0, []
    for rnd, g in ((1, g1), (2, g2)):
        keys = logp + g  # Gumbel-max without replacement, order = sampling without replacement ∝ p
        for v in torch.argsort(keys, descending=True).tolist():
            if keys[v] == -math.inf:
                break
            ok = checker.complete(ctx_text) if v == eos else checker.prefix(ctx_text + tokens[v])
            if ok:
                tok = v if tok is None else tok
                break
            nrej += 1
            if tok is None:
                r1.append(float(logp[v]))
            logp[v] = -math.inf  # removed permanently
        if not proper_weights:
            return tok, 0.0, nrej  # LCD mode: round 1 only, unweighted
    if tok is None:
        return None, -math.inf, nrej
    rej_mass = sum(math.exp(x) for x in r1)
    return tok, float(log_z) + math.log1p(-rej_mass) - math.log(nrej + 1), nrej


@dataclass
class Draws:
    """Vectorised AWRS output per row: token (-1 = dead), log-weight, constraint calls."""

    tok: torch.Tensor
    logw: torch.Tensor
    calls: torch.Tensor


def _first_valid(keys: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort ``keys`` descending; (order, rank of first valid finite key or -1, #finite keys, found)."""
    sk, order = keys.sort(1, descending=True)
    finite = torch.isfinite(sk)
    hit = valid.gather(1, order) & finite
    found = hit.any(1)
    rank = torch.where(found, hit.float().argmax(1), torch.full_like(found, -1, dtype=torch.long))
    return order, rank, finite.sum(1), found


def awrs_batch(logw: torch.Tensor, valid: torch.Tensor, gen: torch.Generator, *, proper_weights: bool = True,
               variant: str = "paper", g1: torch.Tensor | None = None, g2: torch.Tensor | None = None) -> Draws:
    """AWRS on each row of ``logw`` (n, V+1) with validity ``valid`` (n, V+1) (spec §3).

    ``proper_weights=False`` is LCD (round 1 only, unweighted). ``variant="no_round2"`` (test-only
    mutation, spec §6 T4) skips round 2 and uses logZ + log(1 - ΣR1) - log(nrej + 1).
    """
    n = logw.shape[0]
    log_z = torch.logsumexp(logw, 1)
    logp = logw - log_z[:, None]
    g1 = gumbel(tuple(logw.shape), gen) if g1 is None else g1
    order, r1, n_fin, found = _first_valid(logp + g1, valid)
    nrej1 = torch.where(found, r1, n_fin)
    tok = torch.where(found, order.gather(1, r1.clamp(min=0)[:, None]).squeeze(1), torch.full_like(r1, -1))
    calls = torch.where(found, r1 + 1, n_fin)
    if variant == "no_early_exit":  # TEST-ONLY: the scan does not stop at the first valid token
        calls = n_fin.clone()
    if not proper_weights:
        return Draws(tok, torch.zeros(n, dtype=torch.float64), calls)
    # R1 = the invalid tokens ranked before the first valid one; their mass leaves the support
    sorted_p = logp.gather(1, order).exp()
    before = torch.arange(logw.shape[1])[None, :] < r1[:, None]
    rej_mass = (sorted_p * before).sum(1).clamp(max=1.0)
    removed = torch.zeros_like(valid).scatter(1, order, before)
    if variant == "no_round2":
        nrej = nrej1
    else:
        g2 = gumbel(tuple(logw.shape), gen) if g2 is None else g2
        _, r2, _, found2 = _first_valid(logp.masked_fill(removed, -math.inf) + g2, valid)
        r2 = torch.where(found & found2, r2, torch.zeros_like(r2))
        nrej = nrej1 + r2
        scan2 = n_fin - r1 - 1 if variant == "no_early_exit" else r2 + 1  # round 2 scans what round 1 left
        calls = calls + torch.where(found, scan2, torch.zeros_like(r2))
    lw = log_z + torch.log1p(-rej_mass) - torch.log(nrej.double() + 1)
    lw = torch.where(found, lw, torch.full_like(lw, -math.inf))
    return Draws(tok, lw, calls)


def masking_reference(logw: torch.Tensor, ctx_text: str, tokens: list[str], checker: Checker,
                      gen: torch.Generator) -> int | None:
    """One call of locally constrained decoding by full-vocabulary masking, on the counted checker:
    every token the LM gives mass is checked (``prefix``; EOS, last, with ``complete``), then the draw
    is exact from the masked distribution. Its cost is what ``checker.calls`` counts."""
    eos = len(tokens)
    finite = torch.isfinite(logw).tolist()
    ok = torch.tensor([finite[v] and
                       (checker.complete(ctx_text) if v == eos else checker.prefix(ctx_text + tokens[v]))
                       for v in range(eos + 1)])
    if not ok.any():
        return None
    probs = torch.softmax(logw.masked_fill(~ok, -math.inf), 0)
    return int(torch.multinomial(probs.float(), 1, generator=gen))


def masking_batch(logw: torch.Tensor, valid: torch.Tensor, gen: torch.Generator) -> Draws:
    """Locally constrained decoding by full-vocabulary masking, vectorised over rows given validity:
    an exact draw from ℓ (its checks are counted on :func:`masking_reference`)."""
    masked = logw.masked_fill(~valid, -math.inf)
    ok = valid.any(1)
    probs = torch.where(ok[:, None], torch.softmax(masked, 1), torch.ones_like(logw))
    tok = torch.where(ok, torch.multinomial(probs.float(), 1, generator=gen).squeeze(1), torch.full_like(ok, -1, dtype=torch.long))
    calls = torch.full((logw.shape[0],), logw.shape[1], dtype=torch.long)
    return Draws(tok, torch.logsumexp(masked, 1), calls)


def with_replacement_batch(logw: torch.Tensor, valid: torch.Tensor, gen: torch.Generator, block: int = 64,
                           max_rounds: int = 1000) -> Draws:
    """Rejection sampling *with* replacement (T4 mutation): i.i.d. draws ∝ p until one is valid."""
    n = logw.shape[0]
    probs = torch.softmax(logw, 1)
    tok = torch.full((n,), -1, dtype=torch.long)
    calls = torch.zeros(n, dtype=torch.long)
    todo = valid.any(1)
    for _ in range(max_rounds):  # blocks of draws; rarely more than one
        rows = todo.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        d = torch.multinomial(probs[rows], block, replacement=True, generator=gen)
        ok = valid[rows].gather(1, d)
        hit = ok.any(1)
        first = ok.float().argmax(1)
        calls[rows] += torch.where(hit, first + 1, torch.full_like(first, block))
        tok[rows[hit]] = d[hit, first[hit]]
        todo[rows[hit]] = False
    return Draws(tok, torch.zeros(n, dtype=torch.float64), calls)

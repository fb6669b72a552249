"""Token-level SMC over a black-box LM and a black-box constraint (full scale, spec §3-§4).

One loop runs the five methods the paper compares (spec §4; settings of ``scripts/pattern_matching.sh`` in
genlm/awrs-colm-2025), differing only in the proposal, the critic and the resampling threshold:

| method | proposal | particles | ESS τ | constraint used as |
|---|---|---|---|---|
| base LM | the LM | 1 | 0 | nothing (the constraint is ignored) |
| LCD | AWRS round 1, unweighted | 1 | 0 | local filter |
| sample-rerank | the LM | 10 | 0 | final critic: importance weight 1[s ∈ L] at EOS |
| twisted SMC | the LM | 10 | 0.9 | twist: prefix check after every token, ``complete`` at EOS |
| AWRS-SMC | AWRS (both rounds) | 5 | 0.5 | AWRS proposal; its weight estimates Z_ℓ (spec §3) |

A particle finishes at EOS; one unfinished after ``max_tokens`` tokens gets weight 0 (as π is defined in
``smc.py``). Accuracy = Σ_i w̄_i · correct(s_i) over the normalised weighted posterior (spec §4).
The constraint is a black box here, so every method calls it sequentially per particle and the
``checker`` counts the calls; LM logits come batched over particles.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

import torch

from .method import awrs_reference, gumbel


class Constraint(Protocol):
    calls: int

    def prefix(self, text: str) -> bool: ...

    def complete(self, text: str) -> bool: ...


@dataclass(frozen=True)
class Method:
    """One sampler of spec §4: ``proposal`` draws the next token, ``critic`` is how an LM proposal uses the
    constraint, ``ess`` the resampling threshold τ (0 = never resample)."""

    name: str
    proposal: Literal["lm", "awrs", "lcd"]
    particles: int
    ess: float = 0.0
    critic: Literal["none", "end", "twist"] = "none"


def methods(awrs_particles: int = 5, awrs_ess: float = 0.5, rerank_samples: int = 10,
            twisted_particles: int = 10, twisted_ess: float = 0.9) -> tuple[Method, ...]:
    """The paper's five methods (spec §4), defaults as in ``scripts/pattern_matching.sh``."""
    return (
        Method("base_lm", "lm", 1),  # plain sampling from the LM, 1 particle
        Method("lcd", "lcd", 1),  # locally constrained decoding: AWRS round 1, unweighted
        Method("sample_rerank", "lm", rerank_samples, critic="end"),  # N LM samples, constraint as final critic
        Method("twisted_smc", "lm", twisted_particles, twisted_ess, critic="twist"),  # LM proposal, prefix twist
        Method("awrs_smc", "awrs", awrs_particles, awrs_ess),  # the paper's method (spec §3)
    )


@dataclass
class InstanceResult:
    accuracy: float  # Σ_i w̄_i · correct(s_i); 0 when no particle finished with positive weight
    calls: int  # constraint calls made by the sampler (the final accuracy check is not one)
    tokens: int  # tokens generated (incl. EOS)
    sampler_s: float  # seconds spent drawing tokens and checking the constraint (LM forwards excluded)
    texts: list[str] = field(default_factory=list)  # per particle
    finished: list[bool] = field(default_factory=list)
    weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # normalised posterior weights


def resample(logw: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Multinomial resampling (spec §3): M ancestor indices drawn ∝ exp(logw); dead particles (-inf) never."""
    return torch.multinomial(torch.softmax(logw, 0).float(), logw.numel(), replacement=True, generator=gen)


def ess(logw: torch.Tensor) -> float:
    """Effective sample size 1 / Σ w̄² of log-weights (0 when every weight is 0)."""
    if not torch.isfinite(logw).any():
        return 0.0
    w = torch.softmax(logw, 0)
    return float(1.0 / (w ** 2).sum())


def run_instance(next_logits: Callable[[list[list[int]]], torch.Tensor], strs: list[str], checker: Constraint,
                 correct: Callable[[str], bool], method: Method, max_tokens: int,
                 gen: torch.Generator) -> InstanceResult:
    """One run of ``method`` on one instance (spec §3 SMC / §4 baselines).

    ``next_logits(seqs)``: LM log-probs (n, len(strs) + 1) after each token sequence, EOS in the last column."""
    M, eos = method.particles, len(strs)
    seqs: list[list[int]] = [[] for _ in range(M)]
    texts, done = [""] * M, [False] * M
    logw = torch.zeros(M, dtype=torch.float64)
    tokens, spent = 0, 0.0
    for _ in range(max_tokens):
        act = [i for i in range(M) if not done[i] and math.isfinite(float(logw[i]))]
        if not act:
            break
        lg = next_logits([seqs[i] for i in act]).double()
        t0 = time.perf_counter()
        if method.proposal == "lm":  # ancestral sampling from p: the proposal is the target LM, weight 1
            drawn = torch.multinomial(lg.exp(), 1, generator=gen).squeeze(1).tolist()
            steps: list[tuple[int | None, float]] = [(t, 0.0) for t in drawn]
        else:  # AWRS (spec §3): round 1 gives the token, round 2 the weight; LCD = round 1 only, unweighted
            proper = method.proposal == "awrs"
            steps = []
            for j, i in enumerate(act):
                tok, lw, _ = awrs_reference(lg[j], texts[i], strs, checker, gumbel((eos + 1,), gen),
                                            gumbel((eos + 1,), gen), proper)
                steps.append((tok, lw if proper else 0.0))
        for (tok, lw), i in zip(steps, act):
            if tok is None:  # no valid token: the particle dies (spec §7)
                logw[i] = -math.inf
                continue
            tokens += 1
            logw[i] += lw
            if tok == eos:
                done[i] = True
            else:
                seqs[i].append(tok)
                texts[i] += strs[tok]
            if method.critic == "twist":  # twisted SMC: the constraint as a 0/-inf twist on every prefix
                ok = checker.complete(texts[i]) if done[i] else checker.prefix(texts[i])
                if not ok:
                    logw[i] = -math.inf
        spent += time.perf_counter() - t0
        # resample when ESS < τ·M (spec §3); a population with no live particle is left to end
        if method.ess > 0 and M > 1 and torch.isfinite(logw).any() and ess(logw) < method.ess * M:
            idx = resample(logw, gen).tolist()
            seqs, texts, done = [list(seqs[k]) for k in idx], [texts[k] for k in idx], [done[k] for k in idx]
            logw = torch.zeros(M, dtype=torch.float64)
    if method.critic == "end":  # sample-rerank: importance weight 1[s ∈ L] for each finished sample
        t0 = time.perf_counter()
        for i in range(M):
            if done[i] and math.isfinite(float(logw[i])) and not checker.complete(texts[i]):
                logw[i] = -math.inf
        spent += time.perf_counter() - t0
    fin = torch.tensor(done)
    logw = torch.where(fin, logw, torch.full_like(logw, -math.inf))  # unfinished: weight 0
    w = torch.softmax(logw, 0) if torch.isfinite(logw).any() else torch.zeros_like(logw)
    ok = torch.tensor([d and correct(t) for d, t in zip(done, texts)], dtype=torch.float64)
    return InstanceResult(float((w * ok).sum()), checker.calls, tokens, spent, texts, done, w)


def paired_bootstrap(a: torch.Tensor, b: torch.Tensor, resamples: int, gen: torch.Generator,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a − b over instances and its percentile bootstrap CI (instances resampled in pairs; spec §4:
    95 %, 10k resamples)."""
    d = (a - b).double()
    idx = torch.randint(d.numel(), (resamples, d.numel()), generator=gen)
    means = d[idx].mean(1)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return float(d.mean()), lo, hi

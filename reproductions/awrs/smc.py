"""AWRS-SMC (spec §3 "SMC"), LCD as its 1-particle unweighted special case, and the exact global
target π(s) ∝ p(s) · 1[s ∈ L] by enumeration. Many independent replicates run side by side."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .lm import BigramLM
from .method import awrs_batch


@dataclass
class Task:
    """An LM, a token-level DFA (``trans`` (S, V), ``accepting`` (S,)), and a length cap."""

    lm: BigramLM
    trans: torch.Tensor
    accepting: torch.Tensor
    max_tokens: int  # including EOS; unfinished sequences get weight 0

    def valid(self, state: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.trans[state] >= 0, self.accepting[state][:, None]], 1)

    @property
    def base(self) -> int:
        return self.lm.vocab + 2


def enumerate_target(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, p(s EOS)) of every valid token string with <= max_tokens - 1 tokens (BFS)."""
    V, eos = task.lm.vocab, task.lm.eos
    state = torch.zeros(1, dtype=torch.long)
    prev = torch.full((1,), V, dtype=torch.long)
    code = torch.zeros(1, dtype=torch.long)
    lp = torch.zeros(1, dtype=torch.float64)
    codes, probs = [], []
    for t in range(task.max_tokens):
        fin = task.accepting[state]
        codes.append(code[fin])
        probs.append((lp + task.lm.logp[prev, eos])[fin].exp())
        if t == task.max_tokens - 1:
            break
        f, v = (task.trans[state] >= 0).nonzero(as_tuple=True)
        state, lp = task.trans[state[f], v], lp[f] + task.lm.logp[prev[f], v]
        code, prev = code[f] + (v + 1) * task.base ** t, v
    return torch.cat(codes), torch.cat(probs)


@dataclass
class SMCResult:
    codes: torch.Tensor  # (R, M) token-string code per particle
    weights: torch.Tensor  # (R, M) normalised posterior weights (0 for dead/unfinished)
    log_z: torch.Tensor  # (R,) log of the SMC estimate of Σ_{s∈L} p(s)
    calls: int  # constraint calls over the whole run
    tokens: int  # tokens generated (incl. EOS)


def smc(task: Task, replicates: int, particles: int, gen: torch.Generator, *, ess_threshold: float = 0.5,
        proper_weights: bool = True, variant: str = "paper") -> SMCResult:
    """AWRS-SMC: each particle extended by AWRS, log-weight added; multinomial resampling when
    ESS < τ·M (spec §3). ``proper_weights=False, particles=1`` is LCD."""
    R, M, V = replicates, particles, task.lm.vocab
    n = R * M
    state = torch.zeros(n, dtype=torch.long)
    prev = torch.full((n,), V, dtype=torch.long)
    code = torch.zeros(n, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    logw = torch.zeros(n, dtype=torch.float64)
    log_z = torch.zeros(R, dtype=torch.float64)
    calls = tokens = 0
    for t in range(task.max_tokens):
        act = (~done & torch.isfinite(logw)).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        d = awrs_batch(task.lm.logp[prev[act]], task.valid(state[act]), gen, proper_weights=proper_weights,
                       variant=variant)
        calls += int(d.calls.sum())
        tokens += int((d.tok >= 0).sum())
        logw[act] += -d.logw if variant == "negated_weight" else d.logw  # TEST-ONLY sign flip
        logw[act[d.tok < 0]] = -math.inf  # no valid token: the particle dies (spec §7)
        eos = d.tok == V
        grow = (d.tok >= 0) & ~eos
        done[act[eos]] = True
        a, tk = act[grow], d.tok[grow]
        state[a], prev[a] = task.trans[state[a], tk], tk
        code[a] += (tk + 1) * task.base ** t
        if proper_weights and M > 1:  # resample replicates whose ESS fell below τ·M
            lw = logw.view(R, M)
            ok = torch.isfinite(lw).any(1)
            w = torch.softmax(lw.masked_fill(~ok[:, None], 0.0), 1)
            ess = 1.0 / (w ** 2).sum(1)
            rs = (ok & (ess < ess_threshold * M)).nonzero().squeeze(1)
            if rs.numel():
                idx = torch.multinomial(w[rs].float(), M, replacement=True, generator=gen)
                src = (rs[:, None] * M + idx).reshape(-1)
                dst = (rs[:, None] * M + torch.arange(M)).reshape(-1)
                log_z[rs] += torch.logsumexp(lw[rs], 1) - math.log(M)
                for arr in (state, prev, code, done):
                    arr[dst] = arr[src]
                logw[dst] = 0.0
    logw = torch.where(done, logw, torch.full_like(logw, -math.inf)).view(R, M)
    log_z = log_z + torch.logsumexp(logw, 1) - math.log(M)
    ok = torch.isfinite(log_z)
    weights = torch.where(ok[:, None], torch.softmax(logw.masked_fill(~ok[:, None], 0.0), 1), torch.zeros_like(logw))
    return SMCResult(code.view(R, M), weights, log_z, calls, tokens)


def posterior_estimate(res: SMCResult) -> tuple[torch.Tensor, torch.Tensor]:
    """Average over replicates (with a finished particle) of the normalised weighted posteriors."""
    keep = res.weights.sum(1) > 0
    codes, w = res.codes[keep].reshape(-1), res.weights[keep].reshape(-1)
    uniq, inv = torch.unique(codes, return_inverse=True)
    mass = torch.zeros(uniq.numel(), dtype=torch.float64).scatter_add_(0, inv, w)
    return uniq, mass / mass.sum().clamp(min=1e-300)


def total_variation(codes_a: torch.Tensor, p_a: torch.Tensor, codes_b: torch.Tensor, p_b: torch.Tensor) -> float:
    uniq, inv = torch.unique(torch.cat([codes_a, codes_b]), return_inverse=True)
    diff = torch.zeros(uniq.numel(), dtype=torch.float64)
    diff.scatter_add_(0, inv, torch.cat([p_a.double(), -p_b.double()]))
    return float(0.5 * diff.abs().sum())

"""Recruitment learning (spec §3 "Recruitment (block level)"): a penalised-likelihood test that adds a
semantic block only when the likelihood gain pays for the block's parameters.

A block is a domain-specialised next-token model over a vocabulary of V tokens (our formalisation:
``unigram`` with p_b = V - 1 parameters, or first-order ``bigram`` with p_b = V (V - 1)), kept as
Dirichlet-smoothed counts. The current model scores a buffered batch D by its best block (batch-level
routing). A candidate block is fitted on D; with Delta = NLL_current(D) - NLL_with_new_block(D) in nats,

    recruit  iff  Delta > (p_b / 2) ln |D|          (BIC form; |D| = scored tokens)
             iff  Delta / ln 2 > (p_b / 2) log2 |D|  (the same test as an MDL code length in bits).

A batch that does not recruit updates the counts of the block it was routed to (online MLE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .method import LOG2


def n_params(vocab: int, kind: str) -> int:
    """p_b: free parameters of one block."""
    return vocab - 1 if kind == "unigram" else vocab * (vocab - 1)


def bic_threshold(p: int, n: int) -> float:
    """(p / 2) ln n, in nats."""
    return 0.5 * p * math.log(n)


def decide(delta_nats: float, p: int, n: int, variant: str = "correct") -> bool:
    """The recruitment criterion (spec §3); the broken variants never fire / drop the complexity cost."""
    if variant == "recruit-never":  # TEETH: recruitment never fires
        return False
    if variant == "no-complexity-cost":  # TEETH: any likelihood gain recruits (no (p/2) ln|D| term)
        return delta_nats > 0.0
    return delta_nats > bic_threshold(p, n)


def decide_bits(delta_nats: float, p: int, n: int) -> bool:
    """MDL form of the same test in bits (a check that the units agree)."""
    return delta_nats / LOG2 > 0.5 * p * math.log2(n)


def counts_of(x: torch.Tensor, vocab: int, kind: str) -> torch.Tensor:
    """Sufficient statistics of a token stream x (N,) long: (V,) or (V, V) counts (float64)."""
    if kind == "unigram":
        return torch.bincount(x, minlength=vocab).double()
    return torch.bincount(x[:-1] * vocab + x[1:], minlength=vocab * vocab).double().view(vocab, vocab)


def log_probs(counts: torch.Tensor, prior: float) -> torch.Tensor:
    """Dirichlet-smoothed log-probabilities (rows normalised for a bigram block)."""
    c = counts + prior
    return (c / c.sum(-1, keepdim=True)).log()


def nll_of(logp: torch.Tensor, stats: torch.Tensor) -> float:
    """NLL (nats) of data with sufficient statistics ``stats`` under a block's log-probabilities."""
    return float(-(logp * stats).sum())


@dataclass
class Recruiter:
    """K blocks of counts; :meth:`step` applies the criterion to one buffered batch."""

    vocab: int
    kind: str
    prior: float
    variant: str = "correct"
    blocks: list[torch.Tensor] = field(default_factory=list)

    @property
    def p_block(self) -> int:
        return n_params(self.vocab, self.kind)

    def add_block(self, x: torch.Tensor) -> None:
        self.blocks.append(counts_of(x, self.vocab, self.kind))

    def step(self, x: torch.Tensor) -> dict[str, float]:
        """Score batch x (N,) long; recruit a block fitted on it iff the criterion says so."""
        stats = counts_of(x, self.vocab, self.kind)
        n = int(stats.sum())
        nlls = [nll_of(log_probs(b, self.prior), stats) for b in self.blocks]
        best = min(range(len(nlls)), key=nlls.__getitem__)
        current = nlls[best]
        cand = nll_of(log_probs(stats, self.prior), stats)        # candidate block fitted on D itself
        delta = current - min(current, cand)                      # NLL_current - NLL_with_new_block
        recruited = decide(delta, self.p_block, n, self.variant)
        if recruited:
            self.blocks.append(stats)
        else:
            self.blocks[best] = self.blocks[best] + stats
        return {"delta": delta, "threshold": bic_threshold(self.p_block, n), "recruited": float(recruited),
                "routed": float(best), "n": float(n)}


# ------------------------------------------------------------------ stand-in domains (spec §6)

def make_domains(n_domains: int, vocab: int, concentration: float, seed: int) -> torch.Tensor:
    """Bigram transition matrices (n_domains, V, V), rows ~ Dirichlet(concentration): one per domain."""
    gam = torch.from_numpy(np.random.default_rng(seed).gamma(concentration, size=(n_domains, vocab, vocab)))
    return gam / gam.sum(-1, keepdim=True)


def sample_streams(trans: torch.Tensor, domain: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """Markov chains of ``length`` tokens, one per entry of ``domain`` (n,): (n, length) long. Vectorised
    over chains; the loop runs over time only."""
    n, v = domain.shape[0], trans.shape[-1]
    out = torch.empty(n, length, dtype=torch.long)
    out[:, 0] = torch.randint(v, (n,), generator=gen)
    cum = trans.cumsum(-1)
    for t in range(1, length):
        rows = cum[domain, out[:, t - 1]]                                   # (n, V)
        u = torch.rand(n, 1, generator=gen, dtype=rows.dtype)
        out[:, t] = (u > rows).sum(-1).clamp(max=v - 1)
    return out

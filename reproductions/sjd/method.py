"""Speculative Jacobi Decoding (Teng et al., ICLR 2025, §3 / Alg. 1) and its two baselines.

The AR model is a black box ``model(seq) -> probs``: ``seq`` (B, T) long holds a start token at
column 0 (``model.bos``) and image tokens after it; ``probs[:, t]`` (B, T, V) is the *processed*
next-token distribution p(x_{t+1} | seq[:, :t+1]) (top-k / temperature / CFG applied once, spec §7).
Rows are independent chains: each keeps its own accepted length and its own window, so a batch of
B rows is B batch-size-1 decodes run side by side (spec §7: no shared acceptance length).

``model(seq, start)`` may return only the rows ``start .. T-1`` (the samplers never read earlier
ones), which lets a model keep a KV cache of the accepted prefix and forward only the new tokens
(:class:`~reproductions.sjd.models.HFProbModel` at full scale). The small models compute every
row and slice. The number of passes (NFE), the paper's step-compression denominator, is the same
with or without a cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol, get_args

import torch

Variant = Literal["paper", "resample_from_p", "onehot_residual", "random_reset"]
VARIANTS = get_args(Variant)
INITS = ("random", "repeat_horizon")


class ProbModel(Protocol):
    vocab: int  # output vocabulary V (image tokens)
    bos: int  # start token id (input only)

    def __call__(self, seq: torch.Tensor, start: int = 0) -> torch.Tensor: ...


@dataclass
class Decoded:
    """Sampled tokens (B, N) and forward passes per row (B,)."""

    tokens: torch.Tensor
    nfe: torch.Tensor

    @property
    def step_compression(self) -> float:
        """Tokens generated / forward passes (spec §3 metrics), pooled over rows."""
        return float(self.tokens.numel() / self.nfe.sum().clamp(min=1))


def _multinomial(p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One draw per row of ``p`` (..., V) (rows need not be normalised)."""
    flat = p.reshape(-1, p.shape[-1])
    return torch.multinomial(flat, 1, generator=gen).reshape(p.shape[:-1])


def ar_sample(model: ProbModel, n_tokens: int, batch: int, gen: torch.Generator) -> Decoded:
    """Ancestral (token-by-token) sampling: one forward pass per token."""
    seq = torch.full((batch, 1), model.bos, dtype=torch.long)
    for _ in range(n_tokens):
        p = model(seq, seq.shape[1] - 1)[:, -1]
        seq = torch.cat([seq, _multinomial(p, gen)[:, None]], dim=1)
    return Decoded(seq[:, 1:], torch.full((batch,), n_tokens, dtype=torch.long))


def _init_tokens(model: ProbModel, known: torch.Tensor, n_known: torch.Tensor, pos: torch.Tensor, init: str,
                 grid_w: int, gen: torch.Generator) -> torch.Tensor:
    """Fresh drafts for absolute token positions ``pos`` (b, L) (0-based image index), q = one-hot.

    ``known`` (b, >= 1 + max n_known) holds the tokens known so far (column i + 1 = token i): the
    accepted ones, then the drafts kept in the window; ``n_known`` (b,) counts them.
    ``random``: uniform over the vocabulary (repo scheme 'random'). ``repeat_horizon`` (repo
    ``get_multi_token_for_preparation``, scheme 'repeat_horizon'): a draft that is not in the first
    column of its image row copies its LEFT neighbour (horizon = the same row); when the left neighbour
    is not known yet, the index is clamped to the last known token, as the repo's clamp does. A draft in
    the first column, or when nothing is known, is uniform.
    """
    rand = torch.randint(model.vocab, pos.shape, generator=gen)
    if init == "random":
        return rand
    left = torch.minimum(pos - 1, n_known[:, None] - 1)  # image index of the copied token
    ok = (pos % grid_w != 0) & (left >= 0)
    col = (left + 1).clamp(min=0, max=known.shape[1] - 1)
    return torch.where(ok, known.gather(1, col), rand)


def sjd_sample(model: ProbModel, n_tokens: int, window: int, batch: int, gen: torch.Generator, *,
               variant: str = "paper", init: str = "random", grid_w: int = 0,
               jacobi: bool = False) -> Decoded:
    """Speculative Jacobi decoding of ``batch`` independent chains of ``n_tokens`` tokens.

    ``jacobi=True`` gives the baseline Jacobi decoding under random sampling: a draft is accepted
    when it equals the token freshly sampled at its position, and the first mismatching position
    takes the fresh sample (deterministic convergence check, spec §4).
    ``variant`` (test-only mutations, spec §6): ``resample_from_p`` draws the correction from P
    instead of the residual max(P - q, 0); ``onehot_residual`` forgets the stored q and uses
    one-hot(y) in the residual (pitfall §7); ``random_reset`` throws the Jacobi-updated window
    away after every pass.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; use one of {INITS}")
    V, L, N, B = model.vocab, window, n_tokens, batch
    ar_L = torch.arange(L)
    buf = torch.zeros(B, N + L + 2, dtype=torch.long)  # column 0 = start token, column i = token i-1
    buf[:, 0] = model.bos
    acc = torch.zeros(B, dtype=torch.long)  # accepted tokens per row
    nfe = torch.zeros(B, dtype=torch.long)
    win = _init_tokens(model, buf, acc, ar_L.expand(B, L), init, grid_w, gen)  # (B, L) drafts
    q = torch.nn.functional.one_hot(win, V).float()  # (B, L, V): distribution each draft came from
    while True:
        rows = torch.nonzero(acc < N).squeeze(1)
        if rows.numel() == 0:
            break
        a, y, qr, b = acc[rows], win[rows], q[rows], rows.numel()
        width = int(a.max()) + L + 1
        seq = buf[rows, :width].clone()
        seq.scatter_(1, a[:, None] + 1 + ar_L, y)  # one pass over [x_{1:a}, y_1..y_L] (Alg. 1)
        lo = int(a.min())  # rows before the earliest window are never read (a KV cache skips them)
        probs = model(seq, lo)
        P = probs.gather(1, (a[:, None] - lo + torch.arange(L + 1))[:, :, None].expand(b, L + 1, V))  # (b, L+1, V)
        nfe[rows] += 1
        if q.dtype != P.dtype:
            q, qr = q.to(P.dtype), qr.to(P.dtype)
        n_valid = (N - a).clamp(max=L)  # window positions inside the image
        fresh = _multinomial(P, gen)  # Jacobi update: a token sampled from every P row (b, L+1)
        if jacobi:
            ok = fresh[:, :L] == y
        else:  # speculative-sampling acceptance: u < min(1, P(y)/q(y))  (Leviathan et al.; §3)
            u = torch.rand(b, L, generator=gen)
            py = P[:, :L].gather(2, y[:, :, None]).squeeze(2)
            qy = qr.gather(2, y[:, :, None]).squeeze(2)
            ok = u * qy < py
        ok &= ar_L < n_valid[:, None]
        m = ok.long().cumprod(1).sum(1)  # leading accepted drafts
        idx = torch.arange(b)
        rejected = m < n_valid
        if jacobi:
            extra = fresh[idx, m]  # the fresh sample at the first mismatch (or the bonus row L)
        else:
            P_m, q_m = P[idx, m], qr[idx, m.clamp(max=L - 1)]
            if variant == "resample_from_p":
                resid = P_m
            elif variant == "onehot_residual":
                resid = (P_m - torch.nn.functional.one_hot(y[idx, m.clamp(max=L - 1)], V).to(P.dtype)).clamp(min=0)
            else:
                resid = (P_m - q_m).clamp(min=0)  # residual max(P - q, 0), normalised by multinomial
            resid = torch.where(resid.sum(1, keepdim=True) > 0, resid, P_m)
            dist = torch.where(rejected[:, None], resid, P[:, L])  # bonus token ~ P[L+1] if all accepted
            extra = _multinomial(dist, gen)
        out = torch.cat([y, torch.zeros(b, 1, dtype=torch.long)], 1)
        out[idx, m] = extra
        cols = a[:, None] + 1 + torch.arange(L + 1)
        buf[rows[:, None], cols] = out  # tokens beyond the accepted count are overwritten later
        acc[rows] = (a + m + 1).clamp(max=N)
        # New window: tokens sampled in this pass after the stopping point (q = their P row),
        # topped up with fresh initial drafts (q one-hot).
        src = m[:, None] + 1 + ar_L  # index into fresh/P
        keep = (src <= L) & (variant != "random_reset")
        srcc = src.clamp(max=L)
        kept = fresh.gather(1, srcc)
        a_new = acc[rows]
        if init == "random":
            init_tok = _init_tokens(model, buf[rows], a_new, a_new[:, None] + ar_L, init, grid_w, gen)
        else:  # the known tokens: accepted ones, then the kept drafts (repo: [input_ids, additional_tokens])
            known = torch.cat([buf[rows], torch.zeros(b, L, dtype=torch.long)], 1)
            known.scatter_(1, (a_new[:, None] + 1 + ar_L).clamp(max=known.shape[1] - 1),
                           torch.where(keep, kept, known.gather(1, (a_new[:, None] + 1 + ar_L)
                                                                 .clamp(max=known.shape[1] - 1))))
            init_tok = _init_tokens(model, known, a_new + keep.long().sum(1), a_new[:, None] + ar_L, init,
                                    grid_w, gen)
        new_y = torch.where(keep, kept, init_tok)
        new_q = torch.where(keep[:, :, None], P.gather(1, srcc[:, :, None].expand(b, L, V)),
                            torch.nn.functional.one_hot(init_tok, V).to(P.dtype))
        win[rows], q[rows] = new_y, new_q
    return Decoded(buf[:, 1:N + 1], nfe)


def sequence_logprob(model: ProbModel, tokens: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Exact log-probability of each row of ``tokens`` (S, N) under ``model`` (teacher forcing)."""
    out = []
    for s in range(0, tokens.shape[0], chunk):
        t = tokens[s:s + chunk]
        seq = torch.cat([torch.full((t.shape[0], 1), model.bos, dtype=torch.long), t], 1)
        p = model(seq[:, :-1])
        out.append(p.gather(2, t[:, :, None]).squeeze(2).clamp(min=1e-300).log().sum(1))
    return torch.cat(out)


def all_sequences(vocab: int, n: int) -> torch.Tensor:
    """Every sequence in [vocab]^n in base-``vocab`` order (row r encodes r)."""
    r = torch.arange(vocab ** n)
    digits = vocab ** torch.arange(n - 1, -1, -1)
    return (r[:, None] // digits) % vocab


def encode(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """Base-``vocab`` integer code of each row (matches :func:`all_sequences`)."""
    n = tokens.shape[1]
    return (tokens * vocab ** torch.arange(n - 1, -1, -1)).sum(1)


Sampler = Callable[[ProbModel, int, int, torch.Generator], Decoded]

"""rich_lazy_connectivity method: the ReLU RNN of Liu et al. (ICLR 2024) §3, the norm-matched rank-r initial
connectivity, the procedural 2AF task (spec §6) and the laziness measures (weight change, representation and
tangent-kernel alignment, sign similarity, effective rank)."""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, jacrev

Variant = Literal["correct", "rank-ignored", "untrained"]
NtkSteps = Literal["all", "decision"]
COHERENCES = (0.0, 0.064, 0.128, 0.256, 0.512)


def gaussian_w0(n: int, gain: float, gen: torch.Generator) -> torch.Tensor:
    """W0 = gain * G / sqrt(N), G ~ N(0,1)^{NxN} (paper §3, gain 1.25)."""
    return gain * torch.randn(n, n, generator=gen, dtype=torch.float64) / math.sqrt(n)


def low_rank_init(w0: torch.Tensor, rank: int) -> torch.Tensor:
    """Keep the top-`rank` singular triplets of W0, then rescale to ||W0||_F (norm matching, paper §3)."""
    u, s, vh = torch.linalg.svd(w0)
    wr = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return wr * (w0.norm() / wr.norm())


def effective_rank(w: torch.Tensor) -> float:
    """exp of the entropy of the normalised singular values."""
    s = torch.linalg.svdvals(w.double())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def numerical_rank(w: torch.Tensor, rtol: float = 1e-8) -> int:
    s = torch.linalg.svdvals(w.double())
    return int((s > rtol * s[0]).sum())


class RateRNN(nn.Module):
    """h_t = ReLU((1-a) h_{t-1} + a (W_in x_t + W_hh h_{t-1})), y_t = W_out h_t; no biases, h_0 = 0 (paper §3)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, w_hh: torch.Tensor, alpha: float = 1.0) -> None:
        super().__init__()
        self.w_in = nn.Linear(n_in, n_hidden, bias=False)       # PyTorch default init
        self.w_hh = nn.Parameter(w_hh.clone().float())
        self.w_out = nn.Linear(n_hidden, n_out, bias=False)
        self.alpha = alpha

    def forward(self, x: torch.Tensor, taps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (T, B, n_in) -> logits (T, B, n_out), hidden (T, B, N). ``taps`` (T, B, N), zeros, is added to the
        recurrent product h_{t-1} W_hh^T; only `tangent_kernel` uses it (d out/d taps_t = the signal that
        multiplies h_{t-1} in d out/d W_hh)."""
        h = x.new_zeros(x.shape[1], self.w_hh.shape[0])
        drive = self.w_in(x)
        hs = []
        for t in range(x.shape[0]):  # loop over time only (T = 8)
            rec = h @ self.w_hh.T if taps is None else h @ self.w_hh.T + taps[t]
            h = F.relu((1 - self.alpha) * h + self.alpha * (drive[t] + rec))
            hs.append(h)
        hid = torch.stack(hs)
        return self.w_out(hid), hid


def make_2af(batch: int, gen: torch.Generator, seq_len: int = 8, noise: float = 0.1 * math.sqrt(10),
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural perceptual decision (spec §6): inputs [fixation, s1, s2]; fixation = 1 and
    s_{1,2} = (1 +- coh*sign)/2 + noise during steps 1..T-1, all zero at the decision step;
    target 0 (fixate) for steps 1..T-1 and choice+1 at step T."""
    coh = torch.tensor(COHERENCES)[torch.randint(len(COHERENCES), (batch,), generator=gen)]
    choice = torch.randint(2, (batch,), generator=gen)
    sign = 1.0 - 2.0 * choice.float()                        # choice 0 -> s1 larger
    x = torch.zeros(seq_len, batch, 3)
    stim = seq_len - 1
    x[:stim, :, 0] = 1.0
    x[:stim, :, 1] = (1 + coh * sign) / 2
    x[:stim, :, 2] = (1 - coh * sign) / 2
    x[:stim, :, 1:] += noise * torch.randn(stim, batch, 2, generator=gen)
    y = torch.zeros(seq_len, batch, dtype=torch.long)
    y[-1] = choice + 1
    return x.to(device), y.to(device)


def seq_loss(model: RateRNN, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on every time step (paper §3, neurogym tasks)."""
    x, y = batch
    logits, _ = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def alignment(k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """<K0, K1>_F / (||K0||_F ||K1||_F), reduced in float64 (a float32 sum over the 768^2 entries of the
    all-steps kernel drifts ~2e-6 from 1 on align(K, K))."""
    k0, k1 = k0.double(), k1.double()
    return (k0 * k1).sum() / (k0.norm() * k1.norm()).clamp_min(1e-30)


@torch.no_grad()
def decision_activity(model: RateRNN, x: torch.Tensor) -> torch.Tensor:
    """A: hidden activity at the final (decision) step, (trials, N)."""
    return model(x)[1][-1]


def tangent_kernel(model: RateRNN, x: torch.Tensor, steps: NtkSteps = "all") -> torch.Tensor:
    """K = J J^T with J = d(outputs)/d W_hh, one row per (time step, trial, output), rows ordered (t, b, k)
    (spec §3; official main.py "Get K0" / "Get Kf": every t in range(seq_len) x batch_size trials x outputs,
    autograd.grad w.r.t. h2h.weight). ``steps="decision"`` keeps only the final step's rows (spec §7's CPU
    shortcut).

    Exact and vectorised, without forming J (rows x N^2): W_hh enters step s only through h_{s-1} W_hh^T, so
    J_i = sum_s g_i[s] h_{b_i}[s-1]^T with g_i[s] = d out_i / d taps_s, and
    <J_i, J_j>_F = sum_{s,u} (g_i[s] . g_j[u]) (h_{b_i}[s-1] . h_{b_j}[u-1]). Trials are independent, so one
    jacrev of the batch-summed outputs (T' x n_out rows) gives every trial's g; the loop is over time pairs."""
    fixed = {k: v.detach() for k, v in model.named_parameters()}   # no gradient to the weights, only to the taps
    n_t, n_b, n = x.shape[0], x.shape[1], model.w_hh.shape[0]
    with torch.no_grad():
        hid = functional_call(model, fixed, (x,))[1]
    h_prev = torch.cat([hid.new_zeros(1, n_b, n), hid[:-1]])          # h_{s-1}, (S, B, N), h_0 = 0

    def out(taps: torch.Tensor) -> torch.Tensor:
        y = functional_call(model, fixed, (x, taps))[0]               # (T, B, n_out)
        return (y if steps == "all" else y[-1:]).sum(1)               # (T', n_out), summed over independent trials

    g = jacrev(out)(x.new_zeros(n_t, n_b, n))                          # (T', n_out, S, B, N)
    n_rows_t, n_out = g.shape[:2]
    g = g.permute(0, 3, 1, 2, 4).reshape(n_rows_t * n_b * n_out, n_t, n)  # rows (t, b, k) -> (R, S, N)
    rows_b = torch.arange(n_b, device=x.device).repeat_interleave(n_out).repeat(n_rows_t)  # trial of each row
    hh = torch.einsum("sbn,ucn->sbuc", h_prev, h_prev)                 # (S, B, S, B) trial-activity Grams
    k = x.new_zeros(g.shape[0], g.shape[0])
    for s in range(1, n_t):          # h_0 = 0: step 1 does not depend on W_hh
        for u in range(1, n_t):
            k += (g[:, s] @ g[:, u].T) * hh[s][rows_b][:, u][:, rows_b]
    return k

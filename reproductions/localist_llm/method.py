"""The localist attention of Diederich (2025), spec §3: the locality dial, the group-sparsity penalty,
the entropy / pointer-fidelity metrics, and a small transformer whose every attention layer uses them.

Attention (spec §3, "Attention"):
    alpha_ij = softmax_j( q_i.k_j / sqrt(d) / tau(lambda)  -  lambda * M * 1[j not in B_g(i)] ),
    tau(lambda) = tau0 * (1 - 0.5 * lambda).
The bias term is the inference-time dial: the same weights run at any lambda without retraining.
Penalty (spec §3, "Group-sparsity penalty"):
    R = sum_i sum_{k != g(i)} sqrt(|B_k|) * || alpha_{i, B_k} ||_2      (smoothed: sqrt(x^2 + eps), spec §7)
    loss = task_NLL + lambda * gamma * R.
Block membership is given per position (``blk`` (B, T): the block each key position belongs to) and the
target block of each query position (``target`` (B, T): g(i)); ``outside = target[:, :, None] != blk[:, None, :]``.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError
from suite.models.blocks import FeedForward

# TEETH ONLY: deliberately broken variants (README "Broken variants")
Variant = Literal["correct", "dial-ignored", "dial-sign-flipped", "penalty-sign-flipped", "recruit-never",
                  "no-complexity-cost"]
VARIANTS: tuple[str, ...] = ("correct", "dial-ignored", "dial-sign-flipped", "penalty-sign-flipped",
                             "recruit-never", "no-complexity-cost")
LOG2 = math.log(2.0)


def temperature(lam: float, tau0: float) -> float:
    """tau(lambda) = tau0 (1 - 0.5 lambda) (spec §3): the dial also sharpens the softmax."""
    return tau0 * (1.0 - 0.5 * lam)


def outside_mask(blk: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, T, T) bool: True where key j is not in the target block of query i, 1[j not in B_g(i)]."""
    return target[:, :, None] != blk[:, None, :]


def locality_logits(scores: torch.Tensor, outside: torch.Tensor, lam: float, margin: float, tau0: float,
                    variant: str = "correct") -> torch.Tensor:
    """Dialled logits from raw scores q.k/sqrt(d) (..., T, T); ``outside`` broadcasts to them (spec §3).

    ``margin = inf`` is the hard block mask (baseline "lambda=1 with M=inf", spec §4); at lambda = 0 it is
    no mask at all (0 * inf taken as 0: the dial at 0 is standard attention)."""
    if variant == "dial-ignored":  # TEETH: the dial does nothing, at training and at inference
        lam = 0.0
    logits = scores / temperature(lam, tau0)
    if lam == 0.0:
        return logits
    if math.isinf(margin):
        return logits.masked_fill(outside, float("-inf"))
    sign = 1.0 if variant == "dial-sign-flipped" else -1.0  # TEETH: the dial pushes off the target block
    return logits + sign * lam * margin * outside.to(logits.dtype)


def localist_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, outside: torch.Tensor | None,
                       lam: float, margin: float, tau0: float, causal: bool = True,
                       variant: str = "correct") -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head attention with the locality dial. q, k, v (B, H, T, dh); ``outside`` (B, T, T) or None.
    Returns (output (B, H, T, dh), alpha (B, H, T, T))."""
    t = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if outside is not None:
        scores = locality_logits(scores, outside[:, None], lam, margin, tau0, variant)
    elif variant != "dial-ignored":
        scores = scores / temperature(lam, tau0)
    else:
        scores = scores / tau0
    if causal:
        future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    alpha = torch.softmax(scores, dim=-1)
    return alpha @ v, alpha


def group_norms_sq(alpha: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """||alpha_{i, B_k}||_2^2 for every query i and block k: (B, H, T, K). ``member`` (B, T, K) one-hot."""
    return (alpha * alpha) @ member[:, None].to(alpha.dtype)


def group_penalty(alpha: torch.Tensor, blk: torch.Tensor, target: torch.Tensor, n_blocks: int,
                  eps: float = 1e-8) -> torch.Tensor:
    """R_i = sum_{k != g(i)} sqrt(|B_k|) sqrt(||alpha_{i,B_k}||^2 + eps) (spec §3; smoothed, spec §7).
    alpha (B, H, T, T); blk, target (B, T) long in [0, n_blocks). Returns R per (B, H, T)."""
    member = F.one_hot(blk, n_blocks).to(alpha.dtype)               # (B, T, K)
    size = member.sum(1)                                             # |B_k| (B, K)
    off = 1.0 - F.one_hot(target, n_blocks).to(alpha.dtype)          # k != g(i)   (B, T, K)
    norms = (group_norms_sq(alpha, member) + eps).sqrt()             # (B, H, T, K)
    return (off[:, None] * size.sqrt()[:, None, None, :] * norms).sum(-1)


def group_penalty_grad(alpha: torch.Tensor, blk: torch.Tensor, target: torch.Tensor, n_blocks: int,
                       eps: float = 1e-8) -> torch.Tensor:
    """Closed-form dR/dalpha_ij = sqrt(|B_k|) alpha_ij / sqrt(||alpha_{i,B_k}||^2 + eps) for j in B_k,
    k != g(i), and 0 for j in B_g(i) (the check against autograd)."""
    member = F.one_hot(blk, n_blocks).to(alpha.dtype)
    size = member.sum(1)
    norms = (group_norms_sq(alpha, member) + eps).sqrt()             # (B, H, T, K)
    per_key_norm = norms.gather(-1, blk[:, None, None, :].expand(*alpha.shape))       # norm of j's block
    per_key_size = size.gather(1, blk)[:, None, None, :]                                 # |B_blk(j)|
    inside = ~outside_mask(blk, target)[:, None]
    return torch.where(inside, torch.zeros_like(alpha), per_key_size.sqrt() * alpha / per_key_norm)


# ------------------------------------------------------------------ metrics (spec §3 "Metrics")

def entropy_bits(alpha: torch.Tensor) -> torch.Tensor:
    """H_i = -sum_j alpha_ij log2 alpha_ij (0 log 0 = 0), over the last dim."""
    return -(torch.special.xlogy(alpha, alpha)).sum(-1) / LOG2


def fidelity(alpha: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """F_i = sum_{j in B_g(i)} alpha_ij; ``inside`` broadcasts to alpha."""
    return (alpha * inside.to(alpha.dtype)).sum(-1)


def hit_rate(alpha: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """1[argmax_j alpha_ij in B_g(i)] (float)."""
    arg = alpha.argmax(-1, keepdim=True)
    return inside.expand_as(alpha).gather(-1, arg).squeeze(-1).float()


def offblock_bound(scores: torch.Tensor, outside: torch.Tensor, lam: float, margin: float, tau0: float
                   ) -> torch.Tensor:
    """Upper bound on the off-block mass 1 - F_i under the dial (spec §2 C2: exponentially small in the
    margin): 1 - F_i <= (n_off / n_in) exp(-(lam M - (max_off s - min_in s))), s = scores / tau(lam)."""
    s = scores / temperature(lam, tau0)
    neg, pos = torch.tensor(float("-inf")), torch.tensor(float("inf"))
    max_off = torch.where(outside, s, neg).amax(-1)
    min_in = torch.where(~outside, s, pos).amin(-1)
    n_off = outside.sum(-1).to(s.dtype)
    n_in = (~outside).sum(-1).to(s.dtype)
    return (n_off / n_in) * torch.exp(max_off - min_in - lam * margin)


# ------------------------------------------------------------------ the model

class LocalistBlock(nn.Module):
    """Pre-norm block whose attention runs through :func:`localist_attention`."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} is not divisible by heads {heads}; change dim or heads")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio)) if mlp_ratio > 0 else None

    def forward(self, x: torch.Tensor, outside: torch.Tensor | None, lam: float, margin: float, tau0: float,
                variant: str) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y, alpha = localist_attention(q, k, v, outside, lam, margin, tau0, True, variant)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x, alpha


class LocalistLM(nn.Module):
    """Causal transformer with localist attention in every layer.

    ``n_anchors > 0``: token ids 0..n_anchors-1 are the domain anchors, embedded by fixed nearly
    orthogonal codes (rows of a random orthogonal matrix scaled to norm sqrt(dim); spec §3
    "information-theoretic anchors"), not trained."""

    def __init__(self, vocab: int, max_len: int, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0,
                 n_anchors: int = 0, anchor_seed: int = 0) -> None:
        super().__init__()
        self.dim, self.n_anchors, self.max_len = dim, n_anchors, max_len
        self.tok_emb = nn.Embedding(vocab, dim)
        self.pos_emb = nn.Embedding(max_len, dim)
        nn.init.normal_(self.tok_emb.weight, std=0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.5)
        if n_anchors:
            if n_anchors > dim:
                raise ConfigError(f"{n_anchors} anchors need dim >= {n_anchors} for orthogonal codes")
            g = torch.Generator().manual_seed(anchor_seed)
            qmat, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
            self.register_buffer("anchor_codes", qmat[:n_anchors] * math.sqrt(dim) * 0.5)
        self.blocks = nn.ModuleList(LocalistBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.tok_emb(tokens)
        if self.n_anchors:
            is_anchor = tokens < self.n_anchors
            codes = self.anchor_codes[tokens.clamp(max=self.n_anchors - 1)]
            e = torch.where(is_anchor[..., None], codes, e)
        return e + self.pos_emb(torch.arange(tokens.shape[1], device=tokens.device))

    def forward(self, tokens: torch.Tensor, blk: torch.Tensor | None, target: torch.Tensor | None, lam: float,
                margin: float, tau0: float, variant: str = "correct", last_only: bool = False
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, T, V) (or (B, V) with ``last_only``) and the attention maps of every layer."""
        if tokens.shape[1] > self.max_len:
            raise ConfigError(f"sequence length {tokens.shape[1]} exceeds max_len {self.max_len}")
        outside = outside_mask(blk, target) if blk is not None else None
        h = self.embed(tokens)
        alphas = []
        for layer in self.blocks:
            h, a = layer(h, outside, lam, margin, tau0, variant)
            alphas.append(a)
        h = self.norm(h[:, -1] if last_only else h)
        return self.head(h), alphas


def localist_loss(nll: torch.Tensor, alphas: list[torch.Tensor], blk: torch.Tensor, target: torch.Tensor,
                  n_blocks: int, lam: float, gamma: float, eps: float, variant: str = "correct"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """loss = task_NLL + lambda gamma R (spec §3); R averaged over layers, heads and query positions.
    Returns (loss, R)."""
    if gamma == 0.0 or lam == 0.0:
        return nll, nll.new_zeros(())
    r = torch.stack([group_penalty(a, blk, target, n_blocks, eps).mean() for a in alphas]).mean()
    sign = -1.0 if variant == "penalty-sign-flipped" else 1.0  # TEETH: the penalty rewards off-block mass
    return nll + sign * lam * gamma * r, r


@torch.no_grad()
def attention_stats(alphas: list[torch.Tensor], blk: torch.Tensor, target: torch.Tensor,
                    query_pos: int | None = None) -> dict[str, float]:
    """Mean entropy (bits), fidelity and hit rate over layers, heads and positions; with ``query_pos``
    also at that position of the last layer (the pointer read-out)."""
    inside = (~outside_mask(blk, target))[:, None]
    out: dict[str, float] = {}
    a = torch.stack(alphas)                                           # (L, B, H, T, T)
    out["entropy"] = float(entropy_bits(a).mean())
    out["fidelity"] = float(fidelity(a, inside[None]).mean())
    out["hit"] = float(hit_rate(a, inside[None].expand_as(a)).mean())
    if query_pos is not None:
        last = alphas[-1][:, :, query_pos]                            # (B, H, T)
        ins = inside[:, :, query_pos]                                 # (B, 1, T)
        out["query_entropy"] = float(entropy_bits(last).mean())
        out["query_fidelity"] = float(fidelity(last, ins).mean())
        out["query_hit"] = float(hit_rate(last, ins.expand_as(last)).mean())
    return out

"""Transformer building blocks shared by the ViT and the LM: multi-head attention, feed-forward, a
pre-norm block (Vaswani et al. 2017; pre-norm as in Xiong et al. 2020). The FFN is its own module
(``Block.mlp``) so that papers can swap it (e.g. for a mixture of experts)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError


class Attention(nn.Module):
    """Multi-head self-attention. ``causal`` masks future keys; ``key_mask`` (B, T) bool marks real
    (True) vs padding (False) keys."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"Attention: dim {dim} is not divisible by heads {heads}; change dim or heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, causal: bool = False, key_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """``attn_mask`` (bool, broadcastable to (B, heads, T, T), True = may attend) replaces the
        mask built from ``causal``/``key_mask`` (prefix-LM and other custom patterns). ``rope``:
        (cos, sin) from :func:`rotary_tables`, applied to queries and keys."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        mask = None
        if attn_mask is not None:
            mask, causal = attn_mask, False
        elif key_mask is not None:
            eye = torch.eye(t, dtype=torch.bool, device=x.device)
            mask = key_mask[:, None, None, :].to(torch.bool)
            if causal:
                mask = mask & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
                causal = False
            mask = mask | eye  # a padding query attends to itself: no all-masked row, no NaN
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float = 10000.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding (Su et al. 2021, eq. 34): cos/sin of ``positions`` (T,) or (B, T)
    times the frequencies base^(-2i/head_dim), shaped to broadcast over (B, heads, T, head_dim)."""
    if head_dim % 2:
        raise ConfigError(f"rotary embeddings need an even head dim, got {head_dim}; change dim or heads")
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    ang = positions.float()[..., None] * inv  # (..., T, head_dim/2)
    ang = torch.cat([ang, ang], -1)
    ang = ang[None, None] if ang.dim() == 2 else ang[:, None]
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x_i, x_{i+d/2}) of ``x`` (B, heads, T, d) by the tabled angles."""
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos.to(x.dtype) + rot * sin.to(x.dtype)


class FeedForward(nn.Module):
    """``fc2(act(fc1(x)))`` with hidden width ``hidden``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, act: str = "gelu") -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.act = nn.GELU() if act == "gelu" else nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp: nn.Module = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: bool = False, key_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), causal, key_mask, attn_mask, rope))
        return x + self.mlp(self.norm2(x))

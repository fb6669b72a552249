"""A tiny Vision Transformer (Dosovitskiy et al. 2021): patch embedding, [CLS] token, learned
positions, pre-norm blocks (:mod:`suite.models.blocks`), final LayerNorm and a linear head.

Options (defaults keep the original model): ``class_token=False`` drops the [CLS] token from the
sequence (mean pooling over the patch tokens, as DeiT-style nets with ``global_pool='avg'``);
``norm_after_pool`` applies the final LayerNorm to the pooled vector instead of to every token
(timm's ``fc_norm``); ``drop_path`` is stochastic depth (Huang et al. 2016) with DeiT/timm's rule:
block i of L drops each residual branch with probability ``drop_path * i / (L - 1)``.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.errors import ConfigError
from suite.models.blocks import Block


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth of a residual branch ``x`` (B, ...): per sample, zero with probability ``p``,
    else scale by 1 / (1 - p) (timm's ``DropPath``); the identity in eval or at p = 0."""
    if p <= 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep) if keep > 0.0 else x * mask


class ViT(nn.Module):
    """``image_size`` must be divisible by ``patch_size``; ``pool`` is "cls" or "mean" (over patch tokens).

    ``blocks`` is a ModuleList of :class:`Block` (each with ``.attn`` and ``.mlp``);
    ``features(x)`` returns the pooled, normalised representation fed to ``head``.
    ``cls`` is None without a class token; ``dpr`` lists the drop-path rate of each block.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 4, in_channels: int = 3, num_classes: int = 10,
                 dim: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 pool: str = "cls", class_token: bool = True, norm_after_pool: bool = False,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"ViT: image_size {image_size} is not divisible by patch_size {patch_size}")
        if pool not in ("cls", "mean"):
            raise ConfigError(f"ViT: pool must be 'cls' or 'mean', got {pool!r}")
        if pool == "cls" and not class_token:
            raise ConfigError("ViT: pool='cls' needs class_token=True; use pool='mean' without a class token")
        if not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"ViT: drop_path must be in [0, 1), got {drop_path}")
        self.num_patches = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos = nn.Parameter(torch.randn(1, self.num_patches + int(class_token), dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.pool, self.dim = pool, dim
        self.norm_after_pool = norm_after_pool
        # DeiT / timm: dpr = linspace(0, drop_path_rate, depth), one rate per block position (plain Python: no
        # tensor op here, so that a ViT can be built under a meta-device context)
        self.dpr = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]

    def _block(self, blk: nn.Module, h: torch.Tensor, p: float) -> torch.Tensor:
        """``blk(h)`` with both residual branches under drop path ``p`` (timm's Block: drop_path1/2)."""
        if p <= 0.0 or not self.training:
            return blk(h)
        if type(blk).forward is not Block.forward:
            raise ConfigError(f"ViT: drop_path needs suite.models.blocks.Block blocks, got {type(blk).__name__}")
        h = h + drop_path(blk.drop(blk.attn(blk.norm1(h))), p, True)
        return h + drop_path(blk.mlp(blk.norm2(h)), p, True)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Token sequence after the last block (before the final norm): (B, 1 + patches, dim), or
        (B, patches, dim) without a class token."""
        p = self.patch(x).flatten(2).transpose(1, 2)
        if self.cls is not None:
            p = torch.cat([self.cls.expand(p.shape[0], -1, -1), p], 1)
        h = self.drop(p + self.pos)
        if not self.training or not any(self.dpr):   # no drop path: the plain blocks
            for blk in self.blocks:
                h = blk(h)
            return h
        if len(self.dpr) != len(self.blocks):
            raise ConfigError(f"ViT: {len(self.blocks)} blocks but {len(self.dpr)} drop-path rates (blocks replaced?)")
        for blk, rate in zip(self.blocks, self.dpr):
            h = self._block(blk, h, rate)
        return h

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tokens(x)
        if self.norm_after_pool:   # pool, then the final norm (timm fc_norm)
            return self.norm(h[:, 0] if self.pool == "cls" else h[:, int(self.cls is not None):].mean(1))
        h = self.norm(h)
        return h[:, 0] if self.pool == "cls" else h[:, int(self.cls is not None):].mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

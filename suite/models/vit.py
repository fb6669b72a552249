"""A tiny Vision Transformer (Dosovitskiy et al. 2021): patch embedding, [CLS] token, learned
positions, pre-norm blocks (:mod:`suite.models.blocks`), final LayerNorm and a linear head."""
from __future__ import annotations

import torch
from torch import nn

from suite.errors import ConfigError
from suite.models.blocks import Block


class ViT(nn.Module):
    """``image_size`` must be divisible by ``patch_size``; ``pool`` is "cls" or "mean" (over patch tokens).

    ``blocks`` is a ModuleList of :class:`Block` (each with ``.attn`` and ``.mlp``);
    ``features(x)`` returns the pooled, normalised representation fed to ``head``.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 4, in_channels: int = 3, num_classes: int = 10,
                 dim: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 pool: str = "cls") -> None:
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"ViT: image_size {image_size} is not divisible by patch_size {patch_size}")
        if pool not in ("cls", "mean"):
            raise ConfigError(f"ViT: pool must be 'cls' or 'mean', got {pool!r}")
        self.num_patches = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, self.num_patches + 1, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.pool, self.dim = pool, dim

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Token sequence after the last block (before the final norm): (B, 1 + patches, dim)."""
        p = self.patch(x).flatten(2).transpose(1, 2)
        h = self.drop(torch.cat([self.cls.expand(p.shape[0], -1, -1), p], 1) + self.pos)
        for blk in self.blocks:
            h = blk(h)
        return h

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.tokens(x))
        return h[:, 0] if self.pool == "cls" else h[:, 1:].mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

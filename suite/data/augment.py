"""Batch image augmentation, vectorised over the batch (no per-sample Python)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_crop(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation of a batch (B, C, H, W): random horizontal flip, then a random
    H×W crop of the zero-padded image, drawn per image from torch's global RNG."""
    b, _, h, w = x.shape
    flip = torch.rand(b, device=x.device) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (oy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (ox.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return xp[bi, ci, rows, cols]

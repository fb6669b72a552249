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


def shift_flip(x: torch.Tensor, max_shift: float, *, flip: bool = True, whole_pixels: bool = True,
               mode: str = "nearest", padding_mode: str = "reflection",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translation (and horizontal flip) of a batch (N, C, H, W), one ``grid_sample`` for all.

    Per image: a horizontal flip with probability 1/2 when ``flip``, then a shift along each axis by
    a whole number of pixels in [-max_shift, max_shift] (``whole_pixels``) or by a uniform real amount
    in that range. ``mode`` and ``padding_mode`` are ``grid_sample``'s (what fills the uncovered
    border). Draws come from ``generator``, else torch's global RNG: the flips first (only when
    ``flip``), then the (N, 2) shifts as (x, y).
    """
    n, _, h, w = x.shape
    dev = x.device
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = torch.where(torch.rand(n, device=dev, generator=generator) < 0.5, -1.0, 1.0) if flip else 1.0
    theta[:, 1, 1] = 1.0
    if whole_pixels:
        k = int(max_shift)
        pixels = torch.randint(-k, k + 1, (n, 2), device=dev, generator=generator).float()
        theta[:, :, 2] = pixels * 2 / torch.tensor([w, h], device=dev)  # pixels -> [-1, 1] units
    else:
        u = torch.rand(n, 2, device=dev, generator=generator) * 2 - 1
        theta[:, :, 2] = u * 2 * torch.tensor([max_shift / w, max_shift / h], device=dev)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)

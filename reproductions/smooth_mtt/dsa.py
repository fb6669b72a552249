"""Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021) as used by MTT/AST distillation, written
fresh and vectorised over the batch. A shareable piece (any trajectory/gradient-matching distillation uses it).

Strategy string ``"color_crop_cutout_flip_scale_rotate"``; in the official "single" mode (aug_mode='S') ONE
family is drawn per call for the whole batch, with independent parameters per image. Every op is
differentiable in the input (grid_sample / masks / affine colour maps), so gradients reach synthetic images.
Random numbers come from a CPU ``torch.Generator`` and are moved to the input's device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
# ParamDiffAug defaults of the MTT code base (ratios documented in the DSA paper)
SCALE, ROTATE_DEG, CROP_PAD, CUTOUT, BRIGHT, SATUR, CONTRAST, P_FLIP = 1.2, 15.0, 0.125, 0.5, 1.0, 2.0, 0.5, 0.5


def _rand(n: int, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen).to(dev)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + (_rand(n, gen, dev).view(n, 1, 1, 1) - 0.5) * BRIGHT                           # brightness
    m = x.mean(1, keepdim=True)
    x = (x - m) * (_rand(n, gen, dev).view(n, 1, 1, 1) * SATUR) + m                          # saturation
    m = x.mean((1, 2, 3), keepdim=True)
    return (x - m) * (_rand(n, gen, dev).view(n, 1, 1, 1) + CONTRAST) + m                    # contrast


def crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Integer translation by up to 12.5 % of the side, zero-filled (pad 1, clamp), like rand_crop."""
    n, _, h, w = x.shape
    sh, sw = int(h * CROP_PAD + 0.5), int(w * CROP_PAD + 0.5)
    tx = torch.randint(-sh, sh + 1, (n, 1, 1), generator=gen).to(x.device)
    ty = torch.randint(-sw, sw + 1, (n, 1, 1), generator=gen).to(x.device)
    gx = (torch.arange(h, device=x.device).view(1, h, 1) + tx + 1).clamp(0, h + 1)
    gy = (torch.arange(w, device=x.device).view(1, 1, w) + ty + 1).clamp(0, w + 1)
    xp = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    bi = torch.arange(n, device=x.device).view(n, 1, 1)
    return xp[bi, gx, gy].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen).to(x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    lo_r, lo_c = (ox - ch // 2).clamp(min=0), (oy - cw // 2).clamp(min=0)
    hi_r, hi_c = (ox - ch // 2 + ch - 1).clamp(max=h - 1), (oy - cw // 2 + cw - 1).clamp(max=w - 1)
    inside = (rows >= lo_r) & (rows <= hi_r) & (cols >= lo_c) & (cols <= hi_c)
    return x * (~inside).to(x.dtype).unsqueeze(1)


def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    f = (_rand(x.shape[0], gen, x.device) < P_FLIP).view(-1, 1, 1, 1)
    return torch.where(f, x.flip(3), x)


def scale(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    sx = _rand(n, gen, x.device) * (SCALE - 1 / SCALE) + 1 / SCALE
    sy = _rand(n, gen, x.device) * (SCALE - 1 / SCALE) + 1 / SCALE
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    return _affine(x, theta)


def rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    a = (_rand(n, gen, x.device) - 0.5) * 2 * ROTATE_DEG / 180 * math.pi
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    return _affine(x, theta)


_FN = {"color": color, "crop": crop, "cutout": cutout, "flip": flip, "scale": scale, "rotate": rotate}


def parse(strategy: str) -> tuple[str, ...]:
    if strategy in ("", "none", "None"):
        return ()
    fams = tuple(strategy.split("_"))
    bad = [f for f in fams if f not in _FN]
    if bad:
        raise ValueError(f"unknown DSA families {bad}; use any of {FAMILIES} joined by '_' (or 'none')")
    return fams


def augment(x: torch.Tensor, strategy: str, gen: torch.Generator) -> torch.Tensor:
    """One DSA call in the official single mode: one family for the batch, parameters per image."""
    fams = parse(strategy)
    if not fams:
        return x
    fam = fams[int(torch.randint(len(fams), (1,), generator=gen))]
    return _FN[fam](x, gen).contiguous()

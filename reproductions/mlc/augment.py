"""Batched augmentations on tensors (no torchvision): vector jitter (CPU protocol) and SimCLR-style image views.

Image pipeline for the full protocol [verify against the official repo]: random resized crop
(scale 0.08-1, ratio 3/4-4/3), horizontal flip, colour jitter (brightness/contrast/saturation 0.4,
p=0.8), random grayscale (p=0.2). All per-sample parameters are drawn as tensors; the crop is one
``affine_grid``/``grid_sample`` call for the whole batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def jitter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian jitter (spec §6 SSL init for vector data)."""
    return x + sigma * torch.randn_like(x)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float32 (CIFAR statistics)."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x
    mean = torch.tensor(CIFAR_MEAN, device=x.device).view(1, -1, 1, 1)[:, : x.shape[1]]
    std = torch.tensor(CIFAR_STD, device=x.device).view(1, -1, 1, 1)[:, : x.shape[1]]
    return (x - mean) / std


def image_view(x: torch.Tensor, out_size: int | None = None) -> torch.Tensor:
    """One random SimCLR-style view of a uint8 or [0,1] float batch, normalised."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x
    n, ch, h, w = x.shape
    out = out_size or h
    dev = x.device
    area = torch.empty(n, device=dev).uniform_(0.08, 1.0)
    logr = torch.empty(n, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3))
    ratio = logr.exp()
    sw = (area * ratio).sqrt().clamp(max=1.0)
    sh = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, device=dev) * 2 - 1) * (1 - sw)
    cy = (torch.rand(n, device=dev) * 2 - 1) * (1 - sh)
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = F.affine_grid(theta, [n, ch, out, out], align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if ch == 3:
        apply = (torch.rand(n, 1, 1, 1, device=dev) < 0.8).float()
        b = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.6, 1.4)
        c = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.6, 1.4)
        s = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.6, 1.4)
        j = v * b
        m = j.mean(dim=(1, 2, 3), keepdim=True)
        j = (j - m) * c + m
        g = (0.299 * j[:, :1] + 0.587 * j[:, 1:2] + 0.114 * j[:, 2:]).expand_as(j)
        j = (j - g) * s + g
        v = (apply * j + (1 - apply) * v).clamp(0, 1)
        gray = (torch.rand(n, 1, 1, 1, device=dev) < 0.2).float()
        gv = (0.299 * v[:, :1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:]).expand_as(v)
        v = gray * gv + (1 - gray) * v
    return to_float(v)

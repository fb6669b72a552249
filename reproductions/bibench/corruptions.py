"""Input corruptions of the robustness track (spec §4, §6): gaussian noise, salt-and-pepper, blur, contrast.

Applied to images in [0, 1] (N, C, H, W), batched, with a seeded generator; ``severity`` 1..5 indexes the
parameter tables (CIFAR-10-C style: a fixed parameter per severity level). The paper reads CIFAR-10-C /
ImageNet-C files; those are not in the suite's data catalog, so every scale corrupts the clean test set
procedurally (README: deviation).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from suite.errors import UnknownNameError

PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.16, 0.24, 0.32, 0.40),  # noise std
    "salt_pepper": (0.03, 0.06, 0.10, 0.15, 0.20),  # fraction of pixels set to 0 or 1
    "blur": (0.5, 0.8, 1.1, 1.4, 1.7),  # gaussian blur sigma (pixels)
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.1),  # contrast factor around the per-image mean
}
CORRUPTIONS = tuple(PARAMS)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def corrupt(x: torch.Tensor, kind: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Corrupted copy of ``x`` (values in [0, 1]) by ``kind`` at ``severity`` (1..5), clipped to [0, 1]."""
    if kind not in PARAMS:
        raise UnknownNameError(f"unknown corruption {kind!r}; use one of {CORRUPTIONS}")
    if not 1 <= severity <= 5:
        raise UnknownNameError(f"severity must be 1..5, got {severity}")
    p = PARAMS[kind][severity - 1]
    if kind == "gaussian_noise":
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x + p * noise).clamp(0, 1)
    if kind == "salt_pepper":
        u = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
        out = torch.where(u < p / 2, torch.zeros_like(x), x)
        return torch.where(u > 1 - p / 2, torch.ones_like(x), out)
    if kind == "blur":  # separable gaussian, depthwise, reflect-padded
        k = _gaussian_kernel(p, x.dtype, x.device)
        c, r = x.shape[1], (len(k) - 1) // 2
        y = F.pad(x, (r, r, r, r), mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return y.clamp(0, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # contrast
    return ((x - mean) * p + mean).clamp(0, 1)

"""Batch image augmentation, vectorised over the batch (no per-sample Python)."""
from __future__ import annotations

import math

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


def mixup_target(y: torch.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0) -> torch.Tensor:
    """timm's ``mixup_target``: label-smoothed one-hot targets (on = 1 - s + s/K, off = s/K) of ``y`` mixed
    with those of the batch reversed, ``lam * t(y) + (1 - lam) * t(y.flip(0))``."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off

    def one_hot(t: torch.Tensor) -> torch.Tensor:
        return torch.full((t.shape[0], num_classes), off, device=t.device).scatter_(1, t.long().view(-1, 1), on)

    return one_hot(y) * lam + one_hot(y.flip(0)) * (1.0 - lam)


def mixup_cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float = 0.8,
                 cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                 label_smoothing: float = 0.1, correct_lam: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) / CutMix (Yun et al. 2019) of a batch (B, C, H, W) as timm's ``Mixup`` in its
    'batch' mode (DeiT's setting): one draw per batch; with probability ``prob`` it mixes, choosing CutMix
    with probability ``switch_prob`` when both alphas are > 0; lam ~ Beta(alpha, alpha); image i is mixed
    with image B-1-i (the batch reversed). CutMix pastes a box of side sqrt(1 - lam) x (H, W) centred at a
    uniform pixel, clipped to the image; ``correct_lam`` sets lam = 1 - box area / image area. Returns the
    mixed batch (a new tensor) and the soft targets :func:`mixup_target` (``label_smoothing`` applied also
    when nothing is mixed). Scalar draws use torch's global RNG on the CPU."""
    lam, cut = 1.0, False
    if (mixup_alpha > 0 or cutmix_alpha > 0) and torch.rand(()).item() < prob:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            cut = torch.rand(()).item() < switch_prob
        else:
            cut = cutmix_alpha > 0
        a = cutmix_alpha if cut else mixup_alpha
        lam = float(torch.distributions.Beta(torch.tensor(float(a)), torch.tensor(float(a))).sample())
    if lam == 1.0:
        return x, mixup_target(y, num_classes, 1.0, label_smoothing)
    if cut:
        h, w = x.shape[-2:]
        r = (1.0 - lam) ** 0.5
        ch, cw = int(h * r), int(w * r)
        cy, cx = int(torch.randint(0, h, ()).item()), int(torch.randint(0, w, ()).item())
        yl, yh = min(max(cy - ch // 2, 0), h), min(max(cy + ch // 2, 0), h)
        xl, xh = min(max(cx - cw // 2, 0), w), min(max(cx + cw // 2, 0), w)
        x = x.clone()
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        if correct_lam:
            lam = 1.0 - (yh - yl) * (xh - xl) / float(h * w)
    else:
        x = x * lam + x.flip(0) * (1.0 - lam)
    return x, mixup_target(y, num_classes, lam, label_smoothing)


def random_erasing(x: torch.Tensor, p: float = 0.25, min_area: float = 0.02, max_area: float = 1 / 3,
                   min_aspect: float = 0.3, attempts: int = 10) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020) as timm's ``RandomErasing`` in 'pixel' mode with one box, applied
    to every image of a (normalised) batch (B, C, H, W) independently: with probability ``p``, up to
    ``attempts`` draws of an area in [min_area, max_area] x H·W and an aspect ratio log-uniform in
    [min_aspect, 1/min_aspect]; h = round(sqrt(area·ratio)), w = round(sqrt(area/ratio)); the first draw
    with h < H and w < W is placed at a uniform top-left corner and filled with N(0, 1) noise per pixel
    and channel (no draw fits: the image is left alone). Draws from torch's global RNG on x's device."""
    b, _, hh, ww = x.shape
    dev = x.device
    erase = torch.rand(b, device=dev) < p
    area = (min_area + (max_area - min_area) * torch.rand(b, attempts, device=dev)) * (hh * ww)
    lo = math.log(min_aspect)
    ratio = torch.exp(lo + (-2 * lo) * torch.rand(b, attempts, device=dev))
    h = torch.round(torch.sqrt(area * ratio)).long()
    w = torch.round(torch.sqrt(area / ratio)).long()
    ok = (h < hh) & (w < ww)
    first = ok.int().argmax(1, keepdim=True)   # the first attempt that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    erase = erase & ok.any(1)
    top = (torch.rand(b, device=dev) * (hh - h + 1)).floor().long()   # uniform in [0, H - h]
    left = (torch.rand(b, device=dev) * (ww - w + 1)).floor().long()
    rows, cols = torch.arange(hh, device=dev).view(1, hh, 1), torch.arange(ww, device=dev).view(1, 1, ww)
    box = ((rows >= top.view(b, 1, 1)) & (rows < (top + h).view(b, 1, 1)) & (cols >= left.view(b, 1, 1))
           & (cols < (left + w).view(b, 1, 1)) & erase.view(b, 1, 1))
    return torch.where(box.unsqueeze(1), torch.randn_like(x), x)

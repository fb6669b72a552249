"""Continual-GCD stage splits (spec §3/§6) and the data views: sklearn digits (CPU protocol) or CIFAR-100 /
TinyImageNet from disk (full protocol, fixtures in dry runs).

Class order = seeded shuffle. Stage 0: ``n_old`` classes, a fraction ``labeled_frac`` of their train images,
labeled. Stage t ≥ 1: ``n_new`` new classes with ``per_new`` images each (all when 0), plus ``per_old``
images per stage-0 class and ``per_disc`` per previously discovered class, unlabeled; earlier samples are
not stored (rehearsal-free). Test after stage t: the test images of all classes seen so far.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from suite.data.augment import shift_flip
from suite.errors import ConfigError


@dataclass
class Stage:
    index: int
    x: Any  # torch.Tensor, or a DiskSplit (full scale, streamed from disk) whose labels are y's relabelling
    y: torch.Tensor  # true labels (used for stage 0 supervision and for nothing else at t ≥ 1)
    new_classes: list[int]  # classes introduced at this stage (all stage-0 classes at t = 0)
    seen: list[int]  # classes seen after this stage, in head order


@dataclass
class Protocol:
    stages: list[Stage]
    x_test: Any  # torch.Tensor or DiskSplit
    y_test: torch.Tensor
    order: list[int]  # class order; head index i ↔ class order[i]
    n_old: int


def remap(y: torch.Tensor, order: list[int]) -> torch.Tensor:
    """Relabel classes so that order[i] becomes i (head index = class rank in the order)."""
    lut = torch.full((max(len(order), int(y.max()) + 1 if len(y) else 0),), -1, dtype=torch.long)
    lut[torch.as_tensor(order)] = torch.arange(len(order))
    return lut[y]


def build_protocol(x_tr: Any, y_tr: torch.Tensor, x_te: Any, y_te: torch.Tensor, *,
                   n_classes: int, n_old: int, n_stages: int, n_new: int, labeled_frac: float, per_new: int,
                   per_old: int, per_disc: int, seed: int) -> Protocol:
    """Seeded class order and per-stage index draws (vectorised per class; no sample loops). ``x_tr`` /
    ``x_te``: tensors, or on-disk splits (their stages are lazy subsets, labelled in head order)."""
    from reproductions.happy_cgcd.streaming import relabel, take

    if n_old + n_stages * n_new > n_classes:
        raise ConfigError(f"{n_old} old + {n_stages}×{n_new} new classes exceed the {n_classes} classes; "
                          f"lower n_stages or n_new")
    rng = np.random.default_rng(seed)
    order = [int(c) for c in rng.permutation(n_classes)]
    y_r, y_te_r = remap(y_tr, order), remap(y_te, order)
    x_tr, x_te = relabel(x_tr, y_r), relabel(x_te, y_te_r)
    by_class = [np.flatnonzero(y_r.numpy() == c) for c in range(n_classes)]
    by_class = [rng.permutation(ix) for ix in by_class]
    n_lab = [int(round(labeled_frac * len(by_class[c]))) for c in range(n_old)]
    stage0 = np.concatenate([by_class[c][: n_lab[c]] for c in range(n_old)])
    stages = [Stage(0, take(x_tr, stage0), y_r[stage0], list(range(n_old)), list(range(n_old)))]
    for t in range(1, n_stages + 1):
        new = list(range(n_old + (t - 1) * n_new, n_old + t * n_new))
        parts = [by_class[c][: per_new] if per_new else by_class[c] for c in new]
        for c in range(n_old):  # unlabeled remainder of old classes first, then any image of the class
            pool = by_class[c][n_lab[c]:] if len(by_class[c]) - n_lab[c] >= per_old else by_class[c]
            parts.append(rng.choice(pool, min(per_old, len(pool)), replace=False))
        for c in range(n_old, n_old + (t - 1) * n_new):
            parts.append(rng.choice(by_class[c], min(per_disc, len(by_class[c])), replace=False))
        idx = rng.permutation(np.concatenate(parts))
        stages.append(Stage(t, take(x_tr, idx), y_r[idx], new, list(range(n_old + t * n_new))))
    keep = y_te_r < n_old + n_stages * n_new
    return Protocol(stages, take(x_te, keep), y_te_r[keep], order, n_old)


def digit_view(x: torch.Tensor, shift: int = 1, noise: float = 0.1) -> torch.Tensor:
    """±``shift`` px translation (zero fill) + Gaussian noise σ (spec §6 augmentations); batched grid_sample."""
    out = shift_flip(x, shift, flip=False, mode="nearest", padding_mode="zeros")
    return out + noise * torch.randn_like(out)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def resize_side(size: int, crop_pct: float) -> int:
    """The side images are resized to before the 224 crop: int(224 / 0.875) = 256 (official ``imagenet``
    transform: ``Resize(int(image_size / crop_pct))``)."""
    return int(size / crop_pct)


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


def image_preprocess(size: int, crop_pct: float = 0.875, crop: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (N, 3, H, W) of square images → float, bicubic resize to ``int(size / crop_pct)``, clamped to
    [0, 1] (torchvision's PIL resize works on uint8), then (``crop``) the centre ``size`` crop, then
    ImageNet normalisation: the official ``imagenet`` test transform (Resize(256, bicubic), CenterCrop(224),
    Normalize). ``crop=False`` is the training input before :func:`image_view`'s random crop."""
    side = resize_side(size, crop_pct)

    def f(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
        if crop:
            x = centre_crop(x, size)
        m = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - m) / s
    return f


def image_view(x: torch.Tensor, size: int) -> torch.Tensor:
    """The official ``imagenet`` training augmentation after its resize (``image_preprocess(crop=False)``):
    a random ``size`` × ``size`` crop at a uniform whole-pixel offset (``RandomCrop(224)``) and a horizontal
    flip with probability 1/2 (``RandomHorizontalFlip``), per image, batched by index arithmetic. Its
    ``ColorJitter()`` has no arguments and does nothing, so there is none here."""
    n, _, h, w = x.shape
    dev = x.device
    top = torch.randint(0, h - size + 1, (n,), device=dev)
    left = torch.randint(0, w - size + 1, (n,), device=dev)
    ar = torch.arange(size, device=dev)
    rows = (top[:, None] + ar)[:, :, None]  # (N, size, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (N, 1, size)
    out = x.permute(0, 2, 3, 1)[torch.arange(n, device=dev)[:, None, None], rows, cols]  # (N, size, size, C)
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(n, device=dev) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)

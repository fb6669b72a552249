"""Datasets and views for GEDI: the paper's 2-D toy sets (moons, circles; spec §6), sklearn digits,
and CIFAR-10/100 read from disk (spec §5) through ``suite.data.load_dataset`` (fixtures in dry runs)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from suite.data import load_dataset
from suite.data.augment import shift_flip
from suite.errors import UnknownNameError
from suite.spec import DatasetRef

TOY = ("moons", "circles")
IMAGES = {"cifar10": ("cifar-10", 10), "cifar100": ("cifar-100", 100)}
DATASETS = TOY + ("digits",) + tuple(IMAGES)


@dataclass
class Task:
    """Train/test tensors, number of classes, SGLD box and the view/preprocessing functions."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    k: int
    ref: DatasetRef  # what the loader returned (generated toy sets: a stand-in named for the generator)
    lo: torch.Tensor
    hi: torch.Tensor
    augment: Callable[[torch.Tensor], torch.Tensor]
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    in_shape: tuple[int, ...]


def jitter(sigma: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Gaussian jitter view (spec §6 toy augmentation, σ [verify])."""
    return lambda x: x + sigma * torch.randn_like(x)


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [−1, 1] (JEM convention, spec §3)."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


def image_view(x: torch.Tensor, pad: int = 4, noise: float = 0.03) -> torch.Tensor:
    """Random translation by up to ``pad`` px (reflect-padded crop), horizontal flip, small Gaussian noise;
    one ``grid_sample`` for the whole batch [verify against the paper's SimCLR-style augmentations]."""
    out = shift_flip(x, pad, flip=True, mode="nearest", padding_mode="reflection")
    return (out + noise * torch.randn_like(out)).clamp(-1, 1)


def _toy(name: str, n_train: int, n_test: int, seed: int, noise: float, factor: float) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import make_circles, make_moons

    if name == "moons":
        a = make_moons(n_train, noise=noise, random_state=seed)
        b = make_moons(n_test, noise=noise, random_state=seed + 10_000)  # fresh test set, other seed
    else:
        a = make_circles(n_train, noise=noise, factor=factor, random_state=seed)
        b = make_circles(n_test, noise=noise, factor=factor, random_state=seed + 10_000)
    return a[0], a[1], b[0], b[1]


def load_task(name: str, seed: int, *, n_train: int = 2000, n_test: int = 1000, moons_noise: float = 0.1,
              circles_noise: float = 0.05, circles_factor: float = 0.5, jitter_sigma: float = 0.05,
              box_margin: float = 0.5, ctx=None, max_train: int = 0) -> Task:  # noqa: ANN001
    """One dataset as a :class:`Task` (toy sets regenerated per seed; images from the data root)."""
    if name in TOY:
        noise = moons_noise if name == "moons" else circles_noise
        xa, ya, xb, yb = (torch.as_tensor(v) for v in _toy(name, n_train, n_test, seed, noise, circles_factor))
        xa, xb = xa.float(), xb.float()
        lo, hi = xa.min(0).values - box_margin, xa.max(0).values + box_margin
        return Task(name, xa, ya.long(), xb, yb.long(), 2, DatasetRef(name, "stand-in"),  # generated here
                    lo, hi, jitter(jitter_sigma),
                    lambda x: x, (2,))
    if name == "digits":
        from suite.data.digits import load as load_digits

        sp = load_digits(seed=seed, test_frac=0.3)
        xa, xb = (sp[s].x.flatten(1) * 2 - 1 for s in ("train", "test"))  # pixel/16·2−1 (spec §6)
        ones = torch.ones(xa.shape[1])
        return Task(name, xa, sp["train"].y, xb, sp["test"].y, 10, sp["train"].ref, -ones, ones, jitter(0.1),
                    lambda x: x, (64,))
    if name in IMAGES:
        ds_name, k = IMAGES[name]
        sp = load_dataset(ctx, ds_name)
        tr, te = sp["train"], sp["test"]
        xa = tr.x if not max_train else tr.x[:max_train]
        ya = tr.y if not max_train else tr.y[:max_train]
        ones = torch.ones(3, 32, 32)
        return Task(name, xa, ya, te.x, te.y, k, tr.ref, -ones, ones, image_view, to_unit_range,
                    (3, 32, 32))
    raise UnknownNameError(f"unknown dataset {name!r}; use one of {DATASETS}")

"""Data of the two protocols: sklearn digits as 1x8x8 images split 1150/287/360 (spec §6) and
CIFAR-10 from its python pickle batches (spec §5); the shifted test sets of the robustness study
(C5, Table 5): CIFAR-10-C and CIFAR-10.2 read from disk at full scale (spec §5), procedural Gaussian
noise and blur of the test split at smoke/small (spec §6 stand-in)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from suite.context import RunContext
from suite.data import cifar10c, load_dataset
from suite.data.base import ArrayDataset, seeded_perm
from suite.data.digits import NAME as DIGITS_NAME, load_digits_arrays
from suite.errors import UnknownNameError
from suite.spec import DatasetRef

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ref: DatasetRef
    num_classes: int = 10

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def hw(self) -> int:
        return int(self.x_train.shape[-1])


def load(name: str, ctx: RunContext, split_seed: int = 0, n_val: int = 287, n_test: int = 360) -> Data:
    """``digits``: seeded 1150/287/360 split of the 1,797 images (same split for every run seed);
    ``cifar-10``: the 50k/10k splits, the last 5,000 training images held out as validation."""
    if name == "digits":
        x, y = load_digits_arrays()
        perm = seeded_perm(len(y), split_seed)
        n_tr = len(y) - n_val - n_test
        tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_val], perm[n_tr + n_val:]
        return Data(x[tr], y[tr], x[va], y[va], x[te], y[te], DatasetRef(DIGITS_NAME, "stand-in"))
    if name == "cifar-10":
        splits = load_dataset(ctx, "cifar-10")
        mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

        def norm(u: torch.Tensor) -> torch.Tensor:
            return (u.float() / 255.0 - mean) / std

        xtr, ytr = norm(splits["train"].x), splits["train"].y.long()
        n_hold = min(5000, len(ytr) // 10)
        xte, yte = norm(splits["test"].x), splits["test"].y.long()
        return Data(xtr[: len(ytr) - n_hold], ytr[: len(ytr) - n_hold], xtr[len(ytr) - n_hold:],
                    ytr[len(ytr) - n_hold:], xte, yte, splits["train"].ref)
    raise UnknownNameError(f"unknown dataset {name!r}; use 'digits' (CPU protocol) or 'cifar-10' (full)")


def cifar_normalize(x01: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (N, 3, H, W) standardised with the CIFAR-10 statistics, as ``load`` does."""
    mean = torch.tensor(CIFAR_MEAN, device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=x01.device).view(1, 3, 1, 1)
    return (x01 - mean) / std


@dataclass
class Shifted:
    """The shifted test sets of Table 5: CIFAR-10-C (memory-mapped; severities read batch by batch) and
    the CIFAR-10.2 test split (2,000 images, uint8 (N, 3, 32, 32))."""
    c10c: cifar10c.CifarC
    c102: ArrayDataset


def load_shifted(ctx: RunContext, corruptions: tuple[str, ...]) -> Shifted:
    """CIFAR-10-C (``<data root>/CIFAR-10-C``) and CIFAR-10.2 (``<data root>/cifar-10.2``) through the
    data layer's locator: every header checked before any training starts, provenance from the locator."""
    return Shifted(cifar10c.locate_cifar10c(ctx, corruptions), cifar10c.locate_cifar102(ctx, "test"))


def corrupt(x: torch.Tensor, kind: str, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Procedural corruptions (C5 stand-in): ``noise`` adds N(0, strength^2) per pixel, ``blur``
    mixes each pixel with its 3x3 box average by ``strength``."""
    if kind == "noise":
        return x + strength * torch.randn(x.shape, generator=generator).to(x.device)
    if kind == "blur":
        c = x.shape[1]
        k = torch.full((c, 1, 3, 3), 1.0 / 9.0, device=x.device)
        return (1 - strength) * x + strength * F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)
    raise UnknownNameError(f"unknown corruption {kind!r}; use 'noise' or 'blur'")

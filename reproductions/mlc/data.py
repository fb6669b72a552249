"""Datasets of the MLC protocol: curves and digits (CPU, spec §6); CIFAR-10/20/100, TinyImageNet-200 (full, §5).

Image datasets: train + test (val for TinyImageNet) images pooled, without labels for training, as
is usual in deep clustering [verify split]; labels only for evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data import digits
from suite.data.catalog import load_dataset
from suite.data.digits import load_digits_arrays
from suite.errors import UnknownNameError
from suite.spec import DatasetRef
from reproductions.mlc.manifolds import fourier_curves

# our dataset name -> (the suite catalog's name, k)
IMAGE_DATASETS = {"cifar10": ("cifar-10", 10), "cifar20": ("cifar-20", 20), "cifar100": ("cifar-100", 100),
                  "tinyimagenet": ("tiny-imagenet-200", 200)}
VECTOR_DATASETS = ("curves", "digits")


@dataclass
class Data:
    name: str
    x: torch.Tensor  # float (n, D) vectors or uint8 (n, 3, H, W) images
    y: torch.Tensor
    k: int
    ref: DatasetRef  # as set by the loader that read (or generated) the data

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4


def load(name: str, *, n_curves_per: int = 300, n_digits: int = 0, data_root: Path | None = None,
         dry_run: bool = False) -> Data:
    if name == "curves":
        d = fourier_curves(5, n_curves_per)
        return Data(name, d.x, d.y, 5, DatasetRef("curves", "stand-in"))  # generated here (manifolds.py)
    if name == "digits":
        x, y = load_digits_arrays()
        x = x.flatten(1)
        if n_digits:  # a fixed class-mixed subset (smoke scale)
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n_digits]
            x, y = x[idx], y[idx]
        return Data(name, x, y, 10, digits.load()["train"].ref.renamed("digits"))
    if name not in IMAGE_DATASETS:
        raise UnknownNameError(f"unknown mlc dataset {name!r}; use one of {VECTOR_DATASETS + tuple(IMAGE_DATASETS)}")
    # the catalog finds the data under the data root (a dry run without it: fixture files in the real
    # format, labelled "<name>-fixture" / stand-in) and its loader sets the provenance
    s = load_dataset(data_root, IMAGE_DATASETS[name][0], dry_run=dry_run)
    parts = [s[k] for k in s]
    return Data(name, torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), IMAGE_DATASETS[name][1],
                DatasetRef.combine(*(p.ref for p in parts)))

"""Datasets of the MLC protocol: curves and digits (CPU, spec §6); CIFAR-10/20/100, TinyImageNet-200 (full, §5).

Image datasets: train + test (val for TinyImageNet) images pooled, without labels for training, as
is usual in deep clustering [verify split]; labels only for evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data import cifar, tinyimagenet
from suite.data.digits import load_digits_arrays
from suite.errors import DataNotFoundError, UnknownNameError
from reproductions.mlc.manifolds import fourier_curves

IMAGE_DATASETS = {"cifar10": (cifar.C10_DIR, 10), "cifar20": (cifar.C100_DIR, 20), "cifar100": (cifar.C100_DIR, 100),
                  "tinyimagenet": (tinyimagenet.SUBDIR, 200)}
VECTOR_DATASETS = ("curves", "digits")


@dataclass
class Data:
    name: str
    x: torch.Tensor  # float (n, D) vectors or uint8 (n, 3, H, W) images
    y: torch.Tensor
    k: int
    provenance: str

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4


def _image_root(name: str, data_root: Path | None, dry_run: bool, fixture_dir: Path) -> Path:
    sub = IMAGE_DATASETS[name][0]
    root = Path(data_root) / sub if data_root is not None else None
    if root is not None and root.exists():
        return root
    if not dry_run:
        raise DataNotFoundError(f"dataset {name}: expected {sub}/ under {data_root} (pass --data-root or set "
                                "$SUITE_DATA; see suite/data/cifar.py or tinyimagenet.py for how to get it)")
    root = fixture_dir / sub  # dry run without the data: fixture files in the real format
    if name == "cifar10":
        cifar.write_fixture_cifar10(root)
    elif name in ("cifar20", "cifar100"):
        cifar.write_fixture_cifar100(root)
    else:
        tinyimagenet.write_fixture(root)
    return root


def load(name: str, *, n_curves_per: int = 300, n_digits: int = 0, data_root: Path | None = None,
         dry_run: bool = False, fixture_dir: Path = Path(".")) -> Data:
    if name == "curves":
        d = fourier_curves(5, n_curves_per)
        return Data(name, d.x, d.y, 5, "stand-in")
    if name == "digits":
        x, y = load_digits_arrays()
        x = x.flatten(1)
        if n_digits:  # a fixed class-mixed subset (smoke scale)
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n_digits]
            x, y = x[idx], y[idx]
        return Data(name, x, y, 10, "stand-in")
    if name not in IMAGE_DATASETS:
        raise UnknownNameError(f"unknown mlc dataset {name!r}; use one of {VECTOR_DATASETS + tuple(IMAGE_DATASETS)}")
    root = _image_root(name, data_root, dry_run, fixture_dir)
    if name == "cifar10":
        s = cifar.load_cifar10(root)
    elif name == "cifar20":
        s = cifar.load_cifar20(root)
    elif name == "cifar100":
        s = cifar.load_cifar100(root)
    else:
        s = tinyimagenet.load(root)
    parts = [s[k] for k in s]
    return Data(name, torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), IMAGE_DATASETS[name][1],
                "paper")

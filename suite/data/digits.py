"""scikit-learn's bundled 8x8 digits (1,797 images) as an offline stand-in for MNIST-style data."""
from __future__ import annotations

import numpy as np
import torch

from suite.data.base import ArrayDataset, DatasetRef, Splits, seeded_perm

NAME = "sklearn-digits"


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images as float32 (N, 1, 8, 8) in [0, 1] (pixel/16) and int64 labels, file order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def load(seed: int = 0, test_frac: float = 0.25) -> Splits:
    """Train/test splits of a seeded permutation (the last ``test_frac`` of it is ``test``)."""
    x, y = load_digits_arrays()
    perm = seeded_perm(len(y), seed)
    n_test = int(round(test_frac * len(y)))
    ref = DatasetRef(NAME, "stand-in")
    tr, te = perm[: len(y) - n_test], perm[len(y) - n_test:]
    return {"train": ArrayDataset(x[tr], y[tr], ref), "test": ArrayDataset(x[te], y[te], ref)}

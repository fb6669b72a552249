"""ColoredMNIST as built in IRM (Arjovsky et al. 2019, Sec. 5.2) and ColoredDigits, its offline stand-in.

Construction per environment with colour-flip probability ``e``: binary label ``1[digit < 5]``
flipped with probability 0.25; colour = label flipped with probability ``e``; the image (MNIST
downsampled 28 -> 14 by taking every 2nd pixel) is put in channel ``colour`` of a 2-channel image
and the other channel is zero. ColoredMNIST: the first 5/6 of MNIST's training file (50k of 60k)
is shuffled with the seed and dealt to the train environments (even/odd indices, e = 0.1 / 0.2);
the rest (the last 10k) forms each test environment (default e = 0.9) with its own noise draws.
ColoredDigits (rfc_bonsai Sec. 6): sklearn digits (8x8, /16), seeded permutation, first 1200 ->
train envs (0.1, 0.2), remaining 597 -> test envs (0.9, 0.1, 0.5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from suite.data import digits as digits_mod
from suite.data import mnist
from suite.data.base import ArrayDataset, DatasetRef, Splits

LABEL_NOISE = 0.25


def colorize(images: torch.Tensor, digits: torch.Tensor, e: float, gen: torch.Generator,
             label_noise: float = LABEL_NOISE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IRM's ``make_environment``: (x (N, 2, H, W), y float (N,), colour (N,)) from float images (N, H, W)."""
    n = len(digits)
    y = (digits < 5).long() ^ (torch.rand(n, generator=gen) < label_noise).long()
    color = y ^ (torch.rand(n, generator=gen) < e).long()
    x = torch.zeros((n, 2) + tuple(images.shape[1:]), dtype=torch.float32)
    x[torch.arange(n), color] = images.float()
    return x, y.float(), color


def _envs(images: torch.Tensor, digits: torch.Tensor, n_train: int, train_envs: Sequence[float],
          test_envs: Sequence[float], seed: int, ref: DatasetRef) -> Splits:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_train, generator=gen)
    tr_img, tr_dig = images[:n_train][perm], digits[:n_train][perm]
    te_img, te_dig = images[n_train:], digits[n_train:]
    out: Splits = {}
    k = len(train_envs)
    for i, e in enumerate(train_envs):  # even / odd indices for two envs (k-way deal in general)
        x, y, c = colorize(tr_img[i::k], tr_dig[i::k], e, gen)
        out[f"train_{e}"] = ArrayDataset(x, y, ref, {"color": c, "digit": tr_dig[i::k], "e": e})
    for e in test_envs:
        x, y, c = colorize(te_img, te_dig, e, gen)
        out[f"test_{e}"] = ArrayDataset(x, y, ref, {"color": c, "digit": te_dig, "e": e})
    return out


def colored_mnist(root: Path | None = None, seed: int = 0, train_envs: Sequence[float] = (0.1, 0.2),
                  test_envs: Sequence[float] = (0.9,), splits: Splits | None = None) -> Splits:
    """ColoredMNIST environments from MNIST's training file (IDX folder ``root`` or loaded ``splits``).

    Keys ``train_<e>`` / ``test_<e>``; x float (N, 2, 14, 14) in [0, 1]; extra: colour, digit, e.
    Provenance follows the MNIST source (``paper`` or ``paper-subset`` for the npm subset).
    """
    src = splits if splits is not None else mnist.load(Path(root))  # type: ignore[arg-type]
    train = src["train"]
    images = train.x[:, 0, ::2, ::2].float() / 255.0
    n_train = len(train) * 5 // 6  # 50,000 of 60,000 as in IRM
    ref = DatasetRef(f"colored-{train.ref.name}", train.ref.provenance)
    return _envs(images, train.y, n_train, train_envs, test_envs, seed, ref)


def colored_digits(seed: int = 0, n_train: int = 1200, train_envs: Sequence[float] = (0.1, 0.2),
                   test_envs: Sequence[float] = (0.9, 0.1, 0.5)) -> Splits:
    """ColoredDigits stand-in: x float (N, 2, 8, 8); same keys and extras as :func:`colored_mnist`."""
    x, y = digits_mod.load_digits_arrays()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 7919))
    return _envs(x[perm, 0], y[perm], n_train, train_envs, test_envs, seed,
                 DatasetRef("colored-digits", "stand-in"))

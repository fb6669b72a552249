"""CLOvE (Wald et al. 2021): per-environment calibration penalty, the kernel MMCE of Kumar et al. (2018)
with a Laplacian kernel on the confidences, in the form of the RFC paper's official code (``mmce_penalty`` in
coloredmnist/train.py ``clove_train`` and src/algorithms/CLOvE.py): no square root, the kernel width a
parameter (official ``--kernel_scale``: 0.4 by default and on ColoredMNIST, 0.1 in the Camelyon17 scripts)."""
from __future__ import annotations

import torch

from suite.errors import ConfigError
from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)
KERNEL_WIDTH = 0.4  # Laplacian kernel exp(-|r - r'| / width): the official default (--kernel_scale 0.4)


def mmce(logits: torch.Tensor, y: torch.Tensor, width: float = KERNEL_WIDTH) -> torch.Tensor:
    """(1/n^2) sum_ij (c_i - r_i)(c_j - r_j) k(r_i, r_j), r = confidence of the predicted class, c =
    1[prediction correct] (no gradient), k the Laplacian kernel of width ``width`` (official mmce_penalty)."""
    p = torch.sigmoid(logits)
    r = torch.where(p > 0.5, p, 1 - p)
    c = ((p > 0.5).float() == y).float()
    d = c - r
    k = torch.exp(-(r[:, None] - r[None, :]).abs() / width)
    return (d[:, None] * d[None, :] * k).sum() / len(logits) ** 2


def penalty(out: EnvOutputs, width: float = KERNEL_WIDTH, reduce: str = "mean") -> torch.Tensor:
    """The MMCE within each environment present in ``out``, averaged (``reduce="mean"``: WILDS' CLOvE, the
    Camelyon17 code) or summed (``"sum"``: the ColoredMNIST ``clove_train``) over the environments."""
    if reduce not in ("mean", "sum"):
        raise ConfigError(f"clove.penalty: reduce must be 'mean' or 'sum', got {reduce!r}")
    vals = torch.stack([mmce(out.logits[out.env == e], out.y[out.env == e], width)
                        for e in range(out.n_envs) if bool((out.env == e).any())])
    return vals.sum() if reduce == "sum" else vals.mean()

"""CLOvE (Wald et al. 2021): per-environment calibration penalty, the kernel MMCE of Kumar et al. (2018)
with a Laplacian kernel on the confidences."""
from __future__ import annotations

import torch

from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)
KERNEL_WIDTH = 0.4  # Laplacian kernel exp(-|r - r'| / 0.4), as in the MMCE paper


def mmce(logits: torch.Tensor, y: torch.Tensor, width: float = KERNEL_WIDTH) -> torch.Tensor:
    """sqrt( (1/n^2) sum_ij (c_i - r_i)(c_j - r_j) k(r_i, r_j) ), r = confidence of the predicted
    class, c = 1[prediction correct]."""
    p = torch.sigmoid(logits)
    r = torch.where(p > 0.5, p, 1 - p)
    c = ((p > 0.5).float() == y).float()
    d = c - r
    k = torch.exp(-(r[:, None] - r[None, :]).abs() / width)
    return ((d[:, None] * d[None, :] * k).mean()).clamp_min(1e-12).sqrt()


def penalty(out: EnvOutputs) -> torch.Tensor:
    """mean over environments of the MMCE within the environment."""
    vals = [mmce(out.logits[out.env == e], out.y[out.env == e]) for e in range(out.n_envs)]
    return torch.stack(vals).mean()

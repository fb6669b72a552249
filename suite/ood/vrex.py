"""V-REx (Krueger et al. 2021): variance of the environment risks."""
from __future__ import annotations

import torch

from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)


def penalty(out: EnvOutputs) -> torch.Tensor:
    """Var_e(L_e) (population variance over the training environments)."""
    return out.env_losses.var(unbiased=False)

"""ERM: mean of the environment losses, no penalty (the objective's first term only)."""
from __future__ import annotations

import torch

from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (0.0,)


def penalty(out: EnvOutputs) -> torch.Tensor:
    """ERM has no penalty."""
    return torch.zeros((), device=out.logits.device)

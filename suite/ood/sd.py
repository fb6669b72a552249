"""Spectral Decoupling (Pezeshki et al. 2021): L2 penalty on the logits, mean over all examples."""
from __future__ import annotations

import torch

from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (10.0, 50.0, 100.0, 500.0, 1000.0)  # spec §3: SD's own grid


def penalty(out: EnvOutputs) -> torch.Tensor:
    """mean(logits^2)."""
    return out.logits.pow(2).mean()

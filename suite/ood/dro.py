"""Robust (max-over-groups) objective used by Bonsai's discovery rounds (spec §3 step 2): the mean
loss of the worst of several possibly overlapping groups of examples, plus the L2 term."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from suite.ood.envs import group_means
from suite.ood.objective import l2_term


def group_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits of every group, shape (G,); ``masks`` (G, N) bool."""
    logits = model(x).reshape(len(y))
    return group_means(F.binary_cross_entropy_with_logits(logits, y, reduction="none"), masks)


def robust_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor,
                rho: float) -> torch.Tensor:
    """max_g L_g + rho * sum ||theta||^2 (only non-empty groups compete for the max)."""
    losses = group_losses(model, x, y, masks)
    nonempty = masks.any(1)
    return losses[nonempty].max() + rho * l2_term(p for p in model.parameters() if p.requires_grad)

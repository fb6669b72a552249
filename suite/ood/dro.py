"""Robust objectives over groups of examples: the max-over-groups loss of Bonsai's discovery rounds (spec §3
step 2: the mean loss of the worst of several possibly overlapping groups, plus the L2 term), and online
group DRO's adversarial group weights (the official Camelyon17 round 1)."""
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


class GroupWeights(nn.Module):
    """Online group DRO (Sagawa et al. 2020, Alg. 1), as the official Camelyon17 round runs it (WILDS groupDRO):
    adversarial weights q over the groups, q <- q * exp(eta * L_g(batch)) / Z each step, and the objective
    sum_g q_g L_g with the updated q. Groups absent from a batch have L_g = 0 (WILDS' compute_group_wise).
    A module so that ``suite.train.fit`` checkpoints q with the model (``stateful``)."""

    def __init__(self, n_groups: int, step_size: float) -> None:
        super().__init__()
        self.step_size = step_size
        self.register_buffer("q", torch.full((n_groups,), 1.0 / n_groups))

    def objective(self, losses: torch.Tensor) -> torch.Tensor:
        q = self.q.to(losses.device) * torch.exp(self.step_size * losses.detach())
        self.q = q / q.sum()
        return losses @ self.q

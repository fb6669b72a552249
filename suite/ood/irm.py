"""IRMv1 (Arjovsky et al. 2019, Eq. IRMv1): squared gradient of each environment's risk w.r.t. a
dummy scale ``s`` on the logits at ``s = 1``, averaged over environments."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from suite.ood.envs import env_means
from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)  # spec §3 penalty grid (ColoredMNIST)


def penalty(out: EnvOutputs) -> torch.Tensor:
    """mean_e (dL_e(s * logits)/ds |_{s=1})^2; one dummy scale per environment, one autograd call."""
    scale = torch.ones(out.n_envs, device=out.logits.device, requires_grad=True)
    scaled = out.logits * scale[out.env]
    losses = env_means(F.binary_cross_entropy_with_logits(scaled, out.y, reduction="none"), out.env, out.n_envs)
    (grad,) = torch.autograd.grad(losses.sum(), scale, create_graph=True)  # spec §7: create_graph
    return grad.pow(2).mean()

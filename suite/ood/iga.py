"""Inter-environment Gradient Alignment (Koyama & Yamaguchi 2020): spread of the per-environment
gradients of the risk w.r.t. all trainable parameters."""
from __future__ import annotations

import torch

from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)


def penalty(out: EnvOutputs) -> torch.Tensor:
    """sum_e ||grad L_e - mean_e' grad L_e'||^2 (gradients kept in the graph)."""
    losses = out.env_losses
    grads = []
    for e in range(out.n_envs):  # one gradient per environment
        g = torch.autograd.grad(losses[e], out.params, create_graph=True, allow_unused=True)
        grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                for gi, p in zip(g, out.params)]))
    G = torch.stack(grads)
    return (G - G.mean(0, keepdim=True)).pow(2).sum()

"""Fishr (Rame et al. 2022): match across environments the variance of the per-example gradients of
the loss w.r.t. the classifier head. Per-example gradients come from ``torch.func`` (grad + vmap),
not BackPACK (spec §7)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from suite.errors import ConfigError
from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)


def per_example_head_grads(out: EnvOutputs) -> torch.Tensor:
    """(N, P) gradients of each example's BCE w.r.t. the head's parameters (flattened)."""
    if out.head is None or out.features is None:
        raise ConfigError("fishr needs a model with .featurizer and .head (suite.ood.net.Classifier)")
    names = [n for n, _ in out.head.named_parameters()]
    params = tuple(p for _, p in out.head.named_parameters())

    def loss_one(ps: tuple[torch.Tensor, ...], f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = functional_call(out.head, dict(zip(names, ps)), (f[None],)).reshape(())
        return F.binary_cross_entropy_with_logits(z, y)

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, out.features, out.y)
    return torch.cat([gi.reshape(len(out.y), -1) for gi in g], dim=1)


def penalty(out: EnvOutputs) -> torch.Tensor:
    """mean_e || v_e - mean_e' v_e' ||^2 with v_e the per-coordinate variance of the head gradients in e."""
    g = per_example_head_grads(out)
    n_envs = out.n_envs
    mean = _env_mean_rows(g, out.env, n_envs)  # (E, P) per-environment mean gradient
    centred = g - mean[out.env]
    var = _env_mean_rows(centred.pow(2), out.env, n_envs)  # (E, P)
    return (var - var.mean(0, keepdim=True)).pow(2).sum(1).mean()


def _env_mean_rows(rows: torch.Tensor, env: torch.Tensor, n_envs: int) -> torch.Tensor:
    sums = torch.zeros(n_envs, rows.shape[1], dtype=rows.dtype, device=rows.device).index_add(0, env, rows)
    return sums / torch.bincount(env, minlength=n_envs).clamp_min(1).to(rows.dtype)[:, None]

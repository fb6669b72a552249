"""IRMv1 (Arjovsky et al. 2019, Eq. IRMv1): the gradient of each environment's risk w.r.t. a dummy scale ``s``
on the logits at ``s = 1``, in one of two forms:

* ``form="squared"`` (default): mean_e (dL_e/ds)^2, the IRMv1 penalty of the RFC paper's ColoredMNIST code
  (coloredmnist/train.py ``IRM_penalty``: ``train_penalty += sum(grad0**2)``, ``/= len(envs)``);
* ``form="split_half"``: the unbiased estimate of WILDS' IRM, which the RFC Camelyon17 code copies
  (src/algorithms/IRM.py ``irm_penalty`` / ``objective``): within each group (environment) present in the
  batch, the product of the dummy-scale gradients of the mean loss of its even-indexed and of its odd-indexed
  examples (``losses[0::2]``, ``losses[1::2]``, in batch order), summed over the groups and divided by the
  number of groups present (``penalty /= n_groups_per_batch``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from suite.errors import ConfigError
from suite.ood.envs import env_means
from suite.ood.objective import EnvOutputs

GRID: tuple[float, ...] = (1e3, 5e3, 1e4, 5e4, 1e5)  # spec §3 penalty grid (ColoredMNIST)
FORMS = ("squared", "split_half")


def penalty(out: EnvOutputs, form: str = "squared") -> torch.Tensor:
    """IRMv1 penalty of ``out`` (module docstring); one autograd call with one dummy scale per slot (an
    environment for "squared", an (environment, half) pair for "split_half"), ``create_graph=True`` (spec §7)."""
    if form not in FORMS:
        raise ConfigError(f"irm.penalty: form must be one of {FORMS}, got {form!r}")
    if form == "squared":
        scale = torch.ones(out.n_envs, device=out.logits.device, requires_grad=True)
        scaled = out.logits * scale[out.env]
        losses = env_means(F.binary_cross_entropy_with_logits(scaled, out.y, reduction="none"), out.env, out.n_envs)
        (grad,) = torch.autograd.grad(losses.sum(), scale, create_graph=True)  # spec §7: create_graph
        return grad.pow(2).mean()
    # split_half: rank of each example within its environment (batch order) by a cumsum of one-hot rows
    onehot = F.one_hot(out.env, out.n_envs)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    slot = out.env * 2 + rank % 2  # (env, even) -> 2 env, (env, odd) -> 2 env + 1
    n_slots = 2 * out.n_envs
    scale = torch.ones(n_slots, device=out.logits.device, requires_grad=True)
    scaled = out.logits * scale[slot]
    # mean loss of each half (an empty half, a group of one example, gives 0 here where WILDS' mean gives NaN)
    halves = env_means(F.binary_cross_entropy_with_logits(scaled, out.y, reduction="none"), slot, n_slots)
    (grad,) = torch.autograd.grad(halves.sum(), scale, create_graph=True)
    g = grad.view(out.n_envs, 2)
    present = torch.bincount(out.env, minlength=out.n_envs) > 0  # WILDS: the groups of the batch
    return (g[:, 0] * g[:, 1])[present].sum() / present.sum()

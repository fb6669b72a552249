"""The OoD objective shared by every method (spec §3, IRM-style training script):

    loss = mean_e L_e + rho * sum ||theta||^2 + lam * penalty;   loss /= lam  if lam > 1

``EnvOutputs`` carries what the penalties need from one forward pass over all environments.
Methods are looked up by name in :data:`suite.ood.METHODS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from suite.ood.envs import EnvData, env_means


@dataclass
class EnvOutputs:
    """One forward pass over all environments: logits (N,), labels, env ids, and for the penalties
    that need them the features (N, d) and the linear head that produced the logits."""

    logits: torch.Tensor
    y: torch.Tensor
    env: torch.Tensor
    n_envs: int
    features: torch.Tensor | None = None
    head: nn.Module | None = None
    params: tuple[torch.Tensor, ...] = ()

    @property
    def per_example_loss(self) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits, self.y, reduction="none")

    @property
    def env_losses(self) -> torch.Tensor:
        """Mean BCE-with-logits of each environment, shape (n_envs,)."""
        return env_means(self.per_example_loss, self.env, self.n_envs)


Penalty = Callable[[EnvOutputs], torch.Tensor]


def l2_term(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum ||theta||^2 over ``params`` (the paper's explicit L2 term, not optimiser weight decay)."""
    sq = [p.pow(2).sum() for p in params]
    return torch.stack(sq).sum() if sq else torch.zeros(())


def forward(model: nn.Module, data: EnvData) -> EnvOutputs:
    """Run ``model`` (a :class:`suite.ood.net.Classifier` or any module giving (N,) / (N, 1) logits)."""
    params = tuple(p for p in model.parameters() if p.requires_grad)
    if hasattr(model, "featurizer") and hasattr(model, "head"):
        feats = model.featurizer(data.x)
        logits = model.head(feats)
        return EnvOutputs(logits.reshape(len(data)), data.y, data.env, data.n_envs, feats, model.head, params)
    return EnvOutputs(model(data.x).reshape(len(data)), data.y, data.env, data.n_envs, None, None, params)


def combine(erm: torch.Tensor, penalty: torch.Tensor, lam: float, l2: torch.Tensor, rho: float) -> torch.Tensor:
    """The paper's total loss: ERM + rho*L2 + lam*penalty, divided by lam when lam > 1 (spec §3, §7)."""
    loss = erm + rho * l2 + lam * penalty
    return loss / lam if lam > 1.0 else loss


def ood_loss(model: nn.Module, data: EnvData, penalty: Penalty, lam: float, rho: float,
             env_reduce: str = "mean") -> torch.Tensor:
    """Total loss of one step of an OoD method on the environments of ``data``; the ERM term is the mean
    (``env_reduce="mean"``) or the sum (``"sum"``, the official ColoredMNIST ``clove_train``) of the
    environment risks."""
    out = forward(model, data)
    erm = out.env_losses.sum() if env_reduce == "sum" else out.env_losses.mean()
    pen = penalty(out) if lam != 0 else torch.zeros((), device=erm.device)
    return combine(erm, pen, lam, l2_term(out.params), rho)


@torch.no_grad()
def env_accuracies(model: nn.Module, data: EnvData, batch: int = 4096) -> torch.Tensor:
    """Accuracy of the thresholded logit (logit > 0 <=> class 1) in each environment, (n_envs,)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device  # chunks go to the model's device, logits come back to the data's
    logits = torch.cat([model(data.x[i:i + batch].to(dev)).reshape(-1)
                        for i in range(0, len(data), batch)]).to(data.y.device)
    model.train(was)
    correct = ((logits > 0).float() == data.y).float()
    return env_means(correct, data.env, data.n_envs)


def worst_env_accuracy(model: nn.Module, data: EnvData) -> float:
    """The paper's OoD score: the minimum over test environments of the accuracy (spec §4, §7)."""
    return float(env_accuracies(model, data).min())

"""Training an OoD method through the suite's one loop (:func:`suite.train.fit`).

Full-batch training (ColoredMNIST: every step sees all of every environment) or per-environment
minibatches (Camelyon17: ``batch_per_env`` examples drawn from each environment every step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from suite.errors import UnknownNameError
from suite.ood.envs import EnvData
from suite.ood.objective import Penalty, ood_loss
from suite.train import TrainConfig, TrainResult, fit


@dataclass
class OodTrainConfig:
    """One OoD training stage. ``lam``: penalty weight; ``anneal_steps``: steps with weight 1.0
    before ``lam`` applies (IRM's schedule; 0 = none, as when starting from Bonsai or ERM init);
    ``rho``: the explicit L2 weight; ``batch_per_env``: None = full batch."""

    steps: int
    lam: float = 0.0
    lr: float = 5e-4
    rho: float = 0.0011
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    anneal_steps: int = 0
    batch_per_env: int | None = None

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, optimizer=self.optimizer, momentum=self.momentum,
                           weight_decay=self.weight_decay, log_every=max(1, self.steps), bf16=False)


def penalty_of(method: str) -> Penalty:
    from suite.ood import METHODS

    if method not in METHODS:
        raise UnknownNameError(f"unknown OoD method {method!r}; use one of {sorted(METHODS)}")
    return METHODS[method].penalty


def batches(data: EnvData, batch_per_env: int | None, gen: torch.Generator,
            device: torch.device | str = "cpu") -> Callable[[int], Any]:
    """``step -> (step, EnvData)``: the whole data (full batch, moved to ``device`` once) or a
    per-environment minibatch drawn where the data lives and moved to ``device``."""
    if batch_per_env is None:
        whole = data.to(device)
        return lambda step: (step, whole)
    return lambda step: (step, data.sample(batch_per_env, gen).to(device))


def train_ood(model: nn.Module, data: EnvData, method: str, cfg: OodTrainConfig, *, ctx: Any = None,
              name: str = "", gen: torch.Generator | None = None) -> TrainResult:
    """Minimise the method's objective (:func:`suite.ood.objective.ood_loss`) in place on ``model``."""
    pen = penalty_of(method)
    gen = gen if gen is not None else torch.Generator().manual_seed(0)

    def loss_fn(m: nn.Module, batch: tuple[int, EnvData]) -> torch.Tensor:
        step, b = batch
        lam = cfg.lam if step >= cfg.anneal_steps else min(cfg.lam, 1.0)
        return ood_loss(m, b, pen, lam, cfg.rho)

    dev = ctx.device if ctx is not None else next(model.parameters()).device
    return fit(model, loss_fn, batches(data, cfg.batch_per_env, gen, dev), cfg.train_config(), ctx=ctx, name=name)

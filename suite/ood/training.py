"""Training an OoD method through the suite's one loop (:func:`suite.train.fit`).

Full-batch training (ColoredMNIST: every step sees all of every environment) or minibatches of
``batch_per_env`` examples per environment, drawn as ``draw`` says: ``"replacement"`` (from every environment,
with replacement), ``"groups"`` (WILDS' GroupSampler, Camelyon17's penalised methods: ``groups_per_batch``
distinct environments per batch) or ``"slice"`` (the official ColoredMNIST ``clove_train``: one random slice
without replacement of each environment).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

from suite.errors import ConfigError, UnknownNameError
from suite.ood.envs import EnvData
from suite.ood.objective import Penalty, ood_loss
from suite.train import TrainConfig, TrainResult, TrainState, fit


@dataclass
class OodTrainConfig:
    """One OoD training stage. ``lam``: penalty weight; ``anneal_steps``: steps before ``lam`` applies (IRM's
    schedule; 0 = none, as when starting from Bonsai or ERM init), with penalty weight ``anneal_lam`` meanwhile
    (None: min(lam, 1.0)); ``anneal_reset``: re-create the optimizer when the anneal phase ends (WILDS IRM / VREX
    ``_update``: ``if update_count == irm_penalty_anneal_iters: optimizer = initialize_optimizer(...)``);
    ``rho``: the explicit L2 weight; ``batch_per_env``: None = full batch, else examples per environment drawn
    as ``draw`` says (module docstring; ``"groups"`` needs ``groups_per_batch``); ``env_reduce``: the ERM term
    and the penalty are the mean (default) or the sum over environments; ``penalty_kwargs``: keyword options of
    the method's penalty (CLOvE: ``width``); ``checkpoint_every``: steps between fit's checkpoints (0: none)."""

    steps: int
    lam: float = 0.0
    lr: float = 5e-4
    rho: float = 0.0011
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    anneal_steps: int = 0
    anneal_lam: float | None = None
    anneal_reset: bool = False
    batch_per_env: int | None = None
    draw: Literal["replacement", "groups", "slice"] = "replacement"
    groups_per_batch: int | None = None
    env_reduce: Literal["mean", "sum"] = "mean"
    penalty_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.draw not in ("replacement", "groups", "slice"):
            raise ConfigError(f"OodTrainConfig.draw: 'replacement', 'groups' or 'slice', got {self.draw!r}")
        if self.draw == "groups" and self.batch_per_env is not None and not self.groups_per_batch:
            raise ConfigError("OodTrainConfig: draw='groups' needs groups_per_batch")
        if self.env_reduce not in ("mean", "sum"):
            raise ConfigError(f"OodTrainConfig.env_reduce: 'mean' or 'sum', got {self.env_reduce!r}")

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, optimizer=self.optimizer, momentum=self.momentum,
                           weight_decay=self.weight_decay, log_every=max(1, self.steps), bf16=False,
                           checkpoint_every=self.checkpoint_every)


def penalty_of(method: str) -> Penalty:
    from suite.ood import METHODS

    if method not in METHODS:
        raise UnknownNameError(f"unknown OoD method {method!r}; use one of {sorted(METHODS)}")
    return METHODS[method].penalty


def configured_penalty(method: str, cfg: OodTrainConfig) -> Penalty:
    """The method's penalty with ``cfg.penalty_kwargs`` (and ``reduce="sum"`` when ``cfg.env_reduce`` is
    "sum") bound; a keyword the penalty does not take is a ConfigError."""
    pen = penalty_of(method)
    opts = dict(cfg.penalty_kwargs)
    if cfg.env_reduce == "sum":
        opts["reduce"] = "sum"
    if not opts:
        return pen
    bad = sorted(set(opts) - set(inspect.signature(pen).parameters))
    if bad:
        raise ConfigError(f"the {method} penalty takes no option(s) {bad}")
    return functools.partial(pen, **opts)


def batches(data: EnvData, batch_per_env: int | None, gen: torch.Generator,
            device: torch.device | str = "cpu", draw: str = "replacement",
            groups_per_batch: int | None = None) -> Callable[[int], Any]:
    """``step -> (step, EnvData)``: the whole data (full batch, moved to ``device`` once) or a minibatch
    drawn where the data lives (``draw``: see the module docstring) and moved to ``device``."""
    if batch_per_env is None:
        whole = data.to(device)
        return lambda step: (step, whole)
    if draw == "groups":
        assert groups_per_batch is not None
        return lambda step: (step, data.sample_groups(batch_per_env, groups_per_batch, gen).to(device))
    if draw == "slice":
        return lambda step: (step, data.slice_per_env(batch_per_env, gen).to(device))
    return lambda step: (step, data.sample(batch_per_env, gen).to(device))


def train_ood(model: nn.Module, data: EnvData, method: str, cfg: OodTrainConfig, *, ctx: Any = None,
              name: str = "", gen: torch.Generator | None = None) -> TrainResult:
    """Minimise the method's objective (:func:`suite.ood.objective.ood_loss`) in place on ``model``."""
    pen = configured_penalty(method, cfg)
    gen = gen if gen is not None else torch.Generator().manual_seed(0)

    warm = min(cfg.lam, 1.0) if cfg.anneal_lam is None else cfg.anneal_lam

    def loss_fn(m: nn.Module, batch: tuple[int, EnvData]) -> torch.Tensor:
        step, b = batch
        lam = cfg.lam if step >= cfg.anneal_steps else warm
        return ood_loss(m, b, pen, lam, cfg.rho, cfg.env_reduce)

    def reset(state: TrainState) -> None:  # after update number anneal_steps: a fresh optimizer's (empty) state
        if state.step == cfg.anneal_steps:
            state.optimizer.state.clear()

    dev = ctx.device if ctx is not None else next(model.parameters()).device
    draw = batches(data, cfg.batch_per_env, gen, dev, cfg.draw, cfg.groups_per_batch)
    on_step = reset if cfg.anneal_reset and cfg.anneal_steps > 0 else None  # at step 0 the optimizer is fresh
    # generator=gen: the draws' generator travels in fit's checkpoint, so a resumed stage draws what it would have
    return fit(model, loss_fn, draw, cfg.train_config(), ctx=ctx, name=name, on_step=on_step, generator=gen)

"""Out-of-distribution methods, reusable by any reproduction: ERM, IRMv1, V-REx, SD, IGA, Fishr, CLOvE
(one module each, each with ``penalty(out)`` and its penalty ``GRID``), the robust max-over-groups
objective (:mod:`dro`) and Bonsai / Rich Feature Construction (:mod:`bonsai`).

The total loss of every method is :func:`suite.ood.objective.combine`: mean env loss + rho*L2 +
lam*penalty, divided by lam when lam > 1. Train with :func:`suite.ood.training.train_ood`.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from suite.ood import clove, erm, fishr, iga, irm, sd, vrex
from suite.ood.envs import EnvData
from suite.ood.objective import EnvOutputs, Penalty, combine, env_accuracies, ood_loss, worst_env_accuracy


@dataclass(frozen=True)
class Method:
    """An OoD method: its penalty and the penalty-weight grid of the RFC paper (spec §3)."""

    name: str
    module: ModuleType

    @property
    def penalty(self) -> Penalty:
        return self.module.penalty

    @property
    def grid(self) -> tuple[float, ...]:
        return self.module.GRID


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("erm", erm), Method("irm", irm), Method("vrex", vrex), Method("sd", sd), Method("iga", iga),
    Method("fishr", fishr), Method("clove", clove))}

__all__ = ["METHODS", "Method", "EnvData", "EnvOutputs", "Penalty", "combine", "ood_loss", "env_accuracies",
           "worst_env_accuracy"]

"""Multi-layer perceptrons; LeNet-300-100 (LeCun et al. 1998, as used by Frankle & Carbin 2019)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from suite.errors import UnknownNameError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU,
               "identity": nn.Identity}


def activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``gelu``, ``tanh``, ``sigmoid``, ``silu``, ``identity``)."""
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """``in_dim -> hidden[0] -> ... -> out_dim`` with an activation after every hidden layer.

    Inputs with more than two dimensions are flattened from dim 1. ``linears`` lists the Linear
    layers in order (what pruning/initialisation papers iterate over).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "relu",
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(dims) - 2:
                layers.append(activation(act))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1) if x.dim() > 2 else x)


def lenet_300_100(in_dim: int = 784, num_classes: int = 10) -> MLP:
    """LeNet-300-100: fully connected 784-300-100-10 with ReLU (266,610 parameters on MNIST)."""
    return MLP(in_dim, (300, 100), num_classes)

"""A classifier split into featurizer and linear head, the shape every OoD method here expects."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from suite.models import MLP


class Classifier(nn.Module):
    """``head(featurizer(x))``; logits of shape (N, out) (out = 1 for binary tasks, K for Bonsai's
    multi-head synthesis)."""

    def __init__(self, featurizer: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.featurizer, self.head = featurizer, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.featurizer(x))

    def freeze_featurizer(self) -> "Classifier":
        """Freeze phi (the "cf" use of a representation): only the head keeps training."""
        for p in self.featurizer.parameters():
            p.requires_grad_(False)
        self.featurizer.eval()
        return self


def xavier_init_(module: nn.Module) -> nn.Module:
    """Xavier-uniform weights and zero biases for every Linear layer (spec §3 hyperparameters)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def mlp_classifier(in_dim: int, hidden: Sequence[int], out: int = 1) -> Classifier:
    """IRM's ColoredMNIST MLP (in -> hidden -> ... with ReLU after every hidden layer) + linear head."""
    mlp = xavier_init_(MLP(in_dim, tuple(hidden), out))
    return Classifier(_featurizer(mlp), mlp.net[-1])


def _featurizer(mlp: MLP) -> nn.Module:
    layers = list(mlp.net)[:-1]  # Linear, ReLU, ..., Linear, ReLU (ReLU after the last hidden layer)
    return nn.Sequential(nn.Flatten(), *layers)


def averaged_head(head: nn.Linear) -> nn.Linear:
    """A one-output head whose weight row and bias are the means of ``head``'s K rows (spec §3 step 4)."""
    out = nn.Linear(head.in_features, 1, bias=head.bias is not None).to(head.weight.device)
    with torch.no_grad():
        out.weight.copy_(head.weight.mean(0, keepdim=True))
        if head.bias is not None:
            out.bias.copy_(head.bias.mean().reshape(1))
    return out


class LinearOnFeatures(nn.Module):
    """A head applied to precomputed features: the cheap form of a frozen-featurizer ("cf") model."""

    def __init__(self, head: nn.Linear) -> None:
        super().__init__()
        self.featurizer, self.head = nn.Identity(), head

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

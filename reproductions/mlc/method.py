"""Manifold Linearizing and Clustering (Ding et al., ICCV 2023): MCR² with a doubly stochastic membership.

Notation of spec §3: rows of ``z`` (n, d) are unit features z_i, rows of ``c`` (n, d) unit cluster
features c_i; Γ (n, n) is doubly stochastic and its row Γ_j weighs the soft group around sample j.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from suite.models import MLP

Variant = Literal["paper", "row_softmax", "no_entropy", "swapped_sign"]
"""Broken variants, the teeth of the claims: ``row_softmax`` (Γ row-normalised only), ``no_entropy``
(Sinkhorn at η → 1e-3: Γ collapses towards I, spec §7), ``swapped_sign`` (the MLC phase minimises
ΔR instead of maximising it)."""


def coding_rate(z: torch.Tensor, eps2: float) -> torch.Tensor:
    """R(Z) = ½ logdet(I_d + d/(n ε²) ZᵀZ) (MCR², spec §3); computed with the d×d Gram matrix."""
    n, d = z.shape
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    return 0.5 * torch.linalg.slogdet(eye + (d / (n * eps2)) * z.T @ z)[1]


def membership_rate(z: torch.Tensor, gamma: torch.Tensor, eps2: float) -> torch.Tensor:
    """R_c(Z, Γ) = 1/(2n) Σ_j logdet(I_d + d/ε² Σ_i Γ_ji z_i z_iᵀ) (spec §3).

    The n weighted covariances are one matmul: Γ (n×n) times the flattened outer products (n×d²).
    """
    n, d = z.shape
    outer = (z[:, :, None] * z[:, None, :]).reshape(n, d * d)
    cov = (gamma @ outer).reshape(n, d, d)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    return torch.linalg.slogdet(eye + (d / eps2) * cov)[1].sum() / (2 * n)


def sinkhorn(scores: torch.Tensor, eta: float, iters: int, mask_diag: bool = False) -> torch.Tensor:
    """Γ = argmax_{Γ∈DS} ⟨Γ, S⟩ + η H(Γ): alternating row/column normalisation of exp(S/η) in log space.

    Unrolled, so gradients flow to S = C Cᵀ. ``mask_diag`` [verify] forbids Γ_ii > 0.
    """
    log_k = scores / eta
    if mask_diag:
        log_k = log_k.masked_fill(torch.eye(len(scores), dtype=torch.bool, device=scores.device), float("-inf"))
    for _ in range(iters):
        log_k = log_k - torch.logsumexp(log_k, dim=1, keepdim=True)  # rows sum to 1
        log_k = log_k - torch.logsumexp(log_k, dim=0, keepdim=True)  # columns sum to 1
    return log_k.exp()


def membership(c: torch.Tensor, eta: float, iters: int, variant: str = "paper", mask_diag: bool = False
               ) -> torch.Tensor:
    """Γ from the cluster features. Test-only broken variants: ``row_softmax`` (rows only: not doubly
    stochastic), ``no_entropy`` (η → 1e-3: Sinkhorn without its entropy, Γ collapses towards I)."""
    s = c @ c.T
    if variant == "row_softmax":
        return torch.softmax(s / eta, dim=1)
    return sinkhorn(s, 1e-3 if variant == "no_entropy" else eta, iters, mask_diag)


def mlc_objective(z: torch.Tensor, c: torch.Tensor, eps2: float, eta: float, iters: int, variant: str = "paper",
                  mask_diag: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss = −ΔR = −(R(Z) − R_c(Z, Γ)) with Γ = Sinkhorn_η(C Cᵀ) (spec §3); returns (loss, parts)."""
    gamma = membership(c, eta, iters, variant, mask_diag)
    r, rc = coding_rate(z, eps2), membership_rate(z, gamma, eps2)
    sign = -1.0 if variant == "swapped_sign" else 1.0  # broken on purpose: descend on ΔR
    return -sign * (r - rc), {"R": r, "Rc": rc, "gamma": gamma}


def tcr_ssl_loss(z1: torch.Tensor, z2: torch.Tensor, eps2: float, inv_weight: float) -> torch.Tensor:
    """One-shot init (a): maximise the total coding rate of two views + view invariance (TCR/NMCE-style)."""
    tcr = 0.5 * (coding_rate(z1, eps2) + coding_rate(z2, eps2))
    inv = (z1 - z2).pow(2).sum(1).mean()
    return -tcr + inv_weight * inv


class MLCNet(nn.Module):
    """Backbone + feature head (→ z) + cluster head (→ c); both heads give unit vectors.

    ``backbone`` maps inputs to ``feat_in``-dim vectors; heads are Linear-BN-ReLU-Linear [verify].
    """

    def __init__(self, backbone: nn.Module, feat_in: int, dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_head = nn.Sequential(nn.Linear(feat_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                          nn.Linear(hidden, dim))
        self.cluster_head = copy.deepcopy(self.feature_head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        return F.normalize(self.feature_head(h), dim=1), F.normalize(self.cluster_head(h), dim=1)

    def init_cluster_head(self) -> None:
        """One-shot init (b): the cluster head starts as a copy of the (pre-trained) feature head."""
        self.cluster_head.load_state_dict(self.feature_head.state_dict())


class _Features(nn.Module):
    """A suite model's penultimate features (``model.features``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def build_net(backbone: str, in_dim: int, dim: int, hidden: int, in_channels: int = 3) -> MLCNet:
    """``mlp`` (CPU protocol: in→256→256) or ``resnet18`` (CIFAR stem; full protocol) or ``tiny_resnet``."""
    if backbone == "mlp":
        return MLCNet(nn.Sequential(MLP(in_dim, (256,), 256), nn.ReLU()), 256, dim, hidden)
    from suite.models import resnet18

    width = 64 if backbone == "resnet18" else 8
    net = resnet18(num_classes=1, in_channels=in_channels, width=width, cifar_stem=True)
    return MLCNet(_Features(net), net.fc.in_features, dim, hidden)


@torch.no_grad()
def encode(net: MLCNet, x: torch.Tensor, batch: int, device: torch.device,
           transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z, C) for all of ``x`` in eval mode, in batches (CPU tensors)."""
    net.eval()
    zs, cs = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device)
        if transform is not None:
            xb = transform(xb)
        z, c = net(xb)
        zs.append(z.float().cpu())
        cs.append(c.float().cpu())
    net.train()
    return torch.cat(zs), torch.cat(cs)


@dataclass
class Subspaces:
    between: float  # mean |cos| of principal angles between different clusters' top-r subspaces
    within: float  # same between two random halves of one cluster


def subspace_cosines(z: torch.Tensor, labels: torch.Tensor, rank: int, seed: int = 0) -> Subspaces:
    """C3 check (spec §4): clusters of Z lie on near-orthogonal low-dimensional subspaces."""
    g = torch.Generator().manual_seed(seed)
    z = z.double()

    def basis(m: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(m, full_matrices=False)[2][:rank].T  # (d, r), uncentred (subspaces)

    ks = [int(k) for k in labels.unique() if int((labels == k).sum()) >= 2 * rank]
    bases, within = {}, []
    for k in ks:
        zk = z[labels == k]
        bases[k] = basis(zk)
        perm = torch.randperm(len(zk), generator=g)
        h = len(zk) // 2
        within.append(torch.linalg.svdvals(basis(zk[perm[:h]]).T @ basis(zk[perm[h:]])).mean())
    between = [torch.linalg.svdvals(bases[a].T @ bases[b]).mean() for i, a in enumerate(ks) for b in ks[i + 1:]]
    return Subspaces(float(torch.stack(between).mean()) if between else float("nan"),
                     float(torch.stack(within).mean()) if within else float("nan"))

"""FORGE (Shafi & Kadıoğlu 2025, spec §3): edge-weighted GraphSAGE encoder, EMA vector quantiser,
node/edge decoders, the alternating reconstruction loss, and code-usage histograms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reproductions.forge.instance import N_FEAT

# Broken variants (teeth): "swapped_ema" (EMA weights swapped), "untrained" (pre-training skipped)
Variant = Literal["paper", "swapped_ema", "untrained"]


class WeightedSAGEConv(nn.Module):
    """out_i = mean_{j∈N(i)} w_ij · W_n x_j + W_r x_i + b (spec §3, mean aggregation, edge-scaled messages)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin_n = nn.Linear(d_in, d_out, bias=False)
        self.lin_r = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        msg = self.lin_n(x)[src] * w[:, None]
        agg = torch.zeros(x.shape[0], msg.shape[1], dtype=msg.dtype, device=x.device).index_add_(0, dst, msg)
        deg = torch.zeros(x.shape[0], dtype=msg.dtype, device=x.device).index_add_(0, dst, torch.ones_like(w))
        return agg / deg.clamp_min(1.0)[:, None] + self.lin_r(x)


class VectorQuantizer(nn.Module):
    """Nearest-code (Euclidean) quantiser with an EMA codebook (not a gradient parameter), commitment
    loss and straight-through gradients (spec §3: decay 0.8, commitment weight 0.25).

    EMA (training mode, before returning): code_k ← decay·code_k + (1−decay)·mean{z : nearest code k}
    for every code that received at least one vector; unused codes stay.
    """

    def __init__(self, size: int, dim: int, decay: float = 0.8, commitment: float = 0.25,
                 variant: str = "paper") -> None:
        super().__init__()
        cb = torch.empty(size, dim)
        nn.init.kaiming_uniform_(cb)
        self.register_buffer("codebook", cb)
        self.decay, self.commitment, self.variant = decay, commitment, variant

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        d = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.T + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1)

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        k = self.codebook.shape[0]
        count = torch.bincount(idx, minlength=k).to(z.dtype)
        s = torch.zeros_like(self.codebook).index_add_(0, idx, z.to(self.codebook.dtype))
        used = count > 0
        mean = s[used] / count[used, None]
        decay = 1.0 - self.decay if self.variant == "swapped_ema" else self.decay  # broken: weights swapped
        self.codebook[used] = decay * self.codebook[used] + (1.0 - decay) * mean

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.assign(z.detach())
        q = self.codebook[idx]
        commit = self.commitment * F.mse_loss(z, q)  # ‖z − sg(q)‖², q is a buffer
        if self.training:
            self.ema_update(z.detach(), idx)
        return z + (q - z).detach(), idx, commit


@dataclass
class ForgeArch:
    hidden: int = 64
    codebook: int = 128
    dropout: float = 0.1
    edge_dim: int = 32
    decay: float = 0.8
    commitment: float = 0.25
    quantize: bool = True  # False: the GNN-autoencoder-without-VQ baseline (spec §4)
    variant: str = "paper"


class Forge(nn.Module):
    """Encoder conv → ReLU → BN → Dropout (×2) → Linear → ReLU → BN → Dropout; VQ; decoders."""

    def __init__(self, arch: ForgeArch) -> None:
        super().__init__()
        h = arch.hidden
        self.arch = arch
        self.conv1, self.conv2 = WeightedSAGEConv(N_FEAT, h), WeightedSAGEConv(h, h)
        self.lin = nn.Linear(h, h)
        self.bns = nn.ModuleList([nn.BatchNorm1d(h) for _ in range(3)])
        self.drop = nn.Dropout(arch.dropout)
        self.vq = VectorQuantizer(arch.codebook, h, arch.decay, arch.commitment, arch.variant)
        self.dec_node = nn.Linear(h, N_FEAT)
        self.dec_a, self.dec_b = nn.Linear(h, arch.edge_dim), nn.Linear(h, arch.edge_dim)

    def encode(self, g: dict) -> torch.Tensor:
        x = g["x"]
        x = self.drop(self.bns[0](F.relu(self.conv1(x, g["edge_index"], g["edge_weight"]))))
        x = self.drop(self.bns[1](F.relu(self.conv2(x, g["edge_index"], g["edge_weight"]))))
        return self.drop(self.bns[2](F.relu(self.lin(x))))

    def forward(self, g: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantised node vectors q, code indices, commitment loss)."""
        z = self.encode(g)
        if not self.arch.quantize:
            return z, torch.zeros(len(z), dtype=torch.long, device=z.device), z.new_zeros(())
        return self.vq(z)


def adjacency_targets(g: dict, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense var×cons block (variables ``rows``) of the weighted adjacency and its edge mask."""
    m = g["m"]
    src, dst = g["edge_index"]
    keep = (src >= m) & (src - m >= rows.start) & (src - m < rows.stop)  # var → cons direction
    r, c, w = src[keep] - m - rows.start, dst[keep], g["edge_weight"][keep]
    nr = rows.stop - rows.start
    t = torch.zeros(nr, m, dtype=w.dtype, device=w.device)
    t[r, c] = w
    mask = torch.zeros(nr, m, dtype=torch.bool, device=w.device)
    mask[r, c] = True
    return t, mask


def reconstruction_losses(model: Forge, q: torch.Tensor, g: dict, block: int = 5120,
                          pos_weight: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_node, L_edge): MSE of Linear(q) to the features; MSE of the min-max rescaled
    (A_var A_consᵀ) ⊙ (B_var B_consᵀ) to the weighted adjacency, over var-row blocks of ``block``
    rows, existing edges weighted ``pos_weight`` (spec §3, §7: never the dense N×N matrix)."""
    m, n = g["m"], g["n"]
    l_node = F.mse_loss(model.dec_node(q), g["x"])
    a, b = model.dec_a(q), model.dec_b(q)
    total, count = q.new_zeros(()), 0
    for s in range(0, n, block):
        rows = slice(s, min(s + block, n))
        av, bv = a[m + rows.start:m + rows.stop], b[m + rows.start:m + rows.stop]
        r = (av @ a[:m].T) * (bv @ b[:m].T)
        r = (r - r.min()) / (r.max() - r.min()).clamp_min(1e-8)  # min-max rescale (per block)
        t, mask = adjacency_targets(g, rows)
        wgt = torch.where(mask, torch.full_like(t, pos_weight), torch.ones_like(t))
        total = total + (wgt * (r - t) ** 2).sum()
        count += t.numel()
    return l_node, total / count


def lambdas(epoch: int, hi: float = 10.0) -> tuple[float, float]:
    """(λ_node, λ_edge) = (10, 1) on even epochs, (1, 10) on odd epochs (spec §3)."""
    return (hi, 1.0) if epoch % 2 == 0 else (1.0, hi)


def forge_loss(model: Forge, g: dict, epoch: int, pos_weight: float = 5.0) -> tuple[torch.Tensor, dict]:
    """Loss = λ_node·L_node + λ_edge·L_edge + L_commit."""
    q, _, commit = model(g)
    l_node, l_edge = reconstruction_losses(model, q, g, pos_weight=pos_weight)
    ln, le = lambdas(epoch)
    return ln * l_node + le * l_edge + commit, {"node": l_node, "edge": l_edge, "commit": commit}


@torch.no_grad()
def embed(model: Forge, graphs: list[dict]) -> np.ndarray:
    """Instance vectors: bincount of code indices over all nodes (length = codebook size); for the
    no-VQ baseline, the mean of the node vectors."""
    model.eval()
    out = []
    for g in graphs:
        q, idx, _ = model(g)
        if model.arch.quantize:
            out.append(torch.bincount(idx, minlength=model.arch.codebook).double())
        else:
            out.append(q.double().mean(0))
    model.train()
    return torch.stack(out).cpu().numpy()


def code_perplexity(hist: np.ndarray) -> tuple[float, int]:
    """exp(entropy) of the pooled code usage, and the number of codes used (collapse diagnostic, §7)."""
    p = hist.sum(0) / max(hist.sum(), 1)
    nz = p[p > 0]
    return float(np.exp(-(nz * np.log(nz)).sum())), int((p > 0).sum())

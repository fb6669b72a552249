"""LoGAH (Zhou et al. 2024): a graph hypernetwork with a low-rank parameter decoder (spec §3).

Target family: MLPs on flattened digits (spec §6 allows MLPs). Graph = chain of parameterised linear nodes
(input -> linear_1 -> ... -> classifier); node features = op-type embedding + shape encoding; encoder =
Graphormer layers (self-attention with a learned shortest-path-distance bias and degree embeddings).
NOTE (for the lead): LowRankDecoder / TiledDecoder / GraphEncoder are generic hypernetwork blocks that
another paper could share.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

Variant = Literal["correct", "untrained", "swapped-factors"]  # TEETH values


def make_arch(widths: list[int], d_in: int = 64, n_cls: int = 10) -> list[tuple[int, int]]:
    """(out, in) shapes of the linear layers of an MLP with hidden widths ``widths``."""
    dims = [d_in] + list(widths) + [n_cls]
    return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]


def graph_of(shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes [input, linear_1..L (hidden), classifier]; edges i -> i+1. Returns (op type ids, adjacency)."""
    n = len(shapes) + 1
    types = torch.tensor([0] + [1] * (len(shapes) - 1) + [2])
    adj = torch.zeros(n, n, dtype=torch.long)
    idx = torch.arange(n - 1)
    adj[idx, idx + 1] = 1
    return types, adj


def shortest_paths(adj: torch.Tensor, max_d: int) -> torch.Tensor:
    """Undirected shortest-path distances (capped at max_d) by repeated boolean matrix products."""
    a = ((adj + adj.T) > 0).float()
    n = a.shape[0]
    dist = torch.full((n, n), max_d, dtype=torch.long)
    reach = torch.eye(n)
    dist[reach > 0] = 0
    cur = torch.eye(n)
    for k in range(1, max_d):
        cur = ((cur @ a) > 0).float()
        new = (cur > 0) & (dist == max_d)
        dist[new] = k
    return dist


class GraphEncoder(nn.Module):
    """Graphormer (spec §3): node emb = type emb + shape enc + in/out-degree emb; L layers of MHA with SPD bias."""

    def __init__(self, d: int, layers: int, heads: int, max_dim: int = 4096, max_spd: int = 16) -> None:
        super().__init__()
        self.d, self.heads, self.max_spd = d, heads, max_spd
        self.type_emb = nn.Embedding(3, d)
        self.shape_emb = nn.Embedding(max_dim + 1, d)        # shape encoding: out and in channel counts
        self.deg_emb = nn.Embedding(8, d)
        self.spd_bias = nn.Embedding(max_spd + 1, heads * layers)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True,
                                                               norm_first=True) for _ in range(layers))

    def forward(self, shapes: list[tuple[int, int]]) -> torch.Tensor:
        dev = self.type_emb.weight.device
        types, adj = graph_of(shapes)
        outs = torch.tensor([shapes[0][1]] + [s[0] for s in shapes]).clamp(max=self.shape_emb.num_embeddings - 1)
        ins = torch.tensor([0] + [s[1] for s in shapes]).clamp(max=self.shape_emb.num_embeddings - 1)
        deg = (adj.sum(0) + adj.sum(1)).clamp(max=7)
        h = (self.type_emb(types.to(dev)) + self.shape_emb(outs.to(dev)) + self.shape_emb(ins.to(dev))
             + self.deg_emb(deg.to(dev))).unsqueeze(0)
        spd = shortest_paths(adj, self.max_spd).to(dev)
        bias = self.spd_bias(spd).permute(2, 0, 1)          # (heads*layers, n, n)
        for i, layer in enumerate(self.layers):
            mask = bias[i * self.heads:(i + 1) * self.heads]
            h = layer(h, src_mask=mask)
        return h[0]                                         # (n, d)


class LowRankDecoder(nn.Module):
    """Spec §3: z = MLP(h): d -> 4d -> 8d -> 2r^2; (2r, r) -> ReLU -> Linear(r -> K) -> (2r, K) -> plain reshape
    (2K, r) -> A, B' (K, r); W = A[:out] @ B'[:in]^T (rank <= r)."""

    def __init__(self, d: int, r: int, K: int, swapped: bool = False) -> None:
        super().__init__()
        self.r, self.K, self.swapped = r, K, swapped
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, 8 * d), nn.ReLU(),
                                 nn.Linear(8 * d, 2 * r * r))
        self.lin = nn.Linear(r, K)

    def forward(self, h: torch.Tensor, out: int, inp: int) -> torch.Tensor:
        z = self.mlp(h).view(2 * self.r, self.r)
        z = self.lin(F.relu(z)).reshape(2 * self.K, self.r)  # plain reshape, no transpose (spec §7)
        a, b = z[: self.K], z[self.K:]
        if self.swapped:   # TEETH (used only at prediction time): the two low-rank factors exchanged
            return b[:out] @ a[:inp].T
        return a[:out] @ b[:inp].T


def lowrank_param_formula(d: int, r: int, K: int) -> int:
    """Spec §6: 4d^2 + 32d^2 + 8d*2r^2 + r*K weights, plus the biases 4d + 8d + 2r^2 + K."""
    return 4 * d * d + 32 * d * d + 8 * d * 2 * r * r + r * K + (4 * d + 8 * d + 2 * r * r + K)


class TiledDecoder(nn.Module):
    """GHN-3-style full-rank decoder (baseline, spec §4): MLP d -> 4d -> 8d -> s*s with s = d (GHN-3 outputs
    a d x d x 16 x 16 block for convs; for 2-D weights the block is d x d), tiled to wider layers."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.s = d
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, 8 * d), nn.ReLU(),
                                 nn.Linear(8 * d, d * d))

    def forward(self, h: torch.Tensor, out: int, inp: int) -> torch.Tensor:
        blk = self.mlp(h).view(self.s, self.s)
        reps = (-(-out // self.s), -(-inp // self.s))
        return blk.repeat(*reps)[:out, :inp]


def tiled_param_count(d: int, spatial: int = 16) -> int:
    """GHN-3's decoder output layer grows as 8d * d*d*spatial (~d^3); with its two hidden layers."""
    return 4 * d * d + 4 * d + 32 * d * d + 8 * d + 8 * d * d * d * spatial + d * d * spatial


class GHN(nn.Module):
    """Graph hypernetwork: encoder (+ LayerNorm on the node embeddings, official --ln) + decoder (low-rank = LoGAH,
    tiled = GHN-3-style) + bias head + GHN-3's predicted-parameter normalisation (official -n, `_normalize`)."""

    def __init__(self, d: int, layers: int, heads: int, r: int, K: int, decoder: str = "lowrank",
                 swapped: bool = False, ln: bool = True) -> None:
        super().__init__()
        self.K = K
        self.enc = GraphEncoder(d, layers, heads)
        # official ghn3/nn.py (--ln): x = self.ln(self.gnn(x)) -- LayerNorm(hid) on the node embeddings after the
        # Graphormer layers, before the decoders
        self.ln = nn.LayerNorm(d) if ln else nn.Identity()
        self.dec = LowRankDecoder(d, r, K, swapped) if decoder == "lowrank" else TiledDecoder(d)
        self.bias = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, K))

    def forward(self, shapes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        h = self.ln(self.enc(shapes))
        return [ghn3_normalize(self.dec(h[i + 1], o, n_in), self.bias(h[i + 1])[:o])
                for i, (o, n_in) in enumerate(shapes)]


def ghn3_normalize(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GHN-3's rule (official ghn3/nn.py `_normalize`, -n): a predicted weight is scaled by its fan-in,
    w * sqrt(beta / w[0].numel()), with beta = 2 for every 2-D weight (beta = 1 only for 4-D tensors with a
    singleton input or k_out < k_in, which an MLP has none of); a predicted bias becomes tanh(0.2 * b)."""
    return w * (2.0 / w[0].numel()) ** 0.5, torch.tanh(0.2 * b)


def mlp_forward(params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    for i, (w, b) in enumerate(params):
        x = F.linear(x, w, b)
        if i < len(params) - 1:
            x = F.relu(x)
    return x


class MLP(nn.Module):
    """A target MLP whose linears can be loaded from predicted parameters."""

    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(i, o) for o, i in shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mlp_forward([(l.weight, l.bias) for l in self.layers], x.flatten(1))

    @torch.no_grad()
    def load(self, params: list[tuple[torch.Tensor, torch.Tensor]], noise: float = 0.0,
             gen: torch.Generator | None = None) -> None:
        for l, (w, b) in zip(self.layers, params):
            l.weight.copy_(w + noise * torch.randn(w.shape, generator=gen).to(w) * w.std())
            l.bias.copy_(b)

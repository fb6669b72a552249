"""The LRA network around the S4D layer: encoder -> n x (S4D block) -> pooling -> decoder (§5).

Block (repo LRA configs: ``prenorm: false``, ``norm: batch``): ``x = norm(x + dropout(S4D(x)))``
(post-norm), or ``x = x + dropout(S4D(norm(x)))`` with ``prenorm``. Encoder: embedding (token
tasks) or a linear map of the pixel value; decoder: mean-pool over length (``pool='mean'``) or the
last position (``pool='last'``, the causal memory task), then a linear classifier. Token inputs are
padded with id 0 at the end and pooled over their real tokens only (official ``use_lengths: true``). Retrieval
encodes both documents with the same network and classifies ``[z1, z2, z1*z2, z1-z2]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from suite.models.ssm import S4DBlock, SSMConfig, pool_sequence
from suite.errors import UnknownNameError

POOLS = ("mean", "last")
NORMS = ("batch", "layer")
# the block (norm kind, pre/post-norm) and the decoder pooling live in suite.models.ssm (S4DBlock, pool_sequence),
# shared with reproductions/self_pretraining


@dataclass
class ModelConfig:
    """Sizes of the sequence classifier. ``vocab`` > 0: token ids through an embedding; 0: real
    inputs of ``d_input`` features through a linear encoder."""

    n_classes: int = 10
    d_model: int = 64
    n_layers: int = 2
    vocab: int = 0
    d_input: int = 1
    dropout: float = 0.0
    norm: str = "batch"
    prenorm: bool = False
    pool: str = "mean"
    dual: bool = False  # retrieval: two documents per example
    ssm: SSMConfig = field(default_factory=SSMConfig)
    # residual dropout with one mask per (example, channel) over the sequence (official ``model.tie_dropout``:
    # SequenceResidualBlock's DropoutNd, state-spaces/s4 src/models/sequence/backbones/block.py); False: element-wise
    tie_dropout: bool = False

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise UnknownNameError(f"unknown pool {self.pool!r}; use one of {POOLS}")
        if self.norm not in NORMS:
            raise UnknownNameError(f"unknown norm {self.norm!r}; use one of {NORMS}")


class S4DClassifier(nn.Module):
    """Sequence classifier: ``forward(x)`` with x (B, L) token ids or (B, L[, d_input]) reals;
    for ``dual`` models x is (B, 2, L)."""

    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        H = cfg.d_model
        self.encoder = nn.Embedding(cfg.vocab, H) if cfg.vocab > 0 else nn.Linear(cfg.d_input, H)
        self.blocks = nn.ModuleList(S4DBlock(H, cfg.ssm, cfg.norm, cfg.prenorm, cfg.dropout, generator,
                                             tie_dropout=cfg.tie_dropout)
                                    for _ in range(cfg.n_layers))
        d_feat = 4 * H if cfg.dual else H
        self.decoder = (nn.Sequential(nn.Linear(d_feat, H), nn.GELU(), nn.Linear(H, cfg.n_classes)) if cfg.dual
                        else nn.Linear(H, cfg.n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled representation (B, H) of one sequence batch."""
        mask = None
        if self.cfg.vocab > 0:
            # token tasks (ListOps, Text, Retrieval): pad id 0 at the end; the official decoder pools over the
            # real tokens only (``decoder.use_lengths: true``, configs/pipeline/{imdb,aan}.yaml; ListOps
            # inherits imdb's), src/tasks/decoders.py SequenceDecoder: restrict(out[:length])
            mask = x != 0
            h = self.encoder(x.long())
        else:
            h = self.encoder(x.unsqueeze(-1) if x.dim() == 2 else x)
        for blk in self.blocks:
            h = blk(h)
        return pool_sequence(h, mask, self.cfg.pool)  # mean / last (real token with a mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.dual:
            B = x.shape[0]
            z = self.features(x.reshape(B * 2, *x.shape[2:])).view(B, 2, -1)
            z1, z2 = z[:, 0], z[:, 1]
            return self.decoder(torch.cat([z1, z2, z1 * z2, z1 - z2], -1))
        return self.decoder(self.features(x))


__all__ = ["ModelConfig", "S4DBlock", "S4DClassifier"]  # S4DBlock re-exported from suite.models.ssm

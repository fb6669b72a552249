"""Encoders, the pretraining decoder, the classifier and the encoder transfer (spec §3).

An encoder maps inputs to per-position states ``(B, L, H)``:
- :class:`TransformerEncoder`: ``suite.models.transformer.TransformerLM`` in bidirectional mode
  (``causal=False``, learned positions, pre-LN) without its LM head; for pixel inputs its token
  embedding is a linear map of the ``d_input`` channels.
- :class:`S4DEncoder`: embedding / linear input map, residual blocks ``suite.models.ssm.S4DBlock`` around the
  bidirectional S4D layer (norm kind and pre/post-norm per task, as the official ``s4-lra-<task>.yaml``), and a
  final norm of the same kind after pre-norm blocks only (official ``SequenceModel``: ``Identity`` after post-norm).

Pretraining = encoder + per-position linear decoder: vocabulary logits (tokens), 256 intensity-class
logits (pixels pretrained with CE: Pathfinder, Path-X) or one value (pixels with L1: Image).
Fine-tuning = the same encoder + pooling (``EncoderConfig.pool``: mean / last / max, over real positions;
official ``decoder.mode``) + classifier head (:class:`Classifier`; ``EncoderConfig.head``: linear, or the official
``sequence_nonelinear`` 2-layer MLP).
:func:`transfer_encoder` copies every encoder tensor and fails if any is left out (the repo's
``strict=False`` load hides missing keys, spec §7); for pixel tasks it drops the last input column (the
mask-indicator channel) of the input map, as the repo does.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

import torch
from torch import nn

from suite.models.ssm import NORMS, POOLS, Norm, S4DBlock, SSMConfig, pool_sequence
from suite.errors import ConfigError, UnknownNameError
from suite.models.transformer import TransformerLM

ARCHS = ("transformer", "s4d")
# classifier head after the pooling (official ``decoder._name_``, src/tasks/decoders.py): ``linear`` = ``sequence``
# (SequenceDecoder: one Linear(d_model, n_classes)); ``mlp`` = ``sequence_nonelinear`` (NoneLinearSequenceDecoder,
# type 'mlp': Linear(d_model, d_model) -> ReLU -> Linear(d_model, n_classes)). Dual (Retrieval) models always use
# the ``retrieval`` NLI head.
HEADS = ("linear", "mlp")


@dataclass
class EncoderConfig:
    """``vocab`` > 0: token ids (vocab includes pad and ``<mask>``); 0: ``d_input`` real channels."""

    arch: str = "transformer"
    vocab: int = 0
    d_input: int = 1
    max_len: int = 256
    d_model: int = 64
    n_layers: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    ssm: SSMConfig = field(default_factory=lambda: SSMConfig(d_state=64, init="inv", bidirectional=True))
    positions: str = "learned"   # Transformer: "learned" or "sinusoidal" (fixed; the official LRA configs)
    # S4D block (official ``model.norm`` / ``model.prenorm``; defaults = the official ``configs/model/base.yaml``)
    norm: str = "layer"
    prenorm: bool = True
    pool: str = "mean"           # classifier pooling over positions (official ``decoder.mode``: pool, last, max)
    head: str = "linear"         # classifier head after the pooling (HEADS; official ``decoder._name_``)
    # S4D residual dropout with one mask per (example, channel) over the sequence (official ``model.tie_dropout``,
    # S4 repo DropoutNd); False: element-wise. The dropout inside the S4D layer is ``ssm.dropout`` / ``ssm.tie_dropout``
    tie_dropout: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UnknownNameError(f"unknown architecture {self.arch!r}; use one of {ARCHS}")
        if self.positions not in ("learned", "sinusoidal"):
            raise UnknownNameError(f"unknown positions {self.positions!r}; use learned or sinusoidal")
        if self.norm not in NORMS:
            raise UnknownNameError(f"unknown norm {self.norm!r}; use one of {NORMS}")
        if self.pool not in POOLS:
            raise UnknownNameError(f"unknown pool {self.pool!r}; use one of {POOLS}")
        if self.head not in HEADS:
            raise UnknownNameError(f"unknown head {self.head!r}; use one of {HEADS}")
        if self.tie_dropout and self.arch != "s4d":
            raise ConfigError(f"tie_dropout is an S4D block option; the {self.arch} encoder has no tied dropout")


def sinusoids(n: int, d: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Vaswani et al. §3.5), (n, d)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


class TransformerEncoder(nn.Module):
    """Bidirectional ``TransformerLM`` trunk: ``forward(x, key_mask) -> (B, L, d_model)``."""

    input_key = "lm.tok_emb.weight"

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lm = TransformerLM(max(cfg.vocab, 1), cfg.max_len, cfg.d_model, cfg.n_layers, cfg.heads,
                                cfg.mlp_ratio, cfg.dropout, causal=False, tie_embeddings=False)
        self.lm.head = nn.Identity()  # the LM head is replaced by our decoders
        if cfg.positions == "sinusoidal":  # the official configs' `position` encoder: fixed sin/cos, added
            self.lm.pos_emb.weight.data.copy_(sinusoids(cfg.max_len, cfg.d_model))
            self.lm.pos_emb.weight.requires_grad_(False)
        if cfg.vocab <= 0:
            self.lm.tok_emb = nn.Linear(cfg.d_input, cfg.d_model, bias=False)  # type: ignore[assignment]

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm.hidden(x.long() if self.cfg.vocab > 0 else x, key_mask)


class S4DEncoder(nn.Module):
    """Input map -> n x S4DBlock (pre-norm ``x + dropout(S4D(norm(x)))`` or post-norm ``norm(x + dropout(S4D(x)))``,
    BatchNorm or LayerNorm) -> final norm (pre-norm only; official ``SequenceModel``); padding zeroed at each S4D
    input."""

    input_key = "embed.weight"

    def __init__(self, cfg: EncoderConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        H = cfg.d_model
        ssm = SSMConfig(**{**cfg.ssm.__dict__, "bidirectional": True})
        self.embed = nn.Embedding(cfg.vocab, H) if cfg.vocab > 0 else nn.Linear(cfg.d_input, H, bias=False)
        self.blocks = nn.ModuleList(S4DBlock(H, ssm, cfg.norm, cfg.prenorm, cfg.dropout, generator,
                                             tie_dropout=cfg.tie_dropout)
                                    for _ in range(cfg.n_layers))
        self.norm = Norm(cfg.norm, H) if cfg.prenorm else nn.Identity()

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x.long() if self.cfg.vocab > 0 else x)
        keep = None if key_mask is None else key_mask.unsqueeze(-1).to(h.dtype)
        for blk in self.blocks:  # keep: padding enters no convolution (real positions ignore the padding length)
            h = blk(h, keep)
        return self.norm(h)


def build_encoder(cfg: EncoderConfig, seed: int) -> nn.Module:
    """An encoder initialised from ``seed`` only (same seed -> identical weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.arch == "transformer":
            return TransformerEncoder(cfg)
        return S4DEncoder(cfg, generator=torch.Generator().manual_seed(seed))


class PretrainModel(nn.Module):
    """Encoder + per-position decoder (``decoder.*`` is dropped at fine-tuning)."""

    def __init__(self, encoder: nn.Module, n_out: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.Linear(encoder.cfg.d_model, n_out)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.encoder(x, key_mask))


class Classifier(nn.Module):
    """Encoder + pooling over real positions (``encoder.cfg.pool``) + head on the pooled vector
    (``encoder.cfg.head``: one linear layer, or ``mlp`` = Linear(H, H) -> ReLU -> Linear(H, n_classes), the official
    ``sequence_nonelinear`` decoder). ``dual`` (Retrieval): x is (B, 2, L), both documents share the encoder,
    features ``[z1, z2, z1*z2, z1-z2]`` into the NLI head (official ``retrieval`` decoder, GELU). ``normalize``: pixel
    inputs in [0, 1] are mapped to [-1, 1] (``2x - 1``) by ``method._prep`` (official Pathfinder / Path-X
    loaders, ``Normalize(mean=0.5, std=0.5)``)."""

    def __init__(self, encoder: nn.Module, n_classes: int, pad_id: int | None = 0, dual: bool = False,
                 normalize: bool = False) -> None:
        super().__init__()
        self.encoder, self.pad_id, self.dual, self.normalize = encoder, pad_id, dual, normalize
        H = encoder.cfg.d_model
        if dual and encoder.cfg.head != "linear":
            raise ConfigError(f"head {encoder.cfg.head!r}: a dual (Retrieval) classifier has the NLI head only")
        if dual:
            self.head = nn.Sequential(nn.Linear(4 * H, H), nn.GELU(), nn.Linear(H, n_classes))
        elif encoder.cfg.head == "mlp":  # NoneLinearSequenceDecoder (type 'mlp'), applied after the pooling
            self.head = nn.Sequential(nn.Linear(H, H), nn.ReLU(), nn.Linear(H, n_classes))
        else:
            self.head = nn.Linear(H, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        key_mask = (x != self.pad_id) if (self.encoder.cfg.vocab > 0 and self.pad_id is not None) else None
        h = self.encoder(x, key_mask)
        return pool_sequence(h, key_mask, self.encoder.cfg.pool)  # padding excluded (spec §7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dual:
            return self.head(self.features(x))
        B = x.shape[0]
        z = self.features(x.reshape(B * 2, *x.shape[2:])).view(B, 2, -1)
        z1, z2 = z[:, 0], z[:, 1]
        return self.head(torch.cat([z1, z2, z1 * z2, z1 - z2], -1))


@torch.no_grad()
def transfer_encoder(src: nn.Module, dst: nn.Module) -> dict[str, float]:
    """Copy every tensor of encoder ``src`` into encoder ``dst`` (in place).

    Raises ConfigError if a tensor of either side has no counterpart or a shape that differs other
    than by the pixel mask channel (last input column, dropped). Returns the number of tensors
    copied and the max abs difference after the copy (0 when exact).
    """
    s = {k: v.detach().cpu() for k, v in src.state_dict().items()}
    d = dst.state_dict()
    missing, unexpected = sorted(set(d) - set(s)), sorted(set(s) - set(d))
    if missing or unexpected:
        raise ConfigError(f"encoder transfer: keys missing {missing[:3]} / unexpected {unexpected[:3]}; "
                          f"build the fine-tuning encoder with the pretraining encoder's config")
    new = {}
    for k, v in s.items():
        if v.shape != d[k].shape:
            if k == getattr(dst, "input_key", None) and v.shape[:-1] == d[k].shape[:-1] and v.shape[-1] == d[k].shape[-1] + 1:
                v = v[..., :-1]  # drop the mask-indicator input column (pixel tasks, spec §7)
            else:
                raise ConfigError(f"encoder transfer: {k} has shape {tuple(v.shape)} vs {tuple(d[k].shape)}")
        new[k] = v
    dst.load_state_dict(new, strict=True)
    after = {k: v.detach().cpu() for k, v in dst.state_dict().items()}
    diff = max((float((after[k].float() - new[k].float()).abs().max()) if after[k].numel() else 0.0)
               for k in new)
    return {"n_tensors": float(len(new)), "max_abs_diff": diff}


def encoder_diff(a: nn.Module, b: nn.Module, input_key: str | None = None) -> float:
    """Max abs difference between two encoders' tensors (input map compared on the shared columns)."""
    sa = {k: v.detach().cpu() for k, v in a.state_dict().items()}
    sb = {k: v.detach().cpu() for k, v in b.state_dict().items()}
    if set(sa) != set(sb):
        raise ConfigError("encoder_diff: the encoders have different tensors")
    out = 0.0
    for k in sa:
        x, y = sa[k].float(), sb[k].float()
        if x.shape != y.shape:
            n = min(x.shape[-1], y.shape[-1])
            x, y = x[..., :n], y[..., :n]
        if x.numel():
            out = max(out, float((x - y).abs().max()))
    return out


__all__ = ["ARCHS", "HEADS", "EncoderConfig", "TransformerEncoder", "S4DEncoder", "build_encoder", "PretrainModel",
           "Classifier", "transfer_encoder", "encoder_diff"]

"""SWS (Xia et al., IJCAI 2024): stage-wise weight-shared Aux-Net -> learngene layers -> variable-depth descendants.

Built on suite.models.ViT without a class token and with mean pooling, as the released nets: the Aux-Net
(SWS_vit.py, ``use_cls_token=False``) applies its final norm to every token, then averages; a descendant
(des_models.py, timm ``global_pool='avg'``) averages, then applies ``fc_norm``, into which the Aux-Net's final
norm is copied (utils.py ``gene_tranfer_1``). Both use stochastic depth (main.py ``--drop-path``).
"""
from __future__ import annotations


import torch
from torch import nn

from suite.errors import ConfigError
from suite.models.vit import ViT


def make_vit(image_size: int, patch: int, channels: int, classes: int, dim: int, depth: int, heads: int,
             mlp_ratio: float, descendant: bool = False, drop_path: float = 0.0) -> ViT:
    """No class token, mean pooling; ``descendant``: pool, then norm (fc_norm), else norm, then pool (Aux-Net).
    ``drop_path``: stochastic-depth rate of the last block (linear from 0 over the blocks, DeiT's rule)."""
    return ViT(image_size=image_size, patch_size=patch, in_channels=channels, num_classes=classes, dim=dim,
               depth=depth, heads=heads, mlp_ratio=mlp_ratio, pool="mean", class_token=False,
               norm_after_pool=descendant, drop_path=drop_path)


def share_stages(model: ViT, stages: tuple[int, ...]) -> ViT:
    """Stage 1 (spec §3): all layers of stage s reference ONE block (qkv, proj, fc1, fc2, both LayerNorms)."""
    if sum(stages) != len(model.blocks):
        raise ConfigError(f"stages {stages} sum to {sum(stages)}, the Aux-Net has {len(model.blocks)} layers")
    blocks, i = [], 0
    for n in stages:
        shared = model.blocks[i]
        blocks += [shared] * n   # same module object -> same storage, one gradient accumulation
        i += n
    model.blocks = nn.ModuleList(blocks)
    return model


def learngene_layers(aux: ViT, stages: tuple[int, ...]) -> list[nn.Module]:
    """The S learngene layers: the first (== every) block of each stage."""
    starts = [sum(stages[:s]) for s in range(len(stages))]
    return [aux.blocks[k] for k in starts]


def stage_mapping(depth: int, n_stages: int) -> tuple[int, ...]:
    """Source learngene index per descendant layer (spec §3 general rule): keep stage order, distribute layers
    over stages as evenly as possible, earlier stages first. depth 12, 5 stages -> (0,0,0,1,1,1,2,2,3,3,4,4)."""
    if depth < 1:
        raise ConfigError(f"descendant depth must be >= 1, got {depth}")
    base, extra = divmod(depth, n_stages)
    out: list[int] = []
    for s in range(n_stages):
        out += [s] * (base + (1 if s < extra else 0))
    return tuple(out)


def expand(aux: ViT, stages: tuple[int, ...], depth: int, des: ViT, mapping: tuple[int, ...] | None = None) -> ViT:
    """Stage 2 (spec §3): copy patch/pos embedding, final norm (into the descendant's post-pool norm) and head
    from the Aux-Net; descendant layer l copies ALL weights of learngene layer mapping[l] (independent copies,
    tuned separately). A class token is copied only where both nets have one (the SWS nets have none)."""
    genes = learngene_layers(aux, stages)
    mapping = mapping if mapping is not None else stage_mapping(depth, len(genes))
    if len(mapping) != len(des.blocks):
        raise ConfigError(f"mapping has {len(mapping)} entries, descendant has {len(des.blocks)} layers")
    with torch.no_grad():
        for name in ("patch", "norm", "head"):
            getattr(des, name).load_state_dict(getattr(aux, name).state_dict())
        des.pos.copy_(aux.pos)
        if des.cls is not None and aux.cls is not None:
            des.cls.copy_(aux.cls)
        for blk, m in zip(des.blocks, mapping):   # weights into the descendant's own blocks (its own heads)
            blk.load_state_dict(genes[m].state_dict())
    return des


def n_params(module: nn.Module) -> int:
    """Unique parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())

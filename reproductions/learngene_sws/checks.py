"""Mechanism checks (spec §6 smoke): weight sharing, expansion copies, distillation = T^2 KL by hand."""
from __future__ import annotations

import torch

from .distill import distill_loss
from .method import expand, make_vit, n_params, share_stages


def mechanism_metrics() -> dict[str, float]:
    torch.manual_seed(0)
    stages = (2, 2, 2, 2)
    aux = share_stages(make_vit(8, 2, 1, 10, 16, 8, 2, 2.0), stages)
    same = all(aux.blocks[2 * s].attn is aux.blocks[2 * s + 1].attn for s in range(4))
    blk = n_params(make_vit(8, 2, 1, 10, 16, 1, 2, 2.0).blocks[0])
    emb = n_params(make_vit(8, 2, 1, 10, 16, 0, 2, 2.0))
    share_err = float(not same) + abs(n_params(aux) - (4 * blk + emb))
    des = expand(aux, stages, 6, make_vit(8, 2, 1, 10, 16, 6, 2, 2.0), (0, 0, 1, 1, 2, 3))
    err = 0.0
    for l, s in enumerate((0, 0, 1, 1, 2, 3)):
        for a, b in zip(des.blocks[l].parameters(), aux.blocks[2 * s].parameters()):
            err = max(err, (a - b).abs().max().item())
        err += float(des.blocks[l] is aux.blocks[2 * s])   # copies, not aliases
    zs, zt, t = torch.randn(5, 10, dtype=torch.float64), torch.randn(5, 10, dtype=torch.float64), 2.0
    pt = torch.softmax(zt / t, -1)
    hand = (pt * (pt.log() - torch.log_softmax(zs / t, -1))).sum(-1).mean() * t * t
    d_err = (distill_loss(zs, zt, temperature=t) - hand).abs().item()
    return {"share_err": share_err, "expand_err": err, "distill_err": d_err}

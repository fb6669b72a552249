"""Tests for logah: decoder mechanics, parameter-count formula, graph builder, a teeth variant at smoke size."""
from __future__ import annotations

import torch

from reproductions.logah import SCALES, Config
from reproductions.logah.experiment import mechanism_metrics
from reproductions.logah.method import (GHN, LowRankDecoder, TiledDecoder, graph_of, lowrank_param_formula,
                                        make_arch, mlp_forward, shortest_paths)


def test_param_formula_exact_and_growth():
    for d, r, K in [(32, 16, 512), (64, 32, 2048), (16, 4, 64)]:
        dec = LowRankDecoder(d, r, K)
        assert sum(p.numel() for p in dec.parameters()) == lowrank_param_formula(d, r, K)
    m = mechanism_metrics(Config())
    assert m["param_formula_abs_err"] == 0 and m["ghn3_growth_exponent"] > 2.9 and m["lowrank_growth_32_128"] < 17


def test_shapes_rank_no_tiling():
    torch.manual_seed(0)
    dec, tiled = LowRankDecoder(32, 8, 512), TiledDecoder(32)
    h = torch.randn(32)
    w = dec(h, 256, 200)
    assert w.shape == (256, 200) and torch.linalg.matrix_rank(w.detach()) <= 8
    assert not torch.equal(w[:32], w[32:64])
    wt = tiled(h, 256, 256)
    assert torch.equal(wt[:32], wt[32:64])


def test_graph_builder_two_block():
    shapes = make_arch([16, 16])                  # 64 -> 16 -> 16 -> 10
    types, adj = graph_of(shapes)
    assert types.tolist() == [0, 1, 1, 2]
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[0, 1] = expected[1, 2] = expected[2, 3] = 1
    assert torch.equal(adj, expected)
    assert shortest_paths(adj, 16)[0].tolist() == [0, 1, 2, 3]


def test_ghn_predicts_wider_than_trained():
    ghn = GHN(16, 1, 2, 4, 300, "lowrank")
    p = ghn(make_arch([256, 256]))
    assert [tuple(w.shape) for w, _ in p] == [(256, 64), (256, 256), (10, 256)]
    assert mlp_forward(p, torch.randn(5, 64)).shape == (5, 10)


def test_teeth_untrained_has_chance_init():
    """Teeth at smoke size: the untrained hypernetwork's init is far below the trained one's."""
    from suite import registry
    from suite.context import for_tests
    r = registry.get("logah")
    good = r.run(Config(**{**SCALES["smoke"], "ghn_steps": 60}), for_tests()).metrics
    bad = r.run(Config(**{**SCALES["smoke"], "ghn_steps": 60, "variant": "untrained"}), for_tests()).metrics
    assert bad["logah_train_steps"] == 0
    assert good["logah_init_acc"] > bad["logah_init_acc"] + 0.1


def test_full_preset_validates():
    # the values are pinned to the README's official table by test_official_config.py; here: the decoder's K
    # reaches every width the full run predicts (flattened CIFAR-10 inputs and the widest target)
    cfg = Config(**SCALES["full"])
    cfg.validate()
    assert cfg.K >= max(3 * 32 * 32, *cfg.target_widths) and cfg.r <= cfg.K  # the full targets' widest side (3072 flattened CIFAR-10 inputs) fits under K


def test_k_must_cover_the_input_width():
    import pytest

    from suite.errors import ConfigError
    with pytest.raises(ConfigError, match="K >= 3072"):
        Config(**{**SCALES["full"], "K": 2048}).validate()

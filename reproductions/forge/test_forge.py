"""FORGE: graph construction, MPS round trip, SAGE conv, VQ EMA, losses, spec §6 smoke assertions, teeth."""
from __future__ import annotations

import pytest
import torch

from reproductions.forge import Config, ema_check, mechanics
from reproductions.forge.data import generated, on_disk, write_fixture
from reproductions.forge.generators import TYPES, generate
from reproductions.forge.instance import bipartite_graph
from reproductions.forge.method import (Forge, ForgeArch, VectorQuantizer, WeightedSAGEConv, adjacency_targets,
                                        embed, lambdas, reconstruction_losses)
from reproductions.forge.mps import read_instance, write_instance
from suite import config, registry
from suite.errors import ConfigError, CorruptDataError


@pytest.mark.parametrize("kind", TYPES)
def test_features_and_edges(kind):
    inst = generate(kind, 0, 1)
    g = bipartite_graph(inst)
    assert g.x.shape == (inst.m + inst.n, 10) and g.x.min() >= 0 and g.x.max() <= 1
    assert torch.equal(g.x[: inst.m, :3].sum(1), torch.ones(inst.m))  # one sense per constraint
    assert torch.equal(g.x[inst.m:, 4:7].sum(1), torch.ones(inst.n))  # one type per variable
    assert g.x[: inst.m, 4:].abs().sum() == 0 and g.x[inst.m:, :4].abs().sum() == 0
    assert g.edge_index.shape[1] == 2 * len(inst.vals)
    e = set(map(tuple, g.edge_index.T.tolist()))
    assert e == {(b, a) for a, b in e}
    assert mechanics([g], [inst], Config()) == {"feature_violations": 0.0, "edge_asymmetry": 0.0,
                                                "ema_update_err": 0.0}


def test_mps_round_trip_and_errors(tmp_path):
    for kind in TYPES:
        a = generate(kind, 1, 5)
        write_instance(a, tmp_path / f"{kind}.mps.gz")
        b = read_instance(tmp_path / f"{kind}.mps.gz")
        assert torch.equal(bipartite_graph(a).x, bipartite_graph(b).x)
        assert b.maximize == a.maximize
    (tmp_path / "bad.mps").write_text("ROWS\n N obj\n L c0\nCOLUMNS\n x0 c9 1.0\nENDATA\n")
    with pytest.raises(CorruptDataError):
        read_instance(tmp_path / "bad.mps")
    with pytest.raises(ConfigError):
        (tmp_path / "a.lp").write_text("min: x;")
        read_instance(tmp_path / "a.lp")


def test_on_disk_fixture(tmp_path):
    root = write_fixture(tmp_path / "forge", per_type=1)
    d = on_disk(root, max_nodes=10_000, log=lambda s: None)
    assert len(d.train) == len(d.test) == len(TYPES) and sorted(d.label_names) == sorted(TYPES)
    assert len(on_disk(root, max_nodes=50, log=lambda s: None).train) == 0  # all skipped (> max nodes)


def test_sage_conv_matches_loop():
    torch.manual_seed(0)
    conv = WeightedSAGEConv(3, 4)
    x = torch.randn(5, 3)
    ei = torch.tensor([[0, 1, 2, 3, 3], [1, 0, 3, 2, 1]])
    w = torch.tensor([0.5, 1.0, 2.0, 0.1, 0.3])
    out = conv(x, ei, w)
    for i in range(5):
        nb = (ei[1] == i).nonzero().flatten()
        agg = sum((w[e] * conv.lin_n(x[ei[0, e]]) for e in nb), torch.zeros(4)) / max(len(nb), 1)
        assert torch.allclose(out[i], agg + conv.lin_r(x[i]), atol=1e-6)


def test_vq_ema_and_straight_through():
    assert ema_check(Config()) == 0.0
    assert ema_check(Config(variant="swapped_ema")) > 0.1
    vq = VectorQuantizer(8, 3).eval()
    z = torch.randn(10, 3, requires_grad=True)
    q, idx, commit = vq(z)
    brute = torch.cdist(z.detach(), vq.codebook).argmin(1)
    assert torch.equal(idx, brute) and torch.allclose(q, vq.codebook[idx])
    (q.sum() + commit).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not vq.codebook.requires_grad


def test_edge_loss_blockwise_equals_dense_and_lambdas():
    g = bipartite_graph(generate("facility", 0, 2)).as_batch()
    torch.manual_seed(0)
    model = Forge(ForgeArch(hidden=16, codebook=8)).eval()
    q, _, _ = model(g)
    t, mask = adjacency_targets(g, slice(0, g["n"]))
    assert int(mask.sum()) == g["edge_index"].shape[1] // 2 and float(t.max()) <= 1.0 + 1e-4 + 1e-6
    _, dense = reconstruction_losses(model, q, g, block=10 ** 6)
    _, blocked = reconstruction_losses(model, q, g, block=g["n"])
    assert torch.allclose(dense, blocked)
    assert lambdas(0) == (10.0, 1.0) and lambdas(1) == (1.0, 10.0)
    hist = embed(model, [g])
    assert hist.sum() == g["m"] + g["n"] and hist.shape == (1, 8)


def test_generated_sets_disjoint():
    d = generated(("setcover", "knapsack"), 4, 4, seed=0)
    names = [i.name for i in d.train] + [i.name for i in d.test]
    assert len(set(names)) == len(names)
    assert d.test_unseen.sum() == 4 and set(d.test_labels.tolist()) == {0, 1}


def test_smoke_run_claims_and_teeth(tmp_path):
    from suite import runner

    rec = runner.execute(runner.RunSpec("forge", "smoke", 0), tmp_path / "ok", device="cpu")
    assert rec["status"] == "ok"
    assert all(v["verdict"] in ("holds", "not-expected") for v in rec["claims"].values()), rec["claims"]
    bad = runner.execute(runner.RunSpec("forge", "smoke", 0, overrides=("variant=swapped_ema",)),
                         tmp_path / "bad", device="cpu")
    assert bad["claims"]["ema-update"]["verdict"] == "fails"


def test_unknown_variant():
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("forge"), "smoke", ["variant=nope"])


def test_noisy_generators_valid_and_overlapping():
    """noise > 0 (the small preset's overlapping types): instances stay valid MIPs with correct features,
    and the constraint-sense / variable-type mixes are no longer pure per type."""
    for kind in TYPES:
        a, b = generate(kind, 0, 3), generate(kind, 0, 3, noise=0.5)
        assert a.name == b.name
        g = bipartite_graph(b)
        assert mechanics([g], [b], Config())["feature_violations"] == 0.0
    senses = {int(s) for k in TYPES for s in generate(k, 1, 4, noise=0.5).sense}
    assert senses == {0, 1, 2}
    d = generated(("setcover", "knapsack"), 2, 2, seed=0, noise=0.5)
    assert len(d.train) == 4 and len(d.test) == 4

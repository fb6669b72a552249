"""DAM-VP: pad prompts, clustering/routing, active neurons, Reptile update, spec §6 smoke claims, teeth."""
from __future__ import annotations

import pytest
import torch

from reproductions.dam_vp.data import diverse_digits, transform
from reproductions.dam_vp.method import (PadPrompts, active_neurons, cluster_threshold, diversity_clusters,
                                         prompt_vector, reptile_update, route, set_prompt_vector)
from suite import config, registry
from suite.errors import ConfigError


def test_pad_prompt_border_only_and_gather():
    p = PadPrompts(3, 1, 16, 16, 2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(6, 1, 16, 16)
    r = torch.tensor([0, 1, 2, 2, 1, 0])
    out = p(x, r).detach()
    assert torch.equal(out[..., 2:14, 2:14], x[..., 2:14, 2:14])
    assert (out - x)[..., :2, :].abs().sum() > 0
    for i in range(6):  # the vectorised gather equals the per-sample loop
        assert torch.equal(out[i], (x[i] + p.assemble()[r[i]]).detach())
    n = sum(t.numel() for t in p.parameters())
    assert n == 3 * (2 * 2 * 16 + 2 * 12 * 2)
    bad = PadPrompts(1, 1, 16, 16, 2, variant="full_prompt")
    assert (bad(x[:1], r[:1]) - x[:1])[..., 2:14, 2:14].abs().sum() > 0


def test_meta_copy_and_vector_round_trip():
    meta, p = PadPrompts(1, 1, 8, 8, 2), PadPrompts(4, 1, 8, 8, 2)
    p.load_from(meta)
    assert torch.equal(p.assemble(), meta.assemble().expand(4, -1, -1, -1))
    v = torch.randn_like(prompt_vector(p))
    set_prompt_vector(p, v)
    assert torch.equal(prompt_vector(p), v)


def test_clusters_routing_and_threshold():
    g = torch.Generator().manual_seed(0)
    u = torch.cat([torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g) + 20])
    lab, protos = diversity_clusters(u, cluster_threshold(u, 60))
    assert len(protos) == 2 and torch.equal(route(u, protos), lab)
    assert torch.allclose(protos[lab[0]], u[lab == lab[0]].mean(0))
    lab1, _ = diversity_clusters(u, 1e9)
    assert int(lab1.max()) == 0  # huge threshold → M = 1 (= VP)


def test_active_neurons_and_reptile():
    w = torch.zeros(5, 3 * 4)
    w[torch.arange(5), torch.arange(5)] = torch.tensor([1.0, 5.0, 3.0, 0.5, 4.0])
    fn = lambda x: x.flatten(1) @ w.T  # noqa: E731
    idx = active_neurons(fn, 3, (3, 2, 2), torch.Generator().manual_seed(0), n=4096)
    assert idx.tolist() == [1, 4, 2]
    with pytest.raises(ConfigError):
        active_neurons(fn, 6, (3, 2, 2), torch.Generator().manual_seed(0))
    th, ph = torch.zeros(1, 3), torch.tensor([[1.0, 2, 3], [3, 2, 1]])
    assert torch.allclose(reptile_update(th, ph, 0.5), torch.tensor([[1.0, 1, 1]]))
    assert not torch.allclose(reptile_update(th, ph, 0.5, "reptile_sign"), torch.tensor([[1.0, 1, 1]]))


def test_diverse_digits_domains():
    t = diverse_digits(0)
    assert t.train.x.shape[1:] == (1, 16, 16)
    assert torch.bincount(t.train.domain).min() >= len(t.train.y) // 4 - 1
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(transform(x, "invert", torch.Generator()), 1 - x)
    assert set(t.sources) == {"blur", "translate", "saltpepper"}


def test_smoke_claims_and_teeth(tmp_path):
    from suite import runner

    bad = runner.execute(runner.RunSpec("dam_vp", "smoke", 0, overrides=("variant=reptile_sign",)), tmp_path,
                         device="cpu")
    assert bad["status"] == "ok"
    assert bad["claims"]["reptile-update"]["verdict"] == "fails"
    assert bad["claims"]["border-only"]["verdict"] == "holds"


def test_unknown_variant():
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("dam_vp"), "smoke", ["variant=nope"])


def test_the_whole_model_moves_to_the_device():
    """Issue 16: the frozen backbone is a registered module of ``Prompted``, so ``.to(device)`` moves all
    of it (a lambda head once left it behind on the CPU). The meta device stands in for a GPU: a parameter
    or buffer left on the CPU makes the forward pass fail."""
    from reproductions.dam_vp import Backbone
    from reproductions.dam_vp.method import Frozen, Prompted

    net = Backbone(16, 10).eval()
    for active, n_out in ((None, 10), (torch.tensor([1, 3]), 2)):
        model = Prompted(PadPrompts(2, 1, 16, 16, 2), Frozen(net, active)).to("meta")
        assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
        x, r = torch.zeros(4, 1, 16, 16, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
        assert model(x, r).shape == (4, n_out)

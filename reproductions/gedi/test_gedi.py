"""gedi: the objective's pieces against direct formulas, SGLD/buffer invariants, the smoke protocol, the teeth."""
from __future__ import annotations

import math

import pytest
import torch

from reproductions.gedi import Config, run
from reproductions.gedi.data import image_view, load_task
from reproductions.gedi.method import (GEDI, ReplayBuffer, SGLDConfig, energy, invariance_loss, sgld,
                                       uniformity_loss, usage_stats)
from suite import config as suite_config, registry
from suite.context import for_tests
from suite.models import MLP


def test_energy_is_negative_logsumexp():
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = -torch.log(torch.exp(logits).sum(1))
    assert torch.allclose(energy(logits), ref, atol=1e-12)
    assert torch.allclose(energy(logits, "energy_sign"), -ref, atol=1e-12)


@pytest.mark.parametrize("kind", ["kl_u_p", "kl_p_u"])
def test_uniformity_zero_iff_uniform(kind):
    assert float(uniformity_loss(torch.full((4,), 0.25), kind)) == pytest.approx(0.0, abs=1e-7)
    for p in ([0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.5, 0.0], [1.0, 0, 0, 0]):
        assert float(uniformity_loss(torch.tensor(p), kind)) > 1e-3
    # KL(U‖p̄) by hand
    p = torch.tensor([0.5, 0.3, 0.2])
    assert float(uniformity_loss(p, "kl_u_p")) == pytest.approx(sum(math.log((1 / 3) / q) for q in p.tolist()) / 3)


def test_invariance_is_symmetric_cross_entropy():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    pa, pb = a.softmax(1), b.softmax(1)
    ref = -0.5 * ((pa * pb.log()).sum(1) + (pb * pa.log()).sum(1)).mean()
    assert float(invariance_loss(a, b)) == pytest.approx(float(ref), rel=1e-6)
    assert float(invariance_loss(a, b)) == pytest.approx(float(invariance_loss(b, a)), rel=1e-6)
    # identical confident views: the minimum (entropy → 0); a collapsed batch also satisfies it (why L_UNIF exists)
    conf = torch.tensor([[20.0, 0.0, 0.0]]).repeat(4, 1)
    assert float(invariance_loss(conf, conf)) < 1e-6


def test_sgld_lowers_energy_and_stays_in_box():
    torch.manual_seed(0)
    lo, hi = -torch.ones(2), torch.ones(2)
    efn = lambda x: (x ** 2).sum(1)  # noqa: E731 - quadratic energy, minimum at 0
    x0 = torch.rand(200, 2) * 2 - 1
    x1 = sgld(efn, x0, 1, 0.1, 0.01, lo, hi)
    assert efn(x1).mean() < efn(x0).mean()
    far = sgld(lambda x: -(x ** 2).sum(1), x0, 50, 1.0, 0.01, lo, hi)  # energy pushes outwards: clamped
    assert far.abs().max() <= 1.0


def test_replay_buffer_reinit_fraction_and_write():
    torch.manual_seed(0)
    buf = ReplayBuffer(1000, -torch.ones(2), torch.ones(2))
    buf.x.zero_()
    idx, x0 = buf.draw(4000, 0.05)
    frac = float((x0.abs().sum(1) > 0).float().mean())
    assert 0.03 < frac < 0.07
    buf.write(idx[:3], torch.full((3, 2), 0.5))
    assert torch.all(buf.x[idx[:3]] == 0.5)


def test_loss_terms_follow_method():
    torch.manual_seed(0)
    task = load_task("moons", 0, n_train=64, n_test=32)
    net = MLP(2, [16], 2)
    for method, want in (("gedi", {"gen", "inv", "unif"}), ("no_gen", {"inv", "unif"}),
                         ("no_unif", {"gen", "inv"}), ("jem", {"gen"})):
        obj = GEDI(method, task.augment, task.lo, task.hi, SGLDConfig(steps=2, buffer_size=100))
        loss = obj.loss(net, task.x_train[:32])
        loss.backward()
        assert set(obj.last) == want and torch.isfinite(loss)


def test_usage_stats_and_image_view():
    h, big = usage_stats(torch.tensor([0, 0, 1, 1]), 2)
    assert h == pytest.approx(1.0) and big == 0.5
    assert usage_stats(torch.zeros(10, dtype=torch.long), 2) == (0.0, 1.0)
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    v = image_view(x)
    assert v.shape == x.shape and v.abs().max() <= 1.0


def test_smoke_protocol_and_teeth(tmp_path):
    """Spec §6 smoke assertions hold through ``run``; flipping the uniformity sign (test-only variant)
    collapses the clusters and the smoke claim fails."""
    r = registry.get("gedi")
    torch.set_num_threads(1)
    verdicts = {}
    for variant in ("paper", "unif_sign"):
        cfg = suite_config.resolve(r, "smoke", {"variant": variant})
        torch.manual_seed(0)
        out = run(cfg, for_tests("smoke", 0, tmp=tmp_path / variant))
        verdicts[variant] = {c.id: c.check(out.metrics, "smoke")["verdict"] for c in r.claims}
    assert all(v in ("holds", "not-expected") for v in verdicts["paper"].values()), verdicts["paper"]
    assert verdicts["unif_sign"]["no-cluster-collapse-smoke"] == "fails"


def test_bad_config_raises():
    from suite.errors import ConfigError

    with pytest.raises(ConfigError):
        run(Config(methods=("jem",)), for_tests("smoke", 0))


def test_mechanics_metrics_and_energy_sign_teeth():
    """The run's mechanics checks: exact energy and an SGLD drop on the paper variant; the broken energy
    sign (test-only) makes energy-is-neg-logsumexp fail."""
    from reproductions.gedi import mechanics

    torch.manual_seed(0)
    task = load_task("moons", 0, n_train=64, n_test=64)
    net = MLP(2, [32], 2)
    torch.nn.init.normal_(net.linears[-1].weight, std=2.0)
    m = mechanics(net, GEDI("gedi", task.augment, task.lo, task.hi, SGLDConfig(buffer_size=16)), task)
    assert m["energy_lse_err"] <= 1e-5 and m["sgld_energy_drop"] > 0
    bad = mechanics(net, GEDI("gedi", task.augment, task.lo, task.hi, SGLDConfig(buffer_size=16),
                              variant="energy_sign"), task)
    assert bad["energy_lse_err"] > 1e-5


def test_gen_sign_flips_only_the_generative_term():
    """The gen_sign teeth: the CD term enters the loss with the opposite sign; no_gen is untouched."""
    task = load_task("moons", 0, n_train=64, n_test=32)
    net = MLP(2, [16], 2)
    losses = {}
    for variant in ("paper", "gen_sign"):
        torch.manual_seed(0)
        obj = GEDI("gedi", task.augment, task.lo, task.hi, SGLDConfig(steps=2, buffer_size=100), variant=variant)
        losses[variant] = (float(obj.loss(net, task.x_train[:32])), obj.last)
    (lp, parts), (lb, _) = losses["paper"], losses["gen_sign"]
    assert lb == pytest.approx(lp - 2 * parts["gen"], rel=1e-5, abs=1e-6)
    for variant in ("paper", "gen_sign"):
        torch.manual_seed(0)
        obj = GEDI("no_gen", task.augment, task.lo, task.hi, SGLDConfig(steps=2, buffer_size=100), variant=variant)
        losses[variant] = float(obj.loss(net, task.x_train[:32]))
    assert losses["paper"] == losses["gen_sign"]


def test_dataset_refs_come_from_the_loaders():
    assert load_task("moons", 0, n_train=8, n_test=8).ref.as_dict() == {"name": "moons", "provenance": "stand-in"}
    assert load_task("digits", 0).ref.provenance == "stand-in"


def test_skip_gen_makes_gedi_train_as_no_gen():
    task = load_task("moons", 0, n_train=64, n_test=32)
    net = MLP(2, [16], 2)
    out = {}
    for method, variant in (("gedi", "skip_gen"), ("no_gen", "paper")):
        torch.manual_seed(0)
        obj = GEDI(method, task.augment, task.lo, task.hi, SGLDConfig(steps=2, buffer_size=100), variant=variant)
        out[method] = float(obj.loss(net, task.x_train[:32]))
        assert obj.buffer is None and set(obj.last) == {"inv", "unif"}
    assert out["gedi"] == out["no_gen"]

"""warm_start: the shrink-perturb map (exactness, per-layer noise), the stopping rule, the online protocol on
the teacher-student stand-in, a broken variant at smoke size, the smoke-scale claims and the config ranges
(the full preset is pinned to the official code by test_official_config.py)."""
from __future__ import annotations

import pytest
import torch

from suite import config, registry, runner, teeth
from suite.context import for_tests
from suite.errors import ConfigError
from suite.models import MLP, resnet18

from . import CLAIMS, SCALES, Config
from . import method as M
from .experiment import load_data, online_metrics, split_pool, teacher_student

SLUG = "warm_start"


def _cfg(**kw) -> Config:
    cfg = config.resolve(registry.get(SLUG), "smoke", [f"{k}={v}" for k, v in kw.items()])
    return cfg


# ---------------------------------------------------------------- the shrink-perturb map (paper §4)

def _make_mlp():
    return MLP(12, (16, 8), 3)


def test_shrink_perturb_endpoints_and_formula():
    torch.manual_seed(0)
    prev = _make_mlp()
    with torch.no_grad():
        for p in prev.parameters():
            p.mul_(3.0).add_(1.0)
    warm = M.shrink_perturb(prev, _make_mlp, 1.0, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(warm.parameters(), prev.parameters()))
    assert warm is not prev  # a new module: optimiser state never carries over
    torch.manual_seed(5)
    ref = _make_mlp()
    torch.manual_seed(5)
    fresh = M.shrink_perturb(prev, _make_mlp, 0.0, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), ref.parameters()))
    torch.manual_seed(9)
    noise = _make_mlp()
    torch.manual_seed(9)
    sp = M.shrink_perturb(prev, _make_mlp, 0.4, 0.1)
    for s, p, q in zip(sp.parameters(), prev.parameters(), noise.parameters()):
        assert torch.allclose(s, 0.4 * p + 0.1 * q, atol=0, rtol=0)


def test_noise_has_each_layers_init_scale_and_bn_buffers_are_fresh():
    torch.manual_seed(0)
    make = lambda: resnet18(num_classes=10, in_channels=3, width=4)  # noqa: E731
    prev = make()
    with torch.no_grad():
        for b in prev.buffers():
            if b.dtype.is_floating_point:
                b.add_(2.0)
    sp = M.shrink_perturb(prev, make, 0.0, 0.1)
    stds = [float(p.detach().std()) for p in sp.parameters() if p.dim() > 1]
    assert max(stds) / min(stds) > 3  # conv and linear layers differ in scale: not one global N(0, sigma^2)
    bn = [b for b in sp.buffers() if b.dtype.is_floating_point]
    assert all(float(b.abs().max()) <= 1.0 for b in bn)  # fresh running stats (run.py returns the new model)
    kept = M.shrink_perturb(prev, make, 0.0, 0.1, keep_buffers=True)
    assert all(torch.equal(a, b) for a, b in zip(kept.buffers(), prev.buffers()))


def test_scheme_coefficients_and_variants():
    assert M.scheme_coefficients("random", 0.4, 0.1) == (0.0, 1.0)
    assert M.scheme_coefficients("warm", 0.4, 0.1) == (1.0, 0.0)
    assert M.scheme_coefficients("shrink_perturb", 0.4, 0.1) == (0.4, 0.1)
    assert M.scheme_coefficients("shrink_perturb", 0.4, 0.1, "sp-no-shrink") == (1.0, 0.0)
    assert M.scheme_coefficients("warm", 0.4, 0.1, "warm-reinit") == (0.0, 1.0)
    assert M.scheme_coefficients("shrink_perturb", 0.4, 0.1, "sp-reinit") == (0.0, 1.0)


# ---------------------------------------------------------------- the stopping rule and the protocol

def test_train_to_accuracy_stops_at_target():
    x, y = teacher_student(400, 10, 32, 3.0, 0)
    torch.manual_seed(0)
    net = MLP(10, (128,), 10)
    cost = M.train_to_accuracy(net, x, y, lr=3e-3, batch_size=32, optimizer="adam", weight_decay=0.0,
                               target_acc=0.99, max_epochs=300, generator=torch.Generator().manual_seed(0),
                               device=torch.device("cpu"))
    assert cost.reached and cost.train_acc >= 0.99
    assert cost.steps == cost.epochs * 13  # stops at an epoch boundary (400 / 32 -> 13 batches)
    assert M.accuracy(net, x, y) >= 0.95
    # a target already met by the end of epoch 1 stops there
    cost2 = M.train_to_accuracy(net, x, y, lr=1e-4, batch_size=32, optimizer="adam", weight_decay=0.0,
                                target_acc=0.5, max_epochs=50, generator=torch.Generator().manual_seed(0),
                                device=torch.device("cpu"))
    assert cost2.epochs == 1 and cost2.steps == 13


def test_pool_and_test_split_is_two_thirds():
    pool, test = split_pool(900, torch.Generator().manual_seed(0), 0)
    assert pool.numel() == 600 and test.numel() == 300
    assert torch.equal(torch.cat([pool, test]).sort().values, torch.arange(900))


def test_broken_variants_at_smoke_size():
    """teeth at smoke size: a warm start that reinitialises costs exactly what random init costs, and a
    shrink-perturb that does not shrink is exactly the warm start (no accuracy difference)."""
    ctx = for_tests()
    good = online_metrics(_cfg(), ctx, load_data(_cfg(), ctx))
    assert good["steps_random_over_warm"] > 1.2
    cfg = _cfg(variant="warm-reinit")
    bad = online_metrics(cfg, for_tests(), load_data(cfg, ctx))
    assert bad["steps_random_over_warm"] == 1.0 and bad["acc_warm_mean"] == bad["acc_random_mean"]
    cfg = _cfg(variant="sp-no-shrink")
    bad = online_metrics(cfg, for_tests(), load_data(cfg, ctx))
    assert bad["sp_minus_warm_acc"] == 0.0 and bad["steps_sp"] == bad["steps_warm"]


# ---------------------------------------------------------------- declaration, smoke run, full preset

def test_every_paper_claim_has_teeth_from_the_variant_field():
    choices = teeth.variant_choices(registry.get(SLUG))
    for c in CLAIMS:
        if c.kind == "paper" and c.teeth:
            assert c.teeth in choices and c.teeth != "correct" and "small" in c.scales
        elif c.kind == "paper":
            assert c.scales == ("full",) and c.no_teeth
    assert set(M.VARIANTS) == set(choices)


def test_smoke_run_passes_its_claims(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    for cid, entry in rec["claims"].items():
        if "smoke" in registry.get(SLUG).claim(cid).scales:
            assert entry["verdict"] == "holds", (cid, entry)
    assert rec["dataset"]["provenance"] == "stand-in"
    m = rec["metrics"]
    for s in ("random", "warm", "sp"):
        assert m[f"steps_{s}"] > 0 and m[f"seconds_{s}"] > 0


def test_full_dry_run_builds_on_fixtures(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run", rec.get("error")


def test_full_without_data_names_the_layout(tmp_path, monkeypatch):
    from suite.errors import DataNotFoundError
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    cfg = config.resolve(registry.get(SLUG), "full")
    ctx = for_tests(scale="full", tmp=tmp_path)
    ctx.data_root = tmp_path / "empty"
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_data(cfg, ctx)


def test_config_ranges():
    r = registry.get(SLUG)
    for s in ("smoke", "small", "full"):
        config.resolve(r, s)
    for bad in ("shrink=1.5", "perturb=-0.1", "target_acc=0", "n_samples=0", "variant=broken"):
        with pytest.raises(ConfigError):
            config.resolve(r, "small", [bad])
    with pytest.raises(ConfigError, match="resnet18"):
        config.resolve(r, "smoke", ["model=resnet18"])
    assert SCALES["small"] == {} and Config().shrink == 0.4 and Config().perturb == 0.1


@pytest.mark.slow
def test_full_code_path_trains_on_the_cifar_fixture(tmp_path, monkeypatch):
    """Rehearsal: ResNet-18 on the published-format CIFAR-10 fixture, every budget cut (1 epoch per round)."""
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    cfg = config.resolve(registry.get(SLUG), "full", ["n_samples=20", "max_epochs=1"])
    ctx = for_tests(scale="full", tmp=tmp_path)
    ctx.dry_run = True  # the catalog hands a dry run the fixture; we still train on it here
    data = load_data(cfg, ctx)
    assert data.ref.provenance == "stand-in" and data.in_shape == (3, 32, 32)
    m = online_metrics(cfg, ctx, data)
    assert m["rounds"] == 2 and m["steps_warm"] == m["steps_random"] == 2
    assert 0.0 <= m["acc_sp_final"] <= 1.0

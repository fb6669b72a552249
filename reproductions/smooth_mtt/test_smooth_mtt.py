"""smooth_mtt: invariants of the method, teeth at smoke size, the pinned official full preset."""
from __future__ import annotations

import math

import pytest
import torch

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError, DataNotFoundError

from . import SCALES, Config
from . import dsa
from . import experiment as E
from . import method as M
from .data import load_digits, zca_apply, zca_fit


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    return M.ConvNetIN(1, 10, 8, 2, 8)


def test_mechanism_checks_hold():
    m = E.mechanism_metrics(Config(), "correct")
    assert m["functional_forward_err"] <= 1e-12
    assert m["match_rest_err"] <= 1e-12
    assert m["balance_factor_err"] <= 1e-12
    assert m["perturb_violations"] == 0
    assert m["loss_decay_err"] <= 1e-12
    assert m["grads_reach"] == 1.0
    assert m["gp_formula_err"] <= 1e-12


def test_loss_decay_values_and_balance_factor():
    assert M.LOSS_DECAY == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert M.balance_factor(5, 10) == pytest.approx(math.log(8, 5))
    assert M.balance_factor(0, 10) == pytest.approx(1 / math.log(13, 5))
    assert M.balance_factor(9, 10) == pytest.approx(math.log(12, 5))


def _experts(variant: str, smooth: bool, epochs: int = 3):
    data = load_digits(0, 0.3, torch.device("cpu"))
    x, y = data.x_train[:256], data.y_train[:256]
    spec = M.ExpertSpec(epochs=epochs, lr=0.01, momentum=0.9, weight_decay=1e-3, batch=64, smooth=smooth)
    net = _tiny(3)
    return M.train_expert(net, x, y, spec, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2),
                          torch.device("cpu"), variant)


def test_smooth_experts_differ_and_no_smoothing_teeth_equals_vanilla():
    van = _experts("correct", smooth=False)
    smo = _experts("correct", smooth=True)
    broken = _experts("no-smoothing", smooth=True)
    assert van.shape == (4, sum(p.numel() for p in _tiny().parameters()))
    assert torch.equal(van[0], smo[0])                    # paired: same init
    assert not torch.allclose(van[-1], smo[-1])           # the smoothing changes the trajectory
    assert torch.equal(broken, van)                       # teeth: "smooth" experts without smoothing = vanilla
    # the clipping loss halves epoch 0's gradient scale: without the GP the first step shrinks
    data = load_digits(0, 0.3, torch.device("cpu"))
    spec = M.ExpertSpec(epochs=2, lr=0.01, momentum=0.9, weight_decay=1e-3, batch=64, smooth=True, use_gp=False)
    clip = M.train_expert(_tiny(3), data.x_train[:256], data.y_train[:256], spec, torch.Generator().manual_seed(1),
                          torch.Generator().manual_seed(2), torch.device("cpu"))
    assert M.step_norms(clip)[0] < 0.8 * M.step_norms(van)[0]


def _distill(variant: str, iters: int = 8):
    data = load_digits(0, 0.3, torch.device("cpu"))
    trajs = [_experts("correct", smooth=False, epochs=4)]
    labels = torch.arange(10)
    init = data.x_train[M.random_indices(data.y_train, 1, 10, torch.Generator().manual_seed(0))]
    cfg = Config(max_start_epoch=2, iterations=iters, syn_steps=4, train_epochs=4)
    spec = E.distill_spec(cfg, ast=True, variant=variant)
    imgs, lr, st = M.distill(init, labels, trajs, spec, M.shapes_of(_tiny()), 2, torch.Generator().manual_seed(5))
    return init, imgs, lr, st


def test_distillation_lowers_matching_loss_and_teeth_break_it():
    init, imgs, lr, st = _distill("correct")
    assert not torch.equal(imgs, init) and lr.item() != 0.01
    assert st["loss_last"] < st["loss_first"]
    # teeth "no-image-update" / "ast-no-image-update": the synthetic images never move
    for v in ("no-image-update", "ast-no-image-update"):
        init_b, imgs_b, _, _ = _distill(v, iters=3)
        assert torch.equal(imgs_b, init_b)
    # teeth "matching-sign-flipped" (every arm) / "ast-sign-flipped" (the AST arms): ascending the matching loss
    for v in ("matching-sign-flipped", "ast-sign-flipped"):
        _, _, _, st_b = _distill(v)
        assert st_b["loss_last"] > st_b["loss_first"]
    cfg = Config()
    assert E.distill_spec(cfg, ast=False, variant="ast-sign-flipped").sign == 1.0
    assert E.distill_spec(cfg, ast=False, variant="ast-no-image-update").update_images


def test_representative_init_picks_nearest_to_centroid():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 4, generator=g)
    y = torch.arange(60) % 3
    idx = M.representative_indices(logits, y, 1, 3, g)
    for c in range(3):
        pool = (y == c).nonzero().flatten()
        mean = logits[pool].mean(0)
        want = pool[(logits[pool] - mean).norm(dim=1).argmin()]
        assert idx[c] == want and y[idx[c]] == c
    idx2 = M.representative_indices(logits, y, 4, 3, g)
    assert idx2.shape == (12,) and (y[idx2] == torch.arange(3).repeat_interleave(4)).all()


def test_dsa_shapes_grads_and_bad_strategy():
    x = torch.randn(5, 3, 8, 8, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    for fam in dsa.FAMILIES:
        out = dsa.augment(x, fam, g)
        assert out.shape == x.shape
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None
    assert dsa.augment(x, "none", g) is x
    with pytest.raises(ValueError):
        dsa.parse("color_warp")


def test_zca_whitens():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 2, 3, 3, generator=g) @ torch.eye(3) * torch.tensor([1.0, 3.0, 0.5])
    mean, w = zca_fit(x, eps=1e-6)
    z = zca_apply(x, mean, w).flatten(1)
    cov = z.T @ z / (z.shape[0] - 1)
    assert torch.allclose(cov, torch.eye(18), atol=2e-2)


@pytest.mark.parametrize("override", ["lr_img=0", "max_start_epoch=40", "distill_dsa=color_warp", "ipcs=0",
                                      "expert_epochs=20"])
def test_bad_config_is_one_line_error(override):
    with pytest.raises(ConfigError) as exc:
        config.resolve(registry.get("smooth_mtt"), "small", [override])
    assert "\n" not in str(exc.value)


def test_full_without_data_is_one_line_error(monkeypatch):
    monkeypatch.delenv("SUITE_DATA", raising=False)
    from .data import load_cifar10
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar10(for_tests("full"), torch.device("cpu"))
    assert "cifar-10-batches-py" in str(exc.value) and "\n" not in str(exc.value)


def test_small_preset_is_the_spec_protocol_shrunk():
    cfg = config.resolve(registry.get("smooth_mtt"), "small")
    assert (cfg.syn_steps, cfg.expert_epochs, cfg.max_start_epoch, cfg.lr_img, cfg.lr_lr) == (10, 2, 10, 100.0, 1e-5)
    assert cfg.ipcs == (1,) and cfg.width == 32 and cfg.depth == 2 and SCALES["small"] == {}


# ---- the official optimiser protocol (README table rows "optimiser at the lr decay", "evaluation momentum",
#      "evaluation epochs"): buffer.py / utils.py re-create the optimiser at the lr decay. Reference loops written
#      from the official code (read, not copied), in float64 with one batch per epoch so the data order is moot.

def _sgd_reference(net, x, y, passes, decay_after_index, lr, gamma, mom, mom_decay, wd, snaps=None):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    for ep in range(passes):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if snaps is not None:
            snaps.append(M.flat_params(net))
        if ep == decay_after_index:          # `if ep in lr_schedule`: lr decays and a new optimiser starts
            lr *= gamma
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=mom_decay, weight_decay=wd)


def test_evaluation_follows_official_evaluate_synset():
    """E + 1 passes (ep = 0..E); after ep = E//2+1: lr x 0.5 and a fresh SGD with momentum 0.8."""
    data = load_digits(0, 0.3, torch.device("cpu"))
    x = data.x_train[M.random_indices(data.y_train, 2, 10, torch.Generator().manual_seed(0))].double()
    y = torch.arange(10).repeat_interleave(2)
    net = _tiny(4).double()
    ref = _tiny(4).double()
    E_, lr = 6, 0.05
    M.evaluate_synset(x, y, lr, lambda: net, data.x_test.double(), data.y_test, E_, 256, 0.9, 1e-3, "none",
                      torch.Generator().manual_seed(0), torch.device("cpu"), momentum_decay=0.8)
    _sgd_reference(ref, x, y, E_ + 1, E_ // 2 + 1, lr, 0.5, 0.9, 0.8, 1e-3)
    assert torch.allclose(M.flat_params(net), M.flat_params(ref), rtol=0, atol=1e-10)


def test_expert_lr_decay_recreates_the_optimiser():
    """buffer.py: E epochs; after epoch E//2+1 lr x 0.6 and a fresh SGD (momentum buffer dropped)."""
    data = load_digits(0, 0.3, torch.device("cpu"))
    x, y = data.x_train[:48].double(), data.y_train[:48]
    E_ = 6
    spec = M.ExpertSpec(epochs=E_, lr=0.05, momentum=0.9, weight_decay=1e-3, batch=64, smooth=False)
    traj = M.train_expert(_tiny(5).double(), x, y, spec, torch.Generator().manual_seed(1),
                          torch.Generator().manual_seed(2), torch.device("cpu"))
    ref = _tiny(5).double()
    snaps = [M.flat_params(ref)]
    _sgd_reference(ref, x, y, E_, E_ // 2 + 1, 0.05, 0.6, 0.9, 0.9, 1e-3, snaps)
    assert traj.shape == (E_ + 1, snaps[0].numel())
    assert torch.allclose(traj, torch.stack(snaps), rtol=0, atol=1e-10)

"""gg_priors: GG sampler / estimator / init, RF8 codec and bound, DeepShape, BackSlash, teeth."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError
from suite.models import MLP, TransformerLM

from reproductions.gg_priors import CLAIMS, SCALES, Config, run
from reproductions.gg_priors import codecs as K
from reproductions.gg_priors import gg
from reproductions.gg_priors.experiment import deepshape_checks, rf8_checks
from reproductions.gg_priors.method import backslash_step_, deepshape_, rank_violations, target_counts

torch.set_num_threads(1)


def claim(cid: str):
    return next(c for c in CLAIMS if c.id == cid)


# --------------------------------------------------------------------------- GG law

@pytest.mark.parametrize("nu", [0.5, 1.0, 2.0])
def test_gg_sampler_variance_and_shape(nu):
    g = torch.Generator().manual_seed(1)
    x = gg.sample((200_000,), nu, gg.beta_for_std(math.sqrt(2 / 64), nu), g)
    assert abs(float(x.double().var()) / (2 / 64) - 1) < 0.03
    assert abs(gg.estimate(x)[1] - nu) <= 0.05


def test_shape_estimator_on_laplace_and_gaussian():
    torch.manual_seed(0)
    assert abs(gg.estimate(torch.distributions.Laplace(0.0, 1.0).sample((200_000,)))[1] - 1.0) <= 0.05
    assert abs(gg.estimate(torch.randn(200_000))[1] - 2.0) <= 0.05
    with pytest.raises(ConfigError):
        gg.estimate(torch.zeros(10))


def test_rho_table_is_monotone_and_matches_known_values():
    assert (torch.from_numpy(gg.RHO_TABLE).diff() < 0).all()  # rho decreases in nu: lookup is unique
    assert abs(float(gg.rho_of_nu(2.0)) - math.pi / 2) < 1e-12  # Gaussian: E x^2 / (E|x|)^2 = pi/2
    assert abs(float(gg.rho_of_nu(1.0)) - 2.0) < 1e-12  # Laplace


def test_gg_density_integrates_to_one_and_has_the_variance():
    x = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    for nu in (0.8, 1.5, 2.5):
        beta = gg.beta_for_std(1.3, nu)
        p = gg.log_density(x, 0.0, nu, beta).exp()
        dx = float(x[1] - x[0])
        assert abs(float(p.sum()) * dx - 1) < 1e-4
        assert abs(float((p * x * x).sum()) * dx - 1.69) < 1e-3


def test_gg_init_fan_in_variance_norms_and_biases():
    torch.manual_seed(0)
    net = TransformerLM(20, max_len=16, dim=64, depth=1, heads=4)
    emb_before = net.pos_emb.weight.clone()
    gg.gg_init_(net, 1.0, 1.0, torch.Generator().manual_seed(0), embeddings=False)
    assert torch.equal(net.pos_emb.weight, emb_before)  # embeddings left alone when asked
    fc1 = net.blocks[0].mlp.fc1  # (256, 64): fan_in 64
    assert abs(float(fc1.weight.detach().var()) * 64 - 1) < 0.1
    assert (net.blocks[0].norm1.weight == 1).all() and (fc1.bias == 0).all()
    mlp = MLP(64, (256,), 10)
    gg.gg_init_(mlp, 1.5, 2.0, torch.Generator().manual_seed(0), fan_mode="out")
    assert abs(float(mlp.linears[0].weight.detach().var()) * 256 / 2 - 1) < 0.1  # reference's fan = shape[0]


# --------------------------------------------------------------------------- RF8

def test_rf8_bound_exactness_two_digits_and_codec():
    m = rf8_checks("paper")
    assert m["rf8_max_rel_err"] <= 0.11  # measured 0.1082 (frozen bound in the claim: 1/8)
    assert m["rf8_exact_two_term_err"] == 0.0 and m["rf8_max_signed_digits"] <= 2
    assert m["rf8_codec_mismatch"] == 0.0


def test_rf8_zero_and_codes_are_bytes():
    w = torch.tensor([0.0, 1.0, -0.75, 3.0, 1e-12, -2.0 ** -5 - 2.0 ** -9])
    code, emax = K.rf8_encode(w)
    assert code.dtype == torch.uint8 and emax == 2  # 3.0 -> leading 4 = 2^2
    dec = K.rf8_decode(code, emax)
    assert dec[0] == 0 and dec[4] == 0  # zero and underflow
    assert torch.equal(dec[[1, 2, 3, 5]], w[[1, 2, 3, 5]])
    assert not torch.isnan(K.rf8_value(torch.zeros(3))).any()


def test_signed_digits():
    v = torch.tensor([0.0, 1.0, 3.0, 7.0, 11.0, 0.75, 2.0 ** -20 + 2.0 ** -24])
    assert K.signed_digits(v).tolist() == [0, 1, 2, 2, 3, 2, 2]


def test_8bit_baselines_are_8bit():
    x = torch.randn(10_000)
    assert torch.unique(K.fake_quant(x, "int8")).numel() <= 255
    for f in ("fp8_e4m3", "fp8_e5m2", "rf8"):
        assert torch.unique(K.fake_quant(x, f)).numel() <= 256
        assert float(((K.fake_quant(x, f) - x).abs() / x.abs()).median()) < 0.1
    with pytest.raises(Exception):
        K.fake_quant(x, "fp4")


def test_coding_rate_metrics():
    x = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert K.entropy_bits(x, 1.0) == pytest.approx(1.0)
    assert K.exp_golomb_bits(torch.zeros(5), 1.0) == 1.0  # EG0 of 0 is one bit
    assert K.zero_fraction(x, 1.0) == 0.5


# --------------------------------------------------------------------------- DeepShape / BackSlash

def _trained_like_mlp(seed: int = 0) -> nn.Module:
    net = MLP(64, (128,), 10)
    gg.gg_init_(net, 1.5, 2.0, torch.Generator().manual_seed(seed))
    return net


def test_deepshape_preserves_ranks_sharpens_and_lowers_entropy():
    cfg = Config(**SCALES["smoke"])
    m = deepshape_checks(_trained_like_mlp(), cfg, "paper")
    assert m["deepshape_rank_violations"] == 0
    assert m["deepshape_nu_after"] < m["deepshape_nu_before"]
    assert m["deepshape_entropy_after"] < m["deepshape_entropy_before"]
    assert m["deepshape_central_frac"] > 0.5


def test_deepshape_unsorted_breaks_ranks():
    m = deepshape_checks(_trained_like_mlp(), Config(**SCALES["smoke"]), "deepshape-unsorted")
    assert m["deepshape_rank_violations"] > 0


def test_target_counts_sum_exactly():
    lv = torch.arange(-50, 51)
    c = target_counts(lv, 0.0, 1.0, 10.0, 12345)
    assert int(c.sum()) == 12345 and int(c.argmax()) == 50


def test_deepshape_target_shape_is_reached():
    net = _trained_like_mlp(1)
    info = deepshape_(net, 0.8, 0.6, 20, 8)
    x = torch.cat([p.detach().flatten() for p in net.parameters()])
    nu_after = gg.estimate(x[(x / 2 ** -8).round().abs() <= info["qmax"]])[1]
    assert abs(nu_after - info["nu_target"]) < 0.15


def test_backslash_step_shrinks_toward_zero():
    net = _trained_like_mlp(2)
    before = [p.detach().clone() for p in net.parameters()]
    nu = backslash_step_(net, lam=50.0)
    assert 0.1 <= nu <= 3.0
    for b, p in zip(before, net.parameters()):
        moved = (p.detach() - b)
        assert (moved * torch.sign(b) <= 0).all()  # every nonzero weight moves toward zero


def test_rank_violations_counts():
    a = torch.tensor([0.1, 0.3, 0.2])
    assert rank_violations(a, a * 2) == 0 and rank_violations(a, -a) == 2


# --------------------------------------------------------------------------- run + teeth

def test_teeth_rf8_floor_breaks_the_error_bound():
    m = rf8_checks("rf8-floor")
    assert claim("M-rf8-bound").check(m, "smoke")["verdict"] == "fails"


def test_teeth_unsorted_deepshape_fails_rank_claim_through_run():
    cfg = Config(**{**SCALES["smoke"], "variant": "deepshape-unsorted", "epochs": 1, "bs_epochs": 1,
                    "ft_epochs": 1, "n_draws": 20_000})
    m = run(cfg, for_tests("smoke", 0)).metrics
    assert claim("M-deepshape-ranks").check(m, "smoke")["verdict"] == "fails"
    assert claim("M-rf8-bound").check(m, "smoke")["verdict"] == "holds"


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("gg_priors"), "smoke", ["variant=nope"])
    with pytest.raises(ConfigError, match="pipeline_nu=1.5 must be one of nus"):  # smoke nus are 1, 2
        config.resolve(registry.get("gg_priors"), "smoke", ["pipeline_nu=1.5"])
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("gg_priors"), "smoke", ["fan_mode=sideways"])


@pytest.mark.slow
def test_small_scale_claims_seed0():
    m = run(Config(**SCALES["small"]), for_tests("small", 0)).metrics
    for c in CLAIMS:
        assert c.check(m, "small")["verdict"] == "holds", (c.id, c.check(m, "small"))

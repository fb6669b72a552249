"""Tests of the BiBench reproduction: operators (forward values, backward surrogates), drop-in
binarization, epoch hooks, complexity formulas with hand counts, the micro-benchmark kernel, corruptions,
the claims checked by ``run`` and the teeth (broken variants make claims fail)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from reproductions.bibench import BiBenchConfig, CLAIMS, SMOKE, SMALL, run
from reproductions.bibench.checks import toy_model
from reproductions.bibench.complexity import complexity, count
from reproductions.bibench.corruptions import CORRUPTIONS, corrupt
from reproductions.bibench.experiment import Bench, load, quadratic_mean
from reproductions.bibench.hardware import pack_pm1, xnor_popcount_matmul
from reproductions.bibench.layers import (ALGO_NAMES, BinaryConv2d, BinaryLinear, BinaryOptions, binary_layers,
                                          update_epoch)
from reproductions.bibench.models import binarizable, binarize, build
from reproductions.bibench.quantizers import binary_sign, fda_series, sign_pm
from suite.context import for_tests
from suite.errors import UnknownNameError

torch.set_num_threads(1)


def _x() -> torch.Tensor:
    return torch.tensor([-2.0, -1.0, -0.75, -0.5, -1e-3, 0.0, 1e-3, 0.3, 0.99, 1.0, 1.01, 3.0])


def _grad(kind: str, x: torch.Tensor, n: int = 9) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    binary_sign(x, kind, n).sum().backward()
    return x.grad


# ---------------------------------------------------------------- quantizers

def test_sign_zero_is_plus_one_and_two_valued():
    y = sign_pm(_x())
    assert set(y.tolist()) == {-1.0, 1.0}
    assert y[_x() == 0].item() == 1.0


def test_bnn_clip_ste_gradient_is_indicator():
    x = _x()
    assert torch.equal(_grad("clip", x), (x.abs() <= 1).float())  # includes |x| = 1 exactly


def test_approxsign_gradient_hand_values():
    g = _grad("approx", _x())
    want = [0, 0, 0.5, 1.0, 2 - 2e-3, 2.0, 2 - 2e-3, 1.4, 0.02, 0, 0, 0]
    assert torch.allclose(g, torch.tensor(want), atol=1e-5)


def test_fda_gradient_is_derivative_of_fourier_sign_and_peaked():
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64).requires_grad_(True)
    fda_series(x, 9).sum().backward()
    g = _grad("fda", x.detach())
    assert torch.allclose(g, x.grad, atol=1e-10)  # inside |x| <= 1 the backward is d S_9 / dx
    assert torch.allclose(g, g.flip(0), atol=1e-12) and int(g.argmax()) == 1000  # symmetric, peak at 0
    outside = _grad("fda", torch.tensor([1.5, -2.0]))
    assert torch.equal(outside, torch.zeros(2))  # BiBench truncation


def test_backward_does_not_modify_incoming_gradient():
    x = _x().requires_grad_(True)
    y = binary_sign(x, "clip")
    g = torch.ones_like(y)
    y.backward(g)
    assert torch.equal(g, torch.ones_like(y))


# ---------------------------------------------------------------- operators

@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_every_operator_deploys_two_values_per_channel_and_trains(algo):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=False)
    layer = BinaryConv2d.from_float(conv, algo)
    w = layer.binary_weight().flatten(1)
    for row in w:
        vals = torch.unique(row)
        assert len(vals) == 2 and torch.isclose(vals[0], -vals[1])
    x = torch.randn(4, 5, 6, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (4, 7, 6, 6)
    y.square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_xnor_alpha_and_activation_scale():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    layer = BinaryConv2d.from_float(conv, "xnor").eval()
    alpha = conv.weight.detach().abs().mean((1, 2, 3))
    assert torch.allclose(layer.binary_weight().abs().amax((1, 2, 3)), alpha)
    x = torch.randn(2, 3, 5, 5)
    # paper K: mean_c |x| averaged over each 3x3 window (zero padded) multiplies the binary conv
    k = torch.nn.functional.avg_pool2d(x.abs().mean(1, keepdim=True), 3, 1, 1, count_include_pad=True)
    want = torch.nn.functional.conv2d(sign_pm(x), sign_pm(conv.weight) * alpha.view(-1, 1, 1, 1), padding=1) * k
    assert torch.allclose(layer(x), want, atol=1e-5)


def test_dorefa_layer_scale_option_and_linear_ops():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    layer = BinaryLinear.from_float(lin, "dorefa", BinaryOptions(dorefa_scale="layer"))
    assert torch.allclose(layer.binary_weight().abs(), lin.weight.abs().mean().expand(3, 6))
    x = torch.randn(5, 6)
    assert torch.allclose(layer(x), sign_pm(x) @ layer.binary_weight().T + lin.bias, atol=1e-6)


def test_xnorpp_gamma_is_cropped_and_learnable():
    layer = BinaryConv2d.from_float(nn.Conv2d(2, 3, 3, padding=1, bias=False), "xnorpp")
    assert layer.h_scale.shape[2] == 2000  # BiBench fixed-length vectors, cropped to the feature map
    layer(torch.randn(2, 2, 5, 7)).sum().backward()
    assert layer.h_scale.grad[0, 0, :5].abs().sum() > 0 and layer.h_scale.grad[0, 0, 5:].abs().sum() == 0
    assert layer.o_scale.grad.abs().sum() > 0 and layer.w_scale.grad[0, 0, 0, :7].abs().sum() > 0


def test_react_shift_moves_the_threshold():
    layer = BinaryConv2d.from_float(nn.Conv2d(1, 1, 1, bias=False), "react").eval()
    with torch.no_grad():
        layer.act_shift.fill_(0.5)
    a = layer.quantize_act(torch.tensor([-0.6, -0.4, 0.2]).view(1, 1, 1, 3))
    assert a.flatten().tolist() == [-1.0, 1.0, 1.0]


def test_recu_weights_clamped_at_q_tau():
    torch.manual_seed(0)
    layer = BinaryConv2d.from_float(nn.Conv2d(8, 4, 3, bias=False), "recu")
    w2 = layer._recu_weight().detach()
    w = layer.weight.detach()
    # BiBench recu.py: w1 = w0 / (sqrt(var + 1e-5) / 2 / sqrt(2)) (issue 17; unit variance before)
    w1 = (w - w.mean((1, 2, 3), keepdim=True)) / (torch.sqrt(w.var((1, 2, 3), keepdim=True) + 1e-5) / 2 / math.sqrt(2))
    q = -w1.abs().mean() * math.log(2 - 2 * 0.85)
    assert torch.allclose(w2.abs().max(), q, atol=1e-5) and torch.allclose(w2, w1.clamp(-q, q), atol=1e-6)


def test_epoch_hook_schedules():
    m = binarize(build("digits_cnn", 10, 1, 8), "recu")
    update_epoch(m, 0, 10)
    taus = [float(l.tau) for _, l in binary_layers(m)]
    assert all(abs(t - 0.85) < 1e-6 for t in taus)
    update_epoch(m, 10, 10)
    assert all(abs(float(l.tau) - 0.99) < 1e-6 for _, l in binary_layers(m))
    f = binarize(build("digits_cnn", 10, 1, 8), "fda")
    update_epoch(f, 0, 10)
    l0 = next(l for _, l in binary_layers(f))
    assert int(l0.fda_n) == 9 and abs(float(l0.fda_alpha) - 0.05 * (1 + math.cos(math.pi / 10))) < 1e-6
    update_epoch(f, 9, 10)
    assert int(l0.fda_n) == 17 and abs(float(l0.fda_alpha)) < 1e-6


# ---------------------------------------------------------------- drop-in binarization

def test_binarize_keeps_first_last_and_downsample_fp():
    m = build("resnet18", 10, 3, 32)
    names = binarizable(m)
    convs = [n for n, x in m.named_modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    assert convs[0] not in names and convs[-1] not in names and len(names) == 16
    assert not any(".proj." in f".{n}." for n in names)
    b = binarize(m, "bireal")
    assert isinstance(b.stem[0], nn.Conv2d) and not isinstance(b.stem[0], BinaryConv2d)
    assert type(b.fc) is nn.Linear and len(list(binary_layers(b))) == 16
    assert torch.equal(b.blocks[0].conv1.weight, m.blocks[0].conv1.weight)  # pretrained FP weights copied
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(binarizable(m, binarize_downsample=True)) == 19


def test_binarized_resnets_use_hardtanh():
    m = build("resnet20", 10, 3, 32).eval()
    x = torch.randn(2, 3, 32, 32) * 10
    out = m.blocks[0](torch.relu(m.bn(m.conv(x))))
    assert out.min() >= -1 and out.max() <= 1 and out.min() < 0  # Hardtanh, not ReLU


def test_unknown_algorithm_raises():
    with pytest.raises(UnknownNameError):
        binarize(build("digits_cnn", 10, 1, 8), "xnor2")


# ---------------------------------------------------------------- complexity

def test_toy_model_counts_match_hand_computation():
    mc = count(toy_model(), (1, 8, 8))
    assert (mc.total_params, mc.binary_params) == (5478, 288)
    assert (mc.total_flops, mc.binary_flops) == (26624, 18432)
    assert complexity(mc, "bnn").rc == pytest.approx(5478 / 5199, rel=1e-12)
    assert complexity(mc, "bnn").rs == pytest.approx(26624 / 8480, rel=1e-12)
    assert complexity(mc, "xnor").rs == pytest.approx(26624 / (8480 + 256 + 576 + 512 + 512), rel=1e-12)
    assert complexity(mc, "react").rs == pytest.approx(26624 / (8480 + 256 + 512), rel=1e-12)
    assert complexity(mc, "xnorpp").rs == pytest.approx(26624 / (8480 + 3 * 512), rel=1e-12)


def test_resnet18_imagenet_in_paper_range():
    mc = count(build("resnet18_imagenet", 1000, 3, 224), (3, 224, 224))
    assert mc.total_params == 11_689_512
    assert 1.8e9 < mc.total_flops < 1.83e9  # 1.81 GMACs + BN
    c = complexity(mc, "bnn")
    assert 10 <= c.rc <= 14 and 10 <= c.rs <= 14
    assert complexity(mc, "xnor").rs < c.rs and complexity(mc, "recu").rs < c.rs


# ---------------------------------------------------------------- hardware, corruptions, data

def test_xnor_popcount_matches_float_for_ragged_k():
    rng = np.random.default_rng(0)
    a = np.where(rng.random((5, 100)) < 0.5, -1.0, 1.0)
    b = np.where(rng.random((7, 100)) < 0.5, -1.0, 1.0)
    got = xnor_popcount_matmul(pack_pm1(a), pack_pm1(b), 100, block=2)
    assert np.array_equal(got, (a @ b.T).astype(np.int32))
    c = np.ones((3, 128))
    assert c.astype(np.float32).nbytes / pack_pm1(c).nbytes == 32  # 1 bit per weight vs 32


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_keep_range_and_grow_with_severity(kind):
    x = torch.rand(8, 1, 8, 8)
    d = [float((corrupt(x, kind, s, torch.Generator().manual_seed(0)) - x).abs().mean()) for s in (1, 3, 5)]
    y = corrupt(x, kind, 5, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert d[0] < d[1] < d[2]


def test_digits_split_and_quadratic_mean():
    d = load("digits", for_tests())
    assert (len(d.y_train), len(d.y_test)) == (1437, 360) and d.ref.provenance == "stand-in"
    assert quadratic_mean([3.0, 4.0]) == pytest.approx(math.sqrt(12.5))


def test_fda_noise_modules_get_gradient_in_training():
    cfg = dataclasses.replace(BiBenchConfig(**SMOKE), algorithms=("fda",), archs=("digits_cnn",))
    ctx = for_tests()
    bench = Bench(cfg, ctx, load("digits", ctx), BinaryOptions())
    m = binarize(bench.new("digits_cnn"), "fda")
    update_epoch(m, 0, 4)
    torch.nn.functional.cross_entropy(m(bench.xtr[:16]), bench.ytr[:16]).backward()
    layer = next(l for _, l in binary_layers(m))
    assert layer.weight_noise.fc1.weight.grad.abs().sum() > 0 and layer.act_noise.fc2.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- run, claims, teeth

def _quick(**kw) -> BiBenchConfig:
    base = dict(SMOKE, algorithms=("bnn",), archs=("digits_cnn",), fp_epochs=1, bin_epochs=1, hyper_settings=(),
                complexity_archs=("resnet18_imagenet",))
    base.update(kw)
    return BiBenchConfig(**base)


def _verdicts(cfg: BiBenchConfig, scale: str = "smoke") -> dict[str, str]:
    out = run(cfg, for_tests(scale, dry_run=True))  # the smoke claims need no training (contract test trains)
    return {c.id: c.check(out.metrics, scale)["verdict"] for c in CLAIMS}


def test_smoke_claims_hold_for_the_paper_variant():
    v = _verdicts(_quick())
    smoke_ids = [c.id for c in CLAIMS if "smoke" in c.scales]
    assert all(v[i] == "holds" for i in smoke_ids), v


def test_teeth_identity_ste_breaks_gradient_claims():
    v = _verdicts(_quick(variant="identity_ste"))
    assert v["act-grad-surrogates"] == "fails" and v["weight-grad-surrogates"] == "fails"
    assert v["xnor-alpha"] == "holds"  # forward untouched


def test_teeth_full_cost_binary_ops_break_the_low_range_claims():
    v = _verdicts(_quick(variant="fp_binary_count"))
    assert v["resnet18-speedup-low"] == "fails" and v["toy-speedup"] == "fails"
    assert v["resnet18-compression-low"] == "fails" and v["toy-compression"] == "fails"


def test_teeth_binarized_first_last_layers_break_the_high_range_claims():
    v = _verdicts(_quick(variant="binarize_first_last"))
    assert v["resnet18-speedup-high"] == "fails" and v["resnet18-compression-high"] == "fails"
    assert v["toy-speedup"] == "holds"  # the toy count keeps its own layer split


def test_flipped_soft_grad_negates_only_the_soft_surrogates():
    from reproductions.bibench.quantizers import surrogate_grad
    x = torch.linspace(-1.5, 1.5, 31)
    assert torch.equal(surrogate_grad(x, "approx_neg"), -surrogate_grad(x, "approx"))
    opts = BinaryOptions(variant="flipped_soft_grad")
    assert BinaryConv2d(4, 4, 3, algo="bireal", opts=opts)._agrad() == "approx_neg"
    assert BinaryConv2d(4, 4, 3, algo="bnn", opts=opts)._agrad() == "clip"


@pytest.mark.slow
def test_small_scale_assertions_spec6():
    """Spec §6 small: all eight binarized models < FP and > 50% (one seed). The spec's third small assertion,
    soft group >= BNN (claim soft-group-beats-bnn), is not asserted: it fails on published seeds 0 and 1 (seed 0:
    0.932 vs 0.933), a negative result the README reports; the leaderboard reads it from the records."""
    cfg = BiBenchConfig(**dict(SMALL, archs=("digits_cnn",), hyper_settings=()))
    out = run(cfg, for_tests("small"))
    m = out.metrics
    assert m["acc_bi_max"] <= m["acc/fp"] and m["acc_bi_min"] > 0.5


def test_accuracy_ratio_with_an_fp_model_at_zero():
    """A_bi / A_fp never raises: FP at 0 % gives inf (binarized above 0) or nan (0 / 0, skipped by the mean)."""
    from reproductions.bibench.experiment import quadratic_mean, ratio
    assert ratio(0.5, 0.25) == 2.0
    assert ratio(0.1, 0.0) == math.inf and math.isnan(ratio(0.0, 0.0))
    assert quadratic_mean([ratio(0.0, 0.0), 3.0, 4.0]) == math.sqrt(12.5)


def test_step_clock_travels_in_the_checkpoint():
    """OM_train's time per step survives a resume: the clock's state is restored, not restarted at zero."""
    from reproductions.bibench.experiment import StepClock
    a = StepClock()
    a.tick()
    a.tick()
    b = StepClock()
    b.load_state_dict(a.state_dict())
    assert b.steps == 2 and b.per_step == a.per_step > 0

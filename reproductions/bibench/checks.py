"""Exact operator checks measured in every run (spec §6 smoke): backward surrogates, forward values,
the FDA Fourier surrogate's shape, and the complexity formulas on a toy model with hand-computed counts.

The expected gradients below are written from the spec's equations, independently of
``layers.ALGORITHMS``, so a wrong surrogate in an operator shows as a non-zero error.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from reproductions.bibench.complexity import complexity, count
from reproductions.bibench.layers import ALGO_NAMES, BinaryConv2d, BinaryOptions
from reproductions.bibench.quantizers import binary_sign, fda_series, fda_series_grad, surrogate_grad

Grad = Callable[[torch.Tensor], torch.Tensor]
_clip: Grad = lambda x: (x.abs() <= 1).double()  # noqa: E731  BNN clip-STE, 1[|x| <= 1]
_approx: Grad = lambda x: torch.clamp(2 - 2 * x.abs(), min=0)  # noqa: E731  ApproxSign / ReCU (2 - |2x|)+
_ident: Grad = lambda x: torch.ones_like(x)  # noqa: E731


def _fourier(n: int) -> Grad:  # FDA: (4w/pi) sum_{i<=n} cos((2i+1) w x), zero outside |x| <= 1 (BiBench)
    w = 0.1
    return lambda x: sum(torch.cos((2 * i + 1) * w * x) for i in range(n + 1)) * 4 * w / math.pi * (x.abs() <= 1)


EXPECTED_ACT_GRAD: dict[str, Grad] = {"bnn": _clip, "xnor": _clip, "dorefa": _clip, "bireal": _approx,
                                      "xnorpp": _clip, "react": _approx, "recu": _approx, "fda": _fourier(9)}
EXPECTED_WEIGHT_GRAD: dict[str, Grad] = {"bnn": _clip, "xnor": _clip, "dorefa": _clip, "bireal": _clip,
                                         "xnorpp": _clip, "react": _clip, "fda": _fourier(9)}  # ReCU: below


def grid() -> torch.Tensor:
    """-2 .. 2 in steps of 1e-3, hitting -1, 0 and +1 exactly."""
    return torch.arange(-2000, 2001, dtype=torch.float64) / 1000


def _layer(algo: str, opts: BinaryOptions, c_in: int = 1, c_out: int = 1, k: int = 1,
           seed: int = 0) -> BinaryConv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False).double()
    layer = BinaryConv2d.from_float(conv, algo, opts).double().eval()
    if hasattr(layer, "fda_alpha"):
        layer.fda_alpha.fill_(0.0)  # the sign surrogate alone (the noise term is training-time, its weight decays to 0)
    return layer


def gradient_checks(opts: BinaryOptions) -> dict[str, float]:
    """Max |autograd gradient - expected surrogate| of each algorithm's activation and weight quantizer."""
    x0 = grid()
    out: dict[str, float] = {}
    for algo in ALGO_NAMES:
        layer = _layer(algo, opts)
        x = x0.view(1, 1, 1, -1).clone().requires_grad_(True)
        layer.quantize_act(x).sum().backward()
        out[f"act_grad_err/{algo}"] = float((x.grad.flatten() - EXPECTED_ACT_GRAD[algo](x0)).abs().max())
        if algo in EXPECTED_WEIGHT_GRAD:
            big = _layer(algo, opts, 1, len(x0))  # one weight per output channel, values on the grid
            with torch.no_grad():
                big.weight.copy_(x0.view(-1, 1, 1, 1))
            r = torch.randn(big.weight.shape, dtype=torch.float64)
            (big.quantize_weight() * r).sum().backward()
            s = big.weight_scale()
            s = torch.ones(1, dtype=torch.float64) if s is None else s.flatten()
            want = r.flatten() * s * EXPECTED_WEIGHT_GRAD[algo](x0)
            out[f"weight_grad_err/{algo}"] = float((big.weight.grad.flatten() - want).abs().max())
    out["act_grad_err_max"] = max(v for k, v in out.items() if k.startswith("act_grad_err/"))
    out["weight_grad_err_max"] = max(v for k, v in out.items() if k.startswith("weight_grad_err/"))
    # ReCU: identity STE through the (standardize, clamp) map, so d sum(sign(w2) * r) / dw2 = r
    layer = _layer("recu", opts, 3, 4, 3)
    w2 = layer._recu_weight().detach().requires_grad_(True)
    r = torch.randn(w2.shape, dtype=torch.float64)
    (binary_sign(w2, layer._wgrad()) * r).sum().backward()
    out["recu_weight_ste_err"] = float((w2.grad - r).abs().max())
    return out


def forward_checks(opts: BinaryOptions) -> dict[str, float]:
    """Deployed weights take exactly two values +-alpha per output channel; XNOR alpha = mean|W| per
    channel; binarized activations (incl. x = 0 -> +1) are exactly +-1."""
    bad_channels, act_bad = 0, 0
    alpha_err = 0.0
    x = grid().view(1, 1, 1, -1)
    for algo in ALGO_NAMES:
        layer = _layer(algo, opts, 6, 8, 3, seed=1)
        w = layer.binary_weight().flatten(1)
        for row in w:  # 8 channels: tiny loop over channels, not samples
            vals = torch.unique(row)
            if len(vals) != 2 or float(vals[0] + vals[1]) != 0.0:
                bad_channels += 1
        if algo == "xnor":
            want = layer.weight.detach().abs().flatten(1).mean(1)
            alpha_err = float((w.abs().max(1).values - want).abs().max())
        a = _layer(algo, opts).quantize_act(x)
        act_bad += int(((a != 1) & (a != -1)).sum())
    return {"weight_two_level_violations": float(bad_channels), "xnor_alpha_err": alpha_err,
            "act_level_violations": float(act_bad)}


def fda_checks() -> dict[str, float]:
    """FDA surrogate: symmetric, peaked at 0 on |x| <= 1; its integral is the Fourier sign S_n, which
    approaches sign(x) as n grows (n = 18 vs n = 9, mean |S_n - 1| on x in [1, 30])."""
    x = grid()
    g = surrogate_grad(x, "fda", 9, fda_clip=True)
    asym = float((g - g.flip(0)).abs().max())
    inside = x.abs() <= 1
    peak = float(g[x == 0][0] - g[inside & (x.abs() >= 0.5)].max())
    t = torch.arange(0, 30001, dtype=torch.float64) / 1000  # 0 .. 30
    errs, integ_err = {}, 0.0
    for n in (9, 18):
        d = fda_series_grad(t, n)
        s = torch.cat([torch.zeros(1, dtype=t.dtype), torch.cumsum((d[1:] + d[:-1]) / 2 * 1e-3, 0)])
        integ_err = max(integ_err, float((s - fda_series(t, n)).abs().max()))
        errs[n] = float((s[t >= 1] - 1).abs().mean())
    return {"fda_grad_asym": asym, "fda_peak_margin": peak, "fda_integral_vs_series_err": integ_err,
            "fda_sign_err_n9": errs[9], "fda_sign_err_n18": errs[18],
            "fda_sign_err_ratio": errs[18] / errs[9]}


def toy_model() -> nn.Module:
    """conv(1->4, 3x3) BN Hardtanh conv(4->8, 3x3) BN Hardtanh flatten FC(512->10), input 1x8x8."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Hardtanh(),
                         nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Hardtanh(),
                         nn.Flatten(), nn.Linear(512, 10))


# Hand counts of toy_model (only the middle conv is binarized):
TOY_PARAMS = 1 * 4 * 9 + 2 * 4 + 4 * 8 * 9 + 2 * 8 + 512 * 10 + 10  # 5478
TOY_BIN_PARAMS = 4 * 8 * 9  # 288
TOY_FLOPS = 64 * 4 * 9 + 64 * 4 + 64 * 8 * 36 + 64 * 8 + 512 * 10  # 2304 + 256 + 18432 + 512 + 5120 = 26624
TOY_BIN_FLOPS = 64 * 8 * 36  # 18432
TOY_XNOR_EXTRA = 4 * 64 + 64 * 9 + 2 * 8 * 64  # mean_c|a| + 3x3 averaging of A + K and alpha multiplies = 1856
TOY_RC = TOY_PARAMS / (TOY_BIN_PARAMS / 32 + TOY_PARAMS - TOY_BIN_PARAMS)  # 5478 / 5199
TOY_RS = {"bnn": TOY_FLOPS / (TOY_BIN_FLOPS / 64 + TOY_FLOPS - TOY_BIN_FLOPS),  # 26624 / 8480
          "xnor": TOY_FLOPS / (TOY_BIN_FLOPS / 64 + TOY_FLOPS - TOY_BIN_FLOPS + TOY_XNOR_EXTRA)}


def complexity_checks(divisor: float = 64.0, param_divisor: float = 32.0) -> dict[str, float]:
    mc = count(toy_model(), (1, 8, 8))
    out = {"toy_rc_err": abs(complexity(mc, "bnn", divisor, param_divisor).rc - TOY_RC)}
    out["toy_rs_err"] = max(abs(complexity(mc, a, divisor).rs - TOY_RS[a]) for a in TOY_RS)
    return out

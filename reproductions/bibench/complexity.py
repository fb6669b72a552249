"""Theoretical complexity track (spec §4): parameter compression r_c and FLOPs speedup r_s.

    r_c = |M|_0 / ( |M_b|_0 / 32 + (|M|_0 - |M_b|_0) )
    r_s = FLOPs_M / ( FLOPs_{M_b} / 64 + FLOPs_{M - M_b} + extra FP ops of the algorithm )
    OM_comp = sqrt( (r_c^2 + r_s^2) / 2 )

Counting convention (spec §7): a conv/linear costs its MACs (C_out H_out W_out C_in k_h k_w; in x out),
a BatchNorm one op per output element (folded affine), activations/pooling/shortcut adds of the FP
architecture nothing; |M|_0 counts the model's parameters. M_b = the layers ``binarize`` would replace
(binary weights cost 1/32 of storage, binary MACs 1/64 of a FLOP). The algorithm's extra inference ops
per binarized layer (with input C_in x H_in x W_in, output C_out x H_out x W_out, kernel k):

- bnn: 0;  dorefa, bireal, fda, recu: alpha multiply C_out H_out W_out (FDA's noise module is
  training-only: its weight decays to 0);  react: + RSign shift C_in H_in W_in;
- xnor: mean_c|a| (C_in H_in W_in) + k x k averaging (H_out W_out k^2) + K and alpha multiplies (2 C_out H_out W_out);
- xnorpp: y * o * h * w, 3 C_out H_out W_out.
Counts come from forward hooks during one forward pass of a zero input (batch 1) through the FP model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from reproductions.bibench.layers import get_algorithm
from reproductions.bibench.models import binarizable


@dataclass
class LayerCount:
    name: str
    kind: str  # conv | linear | bn
    params: int
    macs: int
    in_shape: tuple[int, ...]  # without batch
    out_shape: tuple[int, ...]
    kernel: int = 1  # k_h * k_w


@dataclass
class ModelCount:
    """Per-layer counts of a model and which layers are binarized."""

    layers: list[LayerCount]
    total_params: int
    binary: set[str] = field(default_factory=set)

    @property
    def total_flops(self) -> int:
        return sum(l.macs for l in self.layers)

    @property
    def binary_params(self) -> int:
        return sum(l.params for l in self.layers if l.name in self.binary)

    @property
    def binary_flops(self) -> int:
        return sum(l.macs for l in self.layers if l.name in self.binary)


def count(model: nn.Module, input_shape: tuple[int, ...], binarize_downsample: bool = False,
          binarize_first_last: bool = False) -> ModelCount:
    """Parameters and FLOPs of each conv/linear/BN layer of the FP ``model`` for one input of ``input_shape``."""
    layers: list[LayerCount] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            hooks.append(m.register_forward_hook(_hook(name, layers)))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    total = sum(p.numel() for p in model.parameters())
    binary = set(binarizable(model, binarize_downsample))
    if binarize_first_last:  # TEST-ONLY variant "binarize_first_last": spec §3 keeps them FP
        binary |= {n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)}
    return ModelCount(layers, total, binary)


def _hook(name: str, out: list[LayerCount]):
    def fn(m: nn.Module, inp: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
        x = inp[0]
        per = y[0].numel()  # output elements per sample
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            macs = per * (m.in_channels // m.groups) * k
            out.append(LayerCount(name, "conv", m.weight.numel() + (m.bias.numel() if m.bias is not None else 0),
                                  macs, tuple(x.shape[1:]), tuple(y.shape[1:]), k))
        elif isinstance(m, nn.Linear):
            out.append(LayerCount(name, "linear", m.weight.numel() + (m.bias.numel() if m.bias is not None else 0),
                                  per * m.in_features, tuple(x.shape[1:]), tuple(y.shape[1:])))
        else:
            out.append(LayerCount(name, "bn", sum(p.numel() for p in m.parameters()), per,
                                  tuple(x.shape[1:]), tuple(y.shape[1:])))
    return fn


def extra_ops(algo: str, layer: LayerCount) -> int:
    """Extra full-precision inference ops of ``algo`` on one binarized layer (module docstring)."""
    a = get_algorithm(algo)
    n_in, n_out = math.prod(layer.in_shape), math.prod(layer.out_shape)
    spatial_out = n_out // layer.out_shape[0]
    ops = 0
    if a.weight_scale or a.recu:
        ops += n_out  # channel-wise alpha
    if a.act_shift:
        ops += n_in
    if a.act_scale:
        ops += n_in + (spatial_out * layer.kernel if layer.kind == "conv" else 0) + n_out
    if a.gamma:
        ops += 3 * n_out if layer.kind == "conv" else n_out
    return ops


@dataclass
class Complexity:
    rc: float
    rs: float
    extra_ops: int

    @property
    def om(self) -> float:
        return math.sqrt((self.rc ** 2 + self.rs ** 2) / 2)


def complexity(mc: ModelCount, algo: str, binary_flop_divisor: float = 64.0,
               binary_param_divisor: float = 32.0) -> Complexity:
    """r_c and r_s of ``mc`` binarized by ``algo`` (spec §4). The divisors are 64 and 32 (TEST-ONLY
    variant ``fp_binary_count`` passes 1: binary MACs and weights at full cost, teeth of the range claims)."""
    m0, mb = mc.total_params, mc.binary_params
    rc = m0 / (mb / binary_param_divisor + (m0 - mb))
    extra = sum(extra_ops(algo, l) for l in mc.layers if l.name in mc.binary)
    f0, fb = mc.total_flops, mc.binary_flops
    rs = f0 / (fb / binary_flop_divisor + (f0 - fb) + extra)
    return Complexity(rc, rs, extra)

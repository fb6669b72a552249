"""The eight binarization algorithms of BiBench as drop-in binarized Conv2d / Linear operators (spec §3).

Each :class:`Algorithm` row says how an operator binarizes its weights and activations (forward
scaling) and which surrogate its backward uses (``quantizers.SURROGATES``):

| algo   | weights (forward)                           | w-grad   | activations (forward)          | a-grad  | output scale        |
|--------|---------------------------------------------|----------|--------------------------------|---------|---------------------|
| bnn    | sign(W)                                     | clip     | sign(a)                        | clip    | -                   |
| xnor   | mean|W|_c * sign(W)                         | clip     | sign(a), K = mean_c|a| * k/kxk  | clip    | K (runtime stats)   |
| dorefa | mean|W| * sign(W) (per channel or layer)    | clip     | sign(a)                        | clip    | -                   |
| bireal | mean|W|_c * sign(W)                         | clip     | sign(a)                        | approx  | -                   |
| xnorpp | sign(W)                                     | clip     | sign(a)                        | clip    | Gamma = o x h x w   |
| react  | mean|W|_c * sign(W)                         | clip     | sign(a + b_c) (RSign)          | approx  | -                   |
| recu   | sign(clamp(std(W), +-Q_tau))                | identity | sign(a / std(a)) (train)       | approx  | alpha_c (learned)   |
| fda    | mean|W|_c * (sign(W) + a_n e_w(W))          | fda      | sign(a) + a_n e_a(a)           | fda     | -                   |

Papers: BNN (Hubara et al. 2016), XNOR-Net (Rastegari et al. 2016, Eq. 3-11), DoReFa-Net (Zhou et al.
2016, Eq. 7), Bi-Real Net (Liu et al. 2018, Eq. 5-6), XNOR-Net++ (Bulat & Tzimiropoulos 2019,
Eq. 5, factorised Gamma), ReActNet (Liu et al. 2020, Eq. 3 RSign), ReCU (Xu et al. 2021b, Eq. 10-16),
FDA (Xu et al. 2021a, Eq. 7-12). Epoch-dependent parameters (ReCU tau, FDA n and alpha) follow BiBench's
per-epoch hook and are set by :func:`update_epoch` (spec §7: forgetting it silently changes results).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.bibench.quantizers import binary_sign, sign_pm
from suite.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class Algorithm:
    """One binarization algorithm (a row of the module table)."""

    name: str
    weight_grad: str
    act_grad: str
    weight_scale: bool = False  # statistics-based channel-wise mean|W| (XNOR, DoReFa, Bi-Real, ReAct, FDA)
    act_scale: bool = False  # XNOR's runtime activation scale K
    gamma: bool = False  # XNOR++ learnable o x h x w output scale
    act_shift: bool = False  # ReActNet RSign learnable per-channel threshold
    recu: bool = False  # ReCU weight standardize + clamp, activation std normalization, learned alpha
    noise: bool = False  # FDA noise adaptation modules
    soft: bool = False  # soft/approximate gradient + scaled weights group (spec §2 C5)
    # a binarized conv keeps the FP conv's bias (ReActNet's convs have one): in BiBench the FDA and ReCU convs
    # subclass nn.Conv2d and load it; the other algorithms' convs are built without one and the non-strict
    # checkpoint load drops it (bibench/models/layers/*.py)
    conv_bias: bool = False


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (
        Algorithm("bnn", "clip", "clip"),
        Algorithm("xnor", "clip", "clip", weight_scale=True, act_scale=True),
        Algorithm("dorefa", "clip", "clip", weight_scale=True),
        Algorithm("bireal", "clip", "approx", weight_scale=True, soft=True),
        Algorithm("xnorpp", "clip", "clip", gamma=True),
        Algorithm("react", "clip", "approx", weight_scale=True, act_shift=True, soft=True),
        Algorithm("recu", "identity", "approx", recu=True, soft=True, conv_bias=True),
        Algorithm("fda", "fda", "fda", weight_scale=True, noise=True, soft=True, conv_bias=True),
    )
}
ALGO_NAMES: tuple[str, ...] = tuple(ALGORITHMS)
# TEST-ONLY broken variants (teeth): "identity_ste" (every surrogate is the identity), "fp_binary_count"
# (binary MACs and parameters counted at full cost), "binarize_first_last" (the complexity count treats
# the FP first and last layers as binarized), "no_sign" (forward sign skipped: the "binarized" models
# stay real-valued), "flipped_soft_grad" (the soft surrogates ApproxSign / FDA with their sign swapped)
Variant = Literal["paper", "identity_ste", "fp_binary_count", "binarize_first_last", "no_sign", "flipped_soft_grad"]
VARIANTS = get_args(Variant)


@dataclass(frozen=True)
class BinaryOptions:
    """Choices the papers leave open or where BiBench's repo deviates from the paper (README).

    ``xnor_act_scale``: "position" = K per output position (XNOR-Net Sec. 3.2: mean over channels of
    |a| convolved with a k x k averaging filter), "sample" = per-sample mean over C, H, W (BiBench repo).
    ``dorefa_scale``: "channel" (BiBench repo) or "layer" (DoReFa-Net: one E|W| per layer).
    ``fda_clip``: zero the FDA gradient outside |x| <= 1 (BiBench repo). ``gamma_len``: length of the
    XNOR++ h/w scale vectors, cropped to the feature map (BiBench: 2000, spec §7).
    ``variant``: TEST-ONLY broken variants (teeth, see ``Variant``).
    """

    xnor_act_scale: str = "position"
    dorefa_scale: str = "channel"
    fda_clip: bool = True
    gamma_len: int = 2000
    variant: str = "paper"

    def __post_init__(self) -> None:
        if self.xnor_act_scale not in ("position", "sample"):
            raise ConfigError(f"xnor_act_scale must be 'position' or 'sample', got {self.xnor_act_scale!r}")
        if self.dorefa_scale not in ("channel", "layer"):
            raise ConfigError(f"dorefa_scale must be 'channel' or 'layer', got {self.dorefa_scale!r}")
        if self.variant not in VARIANTS:
            raise UnknownNameError(f"unknown variant {self.variant!r}; use one of {VARIANTS}")


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise UnknownNameError(f"unknown binarization algorithm {name!r}; use one of {ALGO_NAMES}")
    return ALGORITHMS[name]


class NoiseAdaptation(nn.Module):
    """FDA noise adaptation e(x) = W2 relu(W1 x) + 0.1 sin(x) over the last dim (FDA Sec. 3.3)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        hidden = d // 64 if d >= 64 else max(1, d // 4)
        self.fc1 = nn.Linear(d, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x))) + 0.1 * torch.sin(x)


class _Binary:
    """Shared machinery of :class:`BinaryConv2d` and :class:`BinaryLinear` (mixed into nn modules)."""

    algo: Algorithm
    opts: BinaryOptions
    weight: nn.Parameter

    def _setup(self, algo: str, opts: BinaryOptions, c_in: int) -> None:
        self.algo, self.opts = get_algorithm(algo), opts
        c_out = self.weight.shape[0]
        shape = self._chan_shape(c_out)
        if self.algo.gamma:  # XNOR-Net++ Eq. 5: Gamma = o (x) h (x) w, learned by backprop
            self.o_scale = nn.Parameter(torch.ones(shape))
            if self.weight.dim() == 4:
                self.h_scale = nn.Parameter(torch.ones(1, 1, opts.gamma_len, 1))
                self.w_scale = nn.Parameter(torch.ones(1, 1, 1, opts.gamma_len))
        if self.algo.act_shift:  # ReActNet RSign: learnable threshold per input channel
            in_shape = (1, c_in, 1, 1) if self.weight.dim() == 4 else (1, c_in)
            self.act_shift = nn.Parameter(torch.zeros(in_shape))
        if self.algo.recu:
            # ReCU learned per-channel scale, drawn uniformly in [0, 1) as BiBench's recu.py (torch.rand): the
            # pretrained FP checkpoint has no alpha
            self.alpha = nn.Parameter(torch.rand(shape, device=self.weight.device))
            self.register_buffer("tau", torch.tensor(0.85))
        if self.algo.noise:
            self.weight_noise = NoiseAdaptation(self.weight[0].numel())
            self.act_noise = NoiseAdaptation(c_in)
            self.register_buffer("fda_n", torch.tensor(9))
            self.register_buffer("fda_alpha", torch.tensor(0.1))

    def _chan_shape(self, c: int) -> tuple[int, ...]:
        return (1, c, 1, 1) if self.weight.dim() == 4 else (1, c)

    # -- surrogates (variants "identity_ste" and "flipped_soft_grad" are teeth)
    def _broken(self, kind: str) -> str:
        if self.opts.variant == "identity_ste":
            return "identity"
        if self.opts.variant == "flipped_soft_grad" and kind in ("approx", "fda"):
            return kind + "_neg"
        return kind

    def _wgrad(self) -> str:
        return self._broken(self.algo.weight_grad)

    def _agrad(self) -> str:
        return self._broken(self.algo.act_grad)

    def _sign(self, t: torch.Tensor, kind: str) -> torch.Tensor:
        if self.opts.variant == "no_sign":  # TEST-ONLY teeth: binarization skipped
            return t
        return binary_sign(t, kind, self._n(), self.opts.fda_clip)

    def _n(self) -> int:
        return int(self.fda_n) if self.algo.noise else 9

    # -- epoch-dependent parameters (BiBench model_params_update hook)
    def update_epoch(self, epoch: int, max_epochs: int) -> None:
        if self.algo.recu:  # ReCU Eq. 14: tau grows exponentially from 0.85 to 0.99
            t_min, t_max = 0.85, 0.99
            a = (t_max - t_min) / (math.e - 1)
            self.tau.fill_(a * math.exp(epoch / max_epochs) + t_min - a)
        if self.algo.noise:  # FDA: n from 9 to 18, alpha cosine-decayed from 0.1 to 0
            self.fda_n.fill_(9 + int(epoch / max_epochs * 9))
            self.fda_alpha.fill_(0.05 * (1 + math.cos(math.pi * (epoch + 1) / max_epochs)))

    # -- weights
    def weight_scale(self) -> torch.Tensor | None:
        """The statistics-based weight scale alpha (detached), or None for unscaled algorithms."""
        if not self.algo.weight_scale:
            return None
        w = self.weight.detach()
        if self.algo.name == "dorefa" and self.opts.dorefa_scale == "layer":
            return w.abs().mean().reshape([1] * w.dim())
        return w.abs().flatten(1).mean(1).reshape([-1] + [1] * (w.dim() - 1))

    def _recu_weight(self) -> torch.Tensor:
        """ReCU Eq. 10-12: standardize per output channel, clamp to +-Q_tau, Q_tau = -E|w| ln(2 - 2 tau).
        The standardized weights have std 2 sqrt(2) (BiBench recu.py divides by sqrt(var + 1e-5) / 2 / sqrt(2)):
        sign and clamp are unchanged by that constant, the identity-STE gradient reaching W is scaled by it."""
        w = self.weight
        w0 = w - w.flatten(1).mean(1).reshape([-1] + [1] * (w.dim() - 1))
        w1 = w0 / (torch.sqrt(w0.flatten(1).var(1) + 1e-5) / (2 * math.sqrt(2))).reshape([-1] + [1] * (w.dim() - 1))
        q = (-w1.detach().abs().mean() * torch.log(2 - 2 * self.tau)).detach()
        return torch.maximum(torch.minimum(w1, q), -q)

    def quantize_weight(self, training_noise: bool = True) -> torch.Tensor:
        w = self._recu_weight() if self.algo.recu else self.weight
        wb = self._sign(w, self._wgrad())
        if self.algo.noise and training_noise and float(self.fda_alpha) != 0.0:
            wb = wb + self.fda_alpha * self.weight_noise(self.weight.flatten(1)).reshape(wb.shape)
        s = self.weight_scale()
        return wb * s if s is not None else wb

    def binary_weight(self) -> torch.Tensor:
        """The deployed weights: exactly two values (+-alpha) per output channel."""
        with torch.no_grad():
            return self.quantize_weight(training_noise=False)

    # -- activations
    def quantize_act(self, x: torch.Tensor) -> torch.Tensor:
        if self.algo.act_shift:
            x = x + self.act_shift
        if self.algo.recu and self.training:  # ReCU: activations normalised by their std while training
            dims = tuple(range(1, x.dim()))
            x = x / torch.sqrt(x.var(dims, keepdim=True) + 1e-5)
        ab = self._sign(x, self._agrad())
        if self.algo.noise and float(self.fda_alpha) != 0.0:
            ab = ab + self.fda_alpha * self._act_noise(x)
        return ab

    def _act_noise(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # per position over channels
            return self.act_noise(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.act_noise(x)

    # -- output scales
    def scale_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.algo.act_scale:
            y = y * self._xnor_k(x)
        if self.algo.gamma:
            y = y * self.o_scale
            if y.dim() == 4:
                y = y * self.h_scale[:, :, : y.shape[2]] * self.w_scale[:, :, :, : y.shape[3]]
        if self.algo.recu:
            y = y * self.alpha
        return y

    def _xnor_k(self, x: torch.Tensor) -> torch.Tensor:
        """XNOR-Net activation scale K (detached): per output position, or per sample."""
        a = x.detach().abs()
        if x.dim() == 2 or self.opts.xnor_act_scale == "sample":
            return a.flatten(1).mean(1).reshape([-1] + [1] * (x.dim() - 1))
        return self._k_map(a.mean(1, keepdim=True))  # only convolutions reach here (BinaryConv2d)


class BinaryConv2d(nn.Conv2d, _Binary):
    """Drop-in binarized ``nn.Conv2d`` for algorithm ``algo`` (same weight/bias parameters)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int = 0, bias: bool = False, *, algo: str, opts: BinaryOptions | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self._setup(algo, opts or BinaryOptions(), in_channels)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, algo: str, opts: BinaryOptions | None = None) -> "BinaryConv2d":
        if conv.groups != 1 or conv.dilation != (1, 1) or not isinstance(conv.padding, tuple):
            raise ConfigError("binarize: only groups=1, dilation=1 convolutions with numeric padding are supported")
        keep_bias = conv.bias is not None and get_algorithm(algo).conv_bias
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                bias=keep_bias, algo=algo, opts=opts)
        with torch.no_grad():
            m.weight.copy_(conv.weight)
            if keep_bias:
                m.bias.copy_(conv.bias)
        m._setup(algo, opts or BinaryOptions(), conv.in_channels)  # re-derive ReCU alpha from copied weights
        return m.to(conv.weight.device)

    def _k_map(self, a_mean: torch.Tensor) -> torch.Tensor:
        # XNOR-Net Sec. 3.2: K = A * k, k a (1/(kh kw)) averaging filter over the conv's window
        return F.avg_pool2d(a_mean, self.kernel_size, self.stride, self.padding, count_include_pad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.quantize_act(x)
        w = self.quantize_weight()
        y = F.conv2d(a, w, self.bias, self.stride, self.padding)
        return self.scale_output(y, x)


class BinaryLinear(nn.Linear, _Binary):
    """Drop-in binarized ``nn.Linear`` for algorithm ``algo``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, algo: str,
                 opts: BinaryOptions | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._setup(algo, opts or BinaryOptions(), in_features)

    @classmethod
    def from_float(cls, lin: nn.Linear, algo: str, opts: BinaryOptions | None = None) -> "BinaryLinear":
        m = cls(lin.in_features, lin.out_features, bias=lin.bias is not None, algo=algo, opts=opts)
        with torch.no_grad():
            m.weight.copy_(lin.weight)
            if lin.bias is not None:
                m.bias.copy_(lin.bias)
        m._setup(algo, opts or BinaryOptions(), lin.in_features)
        return m.to(lin.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.quantize_act(x)
        w = self.quantize_weight()
        y = F.linear(a, w, self.bias)
        return self.scale_output(y, x)


BINARY_TYPES = (BinaryConv2d, BinaryLinear)


def binary_layers(model: nn.Module) -> Iterator[tuple[str, _Binary]]:
    for name, m in model.named_modules():
        if isinstance(m, BINARY_TYPES):
            yield name, m  # type: ignore[misc]


def update_epoch(model: nn.Module, epoch: int, max_epochs: int) -> None:
    """BiBench's per-epoch hook: ReCU tau, FDA n and alpha of every binarized layer."""
    for _, m in binary_layers(model):
        m.update_epoch(epoch, max(1, max_epochs))


__all__ = ["Algorithm", "ALGORITHMS", "ALGO_NAMES", "BinaryOptions", "BinaryConv2d", "BinaryLinear",
           "binary_layers", "update_epoch", "get_algorithm", "sign_pm", "VARIANTS", "Variant"]

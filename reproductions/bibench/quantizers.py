"""Forward sign quantizer and the backward surrogates of the eight BiBench algorithms (spec §3).

Forward is always ``sign`` with sign(0) = +1 (the deployment convention, spec §7: torch.sign(0) = 0
would make a third weight/activation level). Backward is one of

- ``identity``: straight-through estimator, dL/dx = dL/dxb (ReCU weights; DoReFa's STE).
- ``clip``: clipped STE of BNN (Hubara et al. 2016, Eq. 4): dL/dx = dL/dxb * 1[|x| <= 1].
- ``approx``: ApproxSign of Bi-Real Net (Liu et al. 2018, Eq. 5-6), the derivative of the
  piecewise quadratic F(x) = 2x + x|x| on |x| < 1: d/dx = (2 - 2|x|)+ ; ReCU's activation gradient
  (2 - |2x|)+ (Xu et al. 2021b, Eq. 16) is the same function.
- ``fda``: Fourier series of the square wave (Xu et al. 2021a, FDA Eq. 7-9): sign(x) ~
  (4/pi) sum_{i=0..n} sin((2i+1) w x) / (2i+1), whose derivative is (4w/pi) sum cos((2i+1) w x);
  w = 0.1, n grows 9 -> 18 during training. BiBench zeroes it outside |x| <= 1 (``fda_clip``).

Every backward builds a new tensor (never writes into ``grad_output``: spec §7 pitfall).
"""
from __future__ import annotations

import math

import torch

SURROGATES = ("identity", "clip", "approx", "fda")
FDA_OMEGA = 0.1


def sign_pm(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1: values exactly in {-1, +1}."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def fda_series_grad(x: torch.Tensor, n: int, omega: float = FDA_OMEGA) -> torch.Tensor:
    """(4w/pi) * sum_{i=0..n} cos((2i+1) w x): derivative of the n-term Fourier sign (FDA Eq. 9).

    The sum runs over the n+1 series terms (at most 19), each a vectorised op on the whole tensor.
    """
    wx = omega * x
    acc = torch.cos(wx)
    for i in range(1, int(n) + 1):
        acc = acc + torch.cos((2 * i + 1) * wx)
    return acc * (4.0 * omega / math.pi)


def fda_series(x: torch.Tensor, n: int, omega: float = FDA_OMEGA) -> torch.Tensor:
    """(4/pi) * sum_{i=0..n} sin((2i+1) w x) / (2i+1): the n-term Fourier approximation of sign."""
    acc = torch.zeros_like(x)
    for i in range(int(n) + 1):
        acc = acc + torch.sin((2 * i + 1) * omega * x) / (2 * i + 1)
    return acc * (4.0 / math.pi)


def surrogate_grad(x: torch.Tensor, kind: str, n: int = 9, fda_clip: bool = True) -> torch.Tensor:
    """d sign_surrogate / dx evaluated at ``x`` for backward ``kind`` (see module docstring).
    ``<kind>_neg`` (TEST-ONLY, variant ``flipped_soft_grad``) is the same surrogate with its sign swapped."""
    if kind.endswith("_neg"):
        return -surrogate_grad(x, kind[: -len("_neg")], n, fda_clip)
    if kind == "identity":
        return torch.ones_like(x)
    if kind == "clip":
        return (x.abs() <= 1).to(x.dtype)
    if kind == "approx":
        return (2.0 - 2.0 * x.abs()).clamp_min(0.0)
    if kind == "fda":
        g = fda_series_grad(x, n)
        return g * (x.abs() <= 1).to(x.dtype) if fda_clip else g
    raise ValueError(f"unknown surrogate {kind!r}; use one of {SURROGATES}")


class _BinarySign(torch.autograd.Function):
    """sign_pm forward, ``surrogate_grad`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: str, n: int, fda_clip: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.kind, ctx.n, ctx.fda_clip = kind, n, fda_clip
        return sign_pm(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * surrogate_grad(x, ctx.kind, ctx.n, ctx.fda_clip), None, None, None


def binary_sign(x: torch.Tensor, kind: str, n: int = 9, fda_clip: bool = True) -> torch.Tensor:
    """Binarize ``x`` to {-1, +1} with backward surrogate ``kind``."""
    if kind.removesuffix("_neg") not in SURROGATES:
        raise ValueError(f"unknown surrogate {kind!r}; use one of {SURROGATES}")
    return _BinarySign.apply(x, kind, int(n), bool(fda_clip))

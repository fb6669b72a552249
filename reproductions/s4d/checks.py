"""Measured exactness and speed of the S4D kernel (spec §6 T1-T3; the issue's speed ratio).

Each function returns a measured error or time; the claims bound them. ``variant`` injects a
deliberately broken implementation (test-only teeth): ``circular_fft`` convolves with an FFT of
length L (circular wrap-around), ``halved_kernel`` drops the factor 2 of the conjugate half.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch

from suite.models.ssm import (S4D, S4DKernel, SSMConfig, fft_conv, recurrent_kernel,
                                     vandermonde_kernel)

Variant = Literal["paper", "circular_fft", "halved_kernel"]


def _kernel(k: S4DKernel, L: int, variant: str) -> torch.Tensor:
    K = k(L)
    return 0.5 * K if variant == "halved_kernel" else K


def kernel_vs_recurrence(disc: str, H: int = 4, N: int = 16, L: int = 128, init: str = "inv",
                         seed: int = 0, variant: str = "paper") -> float:
    """T1: max |Vandermonde kernel - impulse response of the unrolled recurrence| in float64."""
    g = torch.Generator().manual_seed(seed)
    k = S4DKernel(H, SSMConfig(d_state=N, init=init, disc=disc, dt_min=1e-2, dt_max=0.5), generator=g).double()
    with torch.no_grad():
        C, Bbar, log_Abar = k.discrete()
        ref = recurrent_kernel(C, Bbar, torch.exp(log_Abar), L)
        return float((_kernel(k, L, variant) - ref).abs().max())


def fft_vs_direct(H: int = 4, N: int = 16, L: int = 128, batch: int = 3, seed: int = 0,
                  variant: str = "paper") -> float:
    """T2: max |FFT convolution - direct causal convolution (np.convolve truncated)| in float64."""
    g = torch.Generator().manual_seed(seed)
    k = S4DKernel(H, SSMConfig(d_state=N, init="lin"), generator=g).double()
    u = torch.randn(batch, H, L, generator=g, dtype=torch.float64)
    with torch.no_grad():
        K = _kernel(k, L, "paper")[0]
        y = fft_conv(u, K, n_fft=L if variant == "circular_fft" else None)
    Kn, un = K.numpy(), u.numpy()
    direct = np.stack([[np.convolve(un[b, h], Kn[h])[:L] for h in range(H)] for b in range(batch)])
    return float(np.abs(y.numpy() - direct).max())


def step_vs_conv(H: int = 8, N: int = 16, L: int = 64, batch: int = 2, seed: int = 0) -> float:
    """T3: max |recurrent (step) mode - convolution mode| of a causal S4D layer, float32."""
    g = torch.Generator().manual_seed(seed)
    layer = S4D(H, SSMConfig(d_state=N, init="inv"), generator=g).eval()
    u = torch.randn(batch, L, H, generator=g)
    with torch.no_grad():
        y = layer(u)
        state, ys = layer.default_state(batch), []
        for t in range(L):
            yt, state = layer.step(u[:, t], state)
            ys.append(yt)
    return float((torch.stack(ys, 1) - y).abs().max())


def kernel_speed(H: int = 256, N: int = 64, L: int = 4096, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Seconds for the batched Vandermonde kernel (blocked and direct) vs a Python loop over
    positions (same result).

    The loop computes ``K[:, l] = 2 Re(sum_n C_n Bbar_n Abar_n^l)`` one position at a time (also
    in log space); ``speedup`` = loop time / batched time, and ``max_abs_diff`` checks agreement.
    """
    g = torch.Generator().manual_seed(seed)
    k = S4DKernel(H, SSMConfig(d_state=N, init="inv"), generator=g)
    with torch.no_grad():
        C, Bbar, log_Abar = k.discrete()
        CB = (C[0] * Bbar)

        def batched() -> torch.Tensor:
            return vandermonde_kernel(C[0], Bbar, log_Abar, L)

        def direct() -> torch.Tensor:
            return vandermonde_kernel(C[0], Bbar, log_Abar, L, method="direct")

        def loop() -> torch.Tensor:
            out = torch.empty(H, L)
            for pos in range(L):
                out[:, pos] = 2.0 * (CB * torch.exp(log_Abar * pos)).sum(-1).real
            return out

        def best(fn, reps: int) -> tuple[float, torch.Tensor]:
            times, res = [], None
            for _ in range(reps):
                t0 = time.perf_counter()
                res = fn()
                times.append(time.perf_counter() - t0)
            return min(times), res

        t_b, K_b = best(batched, repeats)
        t_d, K_d = best(direct, max(1, repeats - 2))
        t_l, K_l = best(loop, max(1, repeats - 2))
    return {"batched_s": t_b, "direct_s": t_d, "loop_s": t_l, "speedup": t_l / t_b,
            "speedup_direct": t_l / t_d,
            "max_abs_diff": float(max((K_b - K_l).abs().max(), (K_d - K_l).abs().max()))}


__all__ = ["Variant", "kernel_vs_recurrence", "fft_vs_direct", "step_vs_conv", "kernel_speed"]

"""Measured exactness and speed of the S4D kernel (spec §6 T1-T3; speed vs the real baselines).

Each function returns a measured error or time; the claims bound them. ``variant`` injects a
deliberately broken implementation (teeth): ``circular_fft`` convolves with an FFT of
length L (circular wrap-around), ``halved_kernel`` drops the factor 2 of the conjugate half;
``untrained`` (used by the run, not here) evaluates the memory-task models without training.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch

from suite.models.ssm import (S4D, S4DKernel, SSMConfig, fft_conv, recurrent_kernel,
                                     vandermonde_kernel)

Variant = Literal["paper", "circular_fft", "halved_kernel", "untrained"]


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


def minimal_kernel(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, L: int) -> torch.Tensor:
    """The S4D paper's minimal ZOH kernel in one shot (the official standalone layer's formula):
    ``K = 2 Re(C B (exp(dt A) - 1) / A . exp(dt A * arange(L)))``, the full (H, N/2, L) Vandermonde
    matrix materialised at once. ``A, B, C`` (H, N/2) complex, ``dt`` (H, 1)."""
    dtA = A * dt
    V = torch.exp(dtA.unsqueeze(-1) * torch.arange(L, dtype=dt.dtype, device=dt.device))  # (H, N/2, L)
    return 2.0 * torch.einsum("hn,hnl->hl", C * B * (torch.exp(dtA) - 1.0) / A, V).real


def kernel_speed(H: int = 256, N: int = 64, L: int = 4096, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Seconds for our blocked Vandermonde kernel vs the two real baselines, same run, same result:

    - ``recurrence``: the plain recurrence with ``Abar = exp(dt A)`` computed once,
      ``x_{l+1} = Abar x_l``, ``K[l] = 2 Re(C x_l)`` (a loop over the L positions, vectorised over
      channels and modes; :func:`suite.models.ssm.recurrent_kernel`);
    - ``minimal``: the paper's minimal kernel (:func:`minimal_kernel`), one tensor expression.

    ``speedup`` = (time of the FASTER baseline) / (blocked time); ``max_abs_diff`` checks agreement.
    """
    g = torch.Generator().manual_seed(seed)
    k = S4DKernel(H, SSMConfig(d_state=N, init="inv", disc="zoh"), generator=g)
    with torch.no_grad():
        A, B, C_all, dt = k.complex_params()
        C, Bbar, log_Abar = k.discrete()
        C, C_all = C[0], C_all[0]

        def blocked() -> torch.Tensor:
            return vandermonde_kernel(C, Bbar, log_Abar, L)

        def recurrence() -> torch.Tensor:
            return recurrent_kernel(C, Bbar, torch.exp(log_Abar), L)

        def minimal() -> torch.Tensor:
            return minimal_kernel(A, B, C_all, dt, L)

        def best(fn, reps: int) -> tuple[float, torch.Tensor]:
            times, res = [], None
            for _ in range(reps):
                t0 = time.perf_counter()
                res = fn()
                times.append(time.perf_counter() - t0)
            return min(times), res

        t_b, K_b = best(blocked, repeats)
        t_r, K_r = best(recurrence, repeats)
        t_m, K_m = best(minimal, max(1, repeats - 2))  # ~20x slower than the others on CPU
    strongest = min(t_r, t_m)
    return {"batched_s": t_b, "recurrence_s": t_r, "minimal_s": t_m, "speedup": strongest / t_b,
            "speedup_vs_recurrence": t_r / t_b, "speedup_vs_minimal": t_m / t_b,
            "max_abs_diff": float(max((K_b - K_r).abs().max(), (K_b - K_m).abs().max()))}


__all__ = ["Variant", "kernel_vs_recurrence", "fft_vs_direct", "step_vs_conv", "minimal_kernel", "kernel_speed"]

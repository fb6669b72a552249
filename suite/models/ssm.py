"""The diagonal state space layer S4D (Gu, Gupta, Goel, Ré 2022), written fresh.

Public API (shared with other reproductions, e.g. ``self_pretraining``):

- :func:`init_diagonal` — the initialisations of §4 (S4D-Lin, S4D-Inv, S4D-LegS, S4D-Real, S4D-Rand).
- :func:`discretize` — ZOH / bilinear discretisation of a diagonal SSM (§3.1).
- :func:`vandermonde_kernel` — the convolution kernel ``K[l] = 2 Re(sum_n C_n Bbar_n Abar_n^l)``
  computed as one batched tensor expression with ``Abar^l = exp(l log Abar)`` (log space, §3.2).
- :func:`fft_conv` — causal convolution by FFT of length 2L (no wrap-around).
- :class:`S4DKernel` — the SSM parameters (log_dt, A, B, C) of H channels; ``forward(L)`` returns the
  kernel, ``step`` runs the recurrence.
- :class:`S4D` — the sequence layer: ``y = K * u + D u`` -> GELU -> dropout -> Conv1d(H, 2H) + GLU;
  optional bidirectional kernel; ``forward`` (convolution mode) and ``step`` (recurrent mode).
- :class:`S4DBlock` — the residual block around :class:`S4D` of the S4 repo's ``SequenceResidualBlock``:
  post-norm ``norm(x + dropout(S4D(x)))`` or pre-norm ``x + dropout(S4D(norm(x)))``, BatchNorm or LayerNorm
  (:class:`Norm`), element-wise or tied residual dropout (``tie_dropout``); used by ``reproductions/s4d`` and
  ``reproductions/self_pretraining``.
- :func:`tied_dropout` / :class:`TiedDropout` — dropout with one mask per (example, channel), the same at every
  position (the S4 repo's ``DropoutNd`` with ``tie=True``; configs' ``tie_dropout: true``).
- :func:`pool_sequence` — the decoder's reduction over positions (official ``SequenceDecoder.mode``:
  ``pool`` = mean, ``last``, ``max``), over the real positions only when a mask is given.
- :func:`ssm_param_groups` — optimiser groups: SSM parameters (log_dt, A, B) with their own lr and
  no weight decay; everything else with the base lr / weight decay (§5 / repo configs).

Tensors are batch-first ``(batch, length, H)`` at the layer boundary. Complex parameters are stored
as real tensors with a trailing dimension 2 (``torch.view_as_real``), because optimisers mishandle
complex tensors in some torch versions (spec §7).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError, UnknownNameError

INITS = ("lin", "inv", "legs", "real", "rand")
DISCRETIZATIONS = ("zoh", "bilinear")
REAL_TRANSFORMS = ("exp", "relu", "none")
SSM_PARAM_NAMES = ("log_dt", "A_real", "A_imag", "B")  # grouped by ssm_param_groups (C, D are not)


# --------------------------------------------------------------------------- initialisation (§4)

def hippo_legs_normal(N: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the normal part of HiPPO-LegS: ``A_LegS + P P^T = -1/2 I + S``.

    ``S`` is skew-symmetric (``S_nk = -1/2 sqrt(2n+1) sqrt(2k+1) sign(n-k)``). Returns the N/2
    eigenvalues ``-1/2 + i w`` with ``w > 0`` (ascending) and ``V^* B_LegS`` for them
    (``B_LegS,n = sqrt(2n+1)``); the other half are their conjugates.
    """
    q = np.sqrt(2.0 * np.arange(N) + 1.0)
    S = -0.5 * np.outer(q, q) * np.sign(np.subtract.outer(np.arange(N), np.arange(N)))
    w, V = np.linalg.eigh(-1j * S)  # -iS is Hermitian: S = V diag(i w) V^*
    keep = w > 0
    w, V = w[keep], V[:, keep]
    order = np.argsort(w)
    w, V = w[order], V[:, order]
    return -0.5 + 1j * w, V.conj().T @ q


def init_diagonal(init: str, N: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``A`` and ``B`` (complex128, shape (N/2,)) for a state of size N (N/2 conjugate pairs).

    §4: S4D-Lin ``a_n = -1/2 + i pi n``; S4D-Inv ``a_n = -1/2 + i (N/pi)(N/(2n+1) - 1)``;
    S4D-LegS: eigenvalues of the normal part of HiPPO-LegS with ``B = V^* B_LegS``;
    S4D-Real ``a_n = -(n+1)``; S4D-Rand (ablation) imaginary parts ``exp(N(0,1))``. B = 1 otherwise.
    """
    if N < 2 or N % 2:
        raise ConfigError(f"S4D: state size N must be an even number >= 2 (N/2 conjugate pairs), got {N}")
    n = torch.arange(N // 2, dtype=torch.float64)
    B = torch.ones(N // 2, dtype=torch.complex128)
    if init == "lin":
        A = torch.complex(-0.5 * torch.ones_like(n), math.pi * n)
    elif init == "inv":
        A = torch.complex(-0.5 * torch.ones_like(n), (N / math.pi) * (N / (2 * n + 1) - 1))
    elif init == "legs":
        a, b = hippo_legs_normal(N)
        A, B = torch.from_numpy(a), torch.from_numpy(b)
    elif init == "real":
        A = torch.complex(-(n + 1), torch.zeros_like(n))
    elif init == "rand":
        imag = torch.exp(torch.randn(N // 2, generator=generator, dtype=torch.float64))
        A = torch.complex(-0.5 * torch.ones_like(n), imag)
    else:
        raise UnknownNameError(f"unknown S4D init {init!r}; use one of {INITS}")
    return A.to(torch.complex128), B.to(torch.complex128)


# --------------------------------------------------------------------------- kernel (§3)

def discretize(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str = "zoh") -> tuple[torch.Tensor, torch.Tensor]:
    """``(log Abar, Bbar)`` of a diagonal SSM; ``A``, ``B`` (..., N/2) complex, ``dt`` broadcastable.

    ZOH: ``Abar = exp(dt A)``, ``Bbar = (exp(dt A) - 1)/A * B``;
    bilinear: ``Abar = (1 + dt A/2)/(1 - dt A/2)``, ``Bbar = dt/(1 - dt A/2) * B``.
    ``log Abar`` is returned so that powers are taken in log space (§3.2; spec §7).
    """
    dtA = A * dt
    if method == "zoh":
        return dtA, (torch.exp(dtA) - 1.0) / A * B
    if method == "bilinear":
        return torch.log((1.0 + dtA / 2) / (1.0 - dtA / 2)), dt / (1.0 - dtA / 2) * B
    raise UnknownNameError(f"unknown discretization {method!r}; use one of {DISCRETIZATIONS}")


def vandermonde_kernel(C: torch.Tensor, Bbar: torch.Tensor, log_Abar: torch.Tensor, L: int,
                       method: str = "blocked") -> torch.Tensor:
    """``K[..., l] = 2 Re(sum_n C_n Bbar_n Abar_n^l)``, l < L, as one batched Vandermonde product.

    Powers are taken in log space, ``Abar^l = exp(l log Abar)``, never by repeated multiplication
    (§3.2, spec §7). ``method='direct'`` materialises the (..., N/2, L) Vandermonde matrix;
    ``'blocked'`` (default, same values) writes l = q M + j with M = ceil(sqrt(L)) and uses
    ``Abar^l = exp(qM log Abar) exp(j log Abar)``, so the sum over n becomes one batched matmul
    (Q x N/2) @ (N/2 x M) and only N/2 (M + Q) exponentials per channel are needed.
    The factor 2 accounts for the conjugate half of the spectrum (state size N = 2 * N/2).
    """
    CB = C * Bbar
    real = log_Abar.real.dtype
    if method == "direct":
        pos = torch.arange(L, device=log_Abar.device, dtype=real)
        V = torch.exp(log_Abar.unsqueeze(-1) * pos)  # (..., N/2, L)
        return 2.0 * torch.einsum("...n,...nl->...l", CB, V).real
    if method != "blocked":
        raise UnknownNameError(f"unknown Vandermonde method {method!r}; use 'blocked' or 'direct'")
    M = max(1, math.isqrt(L - 1) + 1) if L > 1 else 1
    Q = -(-L // M)
    inner = torch.exp(log_Abar.unsqueeze(-1) * torch.arange(M, device=log_Abar.device, dtype=real))  # (..., N/2, M)
    outer = torch.exp(log_Abar.unsqueeze(-1) * (M * torch.arange(Q, device=log_Abar.device, dtype=real)))
    K = torch.matmul((CB.unsqueeze(-1) * outer).transpose(-1, -2), inner)  # (..., Q, M)
    return 2.0 * K.real.flatten(-2)[..., :L]


def fft_conv(u: torch.Tensor, K: torch.Tensor, n_fft: int | None = None) -> torch.Tensor:
    """Causal convolution ``y[l] = sum_{k<=l} K[k] u[l-k]`` along the last dim via FFT.

    ``u`` (..., H, L), ``K`` (H, L). ``n_fft`` defaults to 2L (>= 2L avoids circular wrap-around).
    """
    L = u.shape[-1]
    n = 2 * L if n_fft is None else n_fft
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]


def recurrent_kernel(C: torch.Tensor, Bbar: torch.Tensor, Abar: torch.Tensor, L: int) -> torch.Tensor:
    """Reference: impulse response of the unrolled recurrence ``x_k = Abar x_{k-1} + Bbar u_k``,
    ``y_k = 2 Re(C x_k)`` (a Python loop over positions; tests and speed baseline only)."""
    x = Bbar.clone()
    out = []
    for _ in range(L):
        out.append(2.0 * (C * x).sum(-1).real)
        x = Abar * x
    return torch.stack(out, -1)


@dataclass
class SSMConfig:
    """Hyper-parameters of one S4D layer (defaults = the paper's S4D-Inv with ZOH).

    ``n_ssm``: number of distinct (A, B) copies shared across the H channels (None = one per
    channel; the repo's LRA configs use 1). ``lr``/``lr_dt``: learning rate of A, B / of log_dt
    (None = the optimiser's base lr); all four get weight decay 0 (:func:`ssm_param_groups`).
    ``dropout``: inside the layer, after the GELU and before the output map (the S4 repo's S4 layer);
    ``tie_dropout``: with one mask per (example, channel) over the sequence (:func:`tied_dropout`).
    ``conv_dropout``: element-wise dropout on ``K * u + D u`` before the GELU (state-spaces/s4's current S4Block
    gives its inner FFTConv the block's dropout but not its ``tie_dropout``; the older S4 layer has none).
    """

    d_state: int = 64
    init: str = "inv"
    disc: str = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    real_transform: str = "exp"
    n_ssm: int | None = None
    trainable_B: bool = True
    lr: float | None = 1e-3
    lr_dt: float | None = 1e-3
    bidirectional: bool = False
    dropout: float = 0.0
    tie_dropout: bool = False
    conv_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise UnknownNameError(f"unknown S4D init {self.init!r}; use one of {INITS}")
        if self.disc not in DISCRETIZATIONS:
            raise UnknownNameError(f"unknown discretization {self.disc!r}; use one of {DISCRETIZATIONS}")
        if self.real_transform not in REAL_TRANSFORMS:
            raise UnknownNameError(f"unknown real_transform {self.real_transform!r}; use one of {REAL_TRANSFORMS}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ConfigError(f"S4D: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")


class S4DKernel(nn.Module):
    """SSM parameters of H channels and their convolution kernel (``channels`` output kernels).

    Parameters: ``log_dt`` (H,), ``A_real``/``A_imag`` (n_ssm, N/2) with Re(A) = -exp(A_real)
    (``real_transform='exp'``, kept negative), ``B`` (n_ssm, N/2, 2), ``C`` (channels, H, N/2, 2).
    """

    def __init__(self, H: int, cfg: SSMConfig = SSMConfig(), channels: int = 1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.H, self.cfg, self.channels = H, cfg, channels
        n_ssm = cfg.n_ssm or H
        if H % n_ssm:
            raise ConfigError(f"S4D: n_ssm={n_ssm} must divide H={H}")
        self.n_ssm, N2 = n_ssm, cfg.d_state // 2
        A, B = init_diagonal(cfg.init, cfg.d_state, generator)
        # log_dt ~ U[log dt_min, log dt_max] per channel (§3)
        u = torch.rand(H, generator=generator, dtype=torch.float64)
        log_dt = math.log(cfg.dt_min) + u * (math.log(cfg.dt_max) - math.log(cfg.dt_min))
        C = torch.randn(channels, H, N2, 2, generator=generator, dtype=torch.float64) * (0.5 ** 0.5)
        re = -A.real
        raw_re = {"exp": torch.log(re.clamp_min(1e-4)), "relu": re, "none": -re}[cfg.real_transform]
        f = torch.get_default_dtype()
        self.log_dt = nn.Parameter(log_dt.to(f))
        self.A_real = nn.Parameter(raw_re.expand(n_ssm, N2).clone().to(f))
        self.A_imag = nn.Parameter(A.imag.expand(n_ssm, N2).clone().to(f))
        B = torch.view_as_real(B).expand(n_ssm, N2, 2).clone().to(f)
        self.B = nn.Parameter(B, requires_grad=cfg.trainable_B)
        self.C = nn.Parameter(C.to(f))  # C ~ complex normal (unit variance)

    # -- parameters as complex tensors ---------------------------------------------------------
    def complex_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, B, C, dt)``: A, B (H, N/2), C (channels, H, N/2) complex; dt (H, 1) real."""
        t = self.cfg.real_transform
        re = {"exp": lambda p: -torch.exp(p), "relu": lambda p: -F.relu(p) - 1e-4, "none": lambda p: p}[t](self.A_real)
        A = torch.complex(re, self.A_imag)
        B = torch.view_as_complex(self.B.contiguous())
        rep = self.H // self.n_ssm
        A, B = A.repeat_interleave(rep, 0), B.repeat_interleave(rep, 0)
        C = torch.view_as_complex(self.C.contiguous())
        return A, B, C, torch.exp(self.log_dt).unsqueeze(-1)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C, Bbar, log Abar)`` after discretisation with ``cfg.disc``."""
        A, B, C, dt = self.complex_params()
        log_Abar, Bbar = discretize(A, B, dt, self.cfg.disc)
        return C, Bbar, log_Abar

    def forward(self, L: int) -> torch.Tensor:
        """Kernel (channels, H, L)."""
        C, Bbar, log_Abar = self.discrete()
        return vandermonde_kernel(C, Bbar, log_Abar, L)

    # -- recurrent mode -------------------------------------------------------------------------
    def default_state(self, batch: int) -> torch.Tensor:
        A = self.A_imag
        cdt = torch.complex128 if A.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, self.H, self.cfg.d_state // 2, dtype=cdt, device=A.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of ``x_k = Abar x_{k-1} + Bbar u_k``, ``y_k = 2 Re(C x_k)``.

        ``u`` (batch, H), ``state`` (batch, H, N/2) complex; returns ``y`` (batch, channels, H) and the new state.
        """
        C, Bbar, log_Abar = self.discrete()
        state = torch.exp(log_Abar) * state + Bbar * u.unsqueeze(-1)
        y = 2.0 * torch.einsum("chn,bhn->bch", C, state).real
        return y, state


def tied_dropout(x: torch.Tensor, p: float, training: bool = True, seq_dim: int = 1) -> torch.Tensor:
    """Dropout with one keep/drop draw per (example, channel), shared by every position along ``seq_dim``;
    kept entries are scaled by ``1/(1-p)``. The S4 repo's ``DropoutNd(tie=True)`` (src/models/nn/components.py:
    mask of shape (batch, channels, 1, ...), used when a config sets ``tie_dropout: true``). Identity in eval or
    at ``p = 0`` (no random numbers drawn)."""
    if not training or p <= 0:
        return x
    if not 0 <= p < 1:
        raise ConfigError(f"dropout probability must be in [0, 1), got {p}")
    shape = list(x.shape)
    shape[seq_dim] = 1
    keep = torch.rand(shape, device=x.device) > p
    return x * keep / (1 - p)


class TiedDropout(nn.Module):
    """:func:`tied_dropout` as a module on ``(batch, length, H)`` (``seq_dim=1``): one mask per example and
    channel, the same at every position (S4 repo ``DropoutNd`` with ``tie=True``, ``transposed=False``)."""

    def __init__(self, p: float = 0.5, seq_dim: int = 1) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.seq_dim = p, seq_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tied_dropout(x, self.p, self.training, self.seq_dim)

    def extra_repr(self) -> str:
        return f"p={self.p}, seq_dim={self.seq_dim}"


class S4D(nn.Module):
    """The S4D sequence layer on ``(batch, L, H)``: ``y = K * u + D u`` -> (conv dropout) -> GELU -> dropout ->
    pointwise Conv1d(H, 2H) -> GLU (§3). ``bidirectional``: a second kernel (own C) runs on the
    reversed sequence and the two outputs are summed."""

    def __init__(self, H: int, cfg: SSMConfig = SSMConfig(), generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.H, self.cfg = H, cfg
        self.kernel = S4DKernel(H, cfg, channels=2 if cfg.bidirectional else 1, generator=generator)
        D = torch.randn(H, generator=generator, dtype=torch.float64)
        self.D = nn.Parameter(D.to(torch.get_default_dtype()))
        self.out = nn.Conv1d(H, 2 * H, kernel_size=1)

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        """The linear SSM part ``K * u + D u`` on ``(batch, H, L)`` (convolution mode)."""
        L = u.shape[-1]
        K = self.kernel(L)
        y = fft_conv(u, K[0])
        if self.cfg.bidirectional:
            y = y + fft_conv(u.flip(-1), K[1]).flip(-1)
        return y + self.D.unsqueeze(-1) * u

    def _post(self, y: torch.Tensor) -> torch.Tensor:  # (batch, H, L) -> (batch, H, L)
        if self.training and self.cfg.conv_dropout > 0:  # FFTConv's own dropout, element-wise, before the GELU
            y = F.dropout(y, self.cfg.conv_dropout, True)
        y = F.gelu(y)
        if self.training and self.cfg.dropout > 0:
            if self.cfg.tie_dropout:  # one mask per (sample, channel), shared over the sequence (last dim here)
                y = tied_dropout(y, self.cfg.dropout, True, seq_dim=-1)
            else:
                y = F.dropout(y, self.cfg.dropout, True)
        return F.glu(self.out(y), dim=1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` (batch, L, H) -> (batch, L, H)."""
        return self._post(self.ssm(u.transpose(1, 2))).transpose(1, 2)

    def default_state(self, batch: int) -> torch.Tensor:
        return self.kernel.default_state(batch)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent mode, one position: ``u`` (batch, H) -> (batch, H). Causal layers only."""
        if self.cfg.bidirectional:
            raise ConfigError("S4D.step: a bidirectional layer has no recurrent mode; use bidirectional=False")
        y, state = self.kernel.step(u, state)
        y = y[:, 0] + self.D * u
        return self._post(y.unsqueeze(-1)).squeeze(-1), state


# --------------------------------------------------------------------------- block and decoder pooling

NORMS = ("batch", "layer")
POOLS = ("mean", "last", "max")


class Norm(nn.Module):
    """BatchNorm1d over (batch, length) or LayerNorm over channels, on ``(B, L, H)`` (S4 repo ``Normalization``)."""

    def __init__(self, kind: str, H: int) -> None:
        super().__init__()
        if kind not in NORMS:
            raise UnknownNameError(f"unknown norm {kind!r}; use one of {NORMS}")
        self.kind = kind
        self.norm = nn.BatchNorm1d(H) if kind == "batch" else nn.LayerNorm(H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H)
        if self.kind == "batch":
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class S4DBlock(nn.Module):
    """Residual S4D block (S4 repo ``SequenceResidualBlock``, configs ``model.prenorm`` / ``model.norm``):
    post-norm ``x = norm(x + dropout(S4D(x)))`` or pre-norm ``x = x + dropout(S4D(norm(x)))``.

    ``tie_dropout`` (official ``model.tie_dropout``; default False = element-wise ``nn.Dropout``): the residual
    dropout draws one mask per example and channel, shared over the sequence (:class:`TiedDropout`; the repo's
    block uses ``DropoutNd`` when ``tie_dropout``). The dropout inside the S4D layer is the layer's own
    (``SSMConfig.dropout`` / ``tie_dropout``).
    ``keep`` (optional, (B, L, 1)): multiplies the S4D input, so padding positions enter no convolution."""

    def __init__(self, H: int, cfg: SSMConfig, norm: str = "batch", prenorm: bool = False, dropout: float = 0.0,
                 generator: torch.Generator | None = None, tie_dropout: bool = False) -> None:
        super().__init__()
        self.layer = S4D(H, cfg, generator=generator)
        self.norm = Norm(norm, H)
        self.drop = TiedDropout(dropout) if tie_dropout else nn.Dropout(dropout)
        self.prenorm = prenorm

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        u = self.norm(x) if self.prenorm else x
        if keep is not None:
            u = u * keep
        y = x + self.drop(self.layer(u))
        return y if self.prenorm else self.norm(y)


def pool_sequence(h: torch.Tensor, mask: torch.Tensor | None = None, mode: str = "mean") -> torch.Tensor:
    """``(B, L, H) -> (B, H)``: mean (``mode: pool``), last position or max over positions (official
    ``SequenceDecoder``, src/tasks/decoders.py; ``max`` = ``cummax(...)[-1]``). With a ``mask`` (B, L) of real
    positions (padding at the end; official ``use_lengths``): over the real positions only."""
    if mode not in POOLS:
        raise UnknownNameError(f"unknown pool {mode!r}; use one of {POOLS}")
    if mask is None:
        if mode == "last":
            return h[:, -1]
        return h.mean(1) if mode == "mean" else h.max(1).values
    if mode == "last":  # the last real position (index length - 1)
        last = (mask.sum(1) - 1).clamp_min(0)
        return h[torch.arange(h.shape[0], device=h.device), last]
    if mode == "max":
        return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


# --------------------------------------------------------------------------- optimiser groups

def ssm_param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Param groups for AdamW: each S4DKernel's log_dt, A_real, A_imag, B get weight decay 0 and
    lr ``cfg.lr_dt`` / ``cfg.lr`` (None = ``lr``); all other parameters get ``lr``, ``weight_decay``."""
    special: dict[tuple[float, str], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, S4DKernel):
            for name in SSM_PARAM_NAMES:
                p = getattr(mod, name)
                if not p.requires_grad:
                    continue
                plr = mod.cfg.lr_dt if name == "log_dt" else mod.cfg.lr
                key = (lr if plr is None else plr, "dt" if name == "log_dt" else "AB")
                special.setdefault(key, []).append(p)
                seen.add(id(p))
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    groups: list[dict[str, Any]] = [{"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "default"}]
    for (glr, kind), ps in sorted(special.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        groups.append({"params": ps, "lr": glr, "weight_decay": 0.0, "name": f"ssm-{kind}"})
    return [g for g in groups if g["params"]]


def count_params(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


__all__ = ["INITS", "DISCRETIZATIONS", "NORMS", "POOLS", "SSMConfig", "S4DKernel", "S4D", "Norm", "S4DBlock", "pool_sequence",
           "tied_dropout", "TiedDropout",
           "init_diagonal", "hippo_legs_normal",
           "discretize", "vandermonde_kernel", "fft_conv", "recurrent_kernel", "ssm_param_groups"]

"""Weight formats and coding rate: RF8 (residual float, 8 bits) with its encode/decode, FP8 E4M3 /
E5M2 and INT8 baselines (per-tensor scaled fake quantisation), and the coding rate in bits per
parameter (empirical entropy, Exp-Golomb length) of uniformly quantised weights.

RF8 bit layout (ours; spec §3 leaves it to the paper, which we did not have):
``[s:1][E:4][R:3]`` with s the sign of w, E = e_max - e1 in 0..14 (e_max: the tensor's largest
leading exponent, kept as per-tensor side information; E = 15 codes 0, values more than 14 octaves
below e_max underflow to it) and R the residual term relative to the leading one: R = 0 none;
R = 1..4 a residual +2^(e1-R); R = 5..7 a residual -2^(e1-(R-3)), i.e. offsets 2..4. A residual
of relative sign - at offset 1 cannot occur (it would need |w| < 2^(e1-0.5), where e1 would round
down), so 3 bits hold every case.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.errors import UnknownNameError

RF8_MAX_OFFSET = 4
RF8_EXP_LEVELS = 15  # E = 0..14; 15 = zero


def _lead(w: torch.Tensor, floor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading power-of-two term: e = round(log2|w|) (``floor`` = TEST-ONLY broken variant); zeros
    map to a zero term (spec §7: log2(0) is -inf)."""
    a = w.abs()
    nz = a > 0
    lg = torch.log2(torch.where(nz, a, torch.ones_like(a)))
    e = torch.floor(lg) if floor else torch.round(lg)
    t = torch.where(nz, torch.sign(w) * torch.exp2(e), torch.zeros_like(w))
    return t, e


def rf8_value(w: torch.Tensor, max_offset: int = RF8_MAX_OFFSET, floor: bool = False) -> torch.Tensor:
    """RF8 of spec §3: w ~ t1 + t2 with t1 = sign(w) 2^round(log2|w|), t2 the same for r = w - t1,
    kept only when e1 - e2 <= ``max_offset`` (no exponent-range limit; see :func:`rf8_encode`)."""
    t1, e1 = _lead(w, floor)
    r = w - t1
    t2, e2 = _lead(r, floor)
    keep = (r != 0) & ((e1 - e2) <= max_offset)
    return t1 + torch.where(keep, t2, torch.zeros_like(t2))


def rf8_encode(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """uint8 codes of ``w`` (layout in the module docstring) and the tensor's e_max."""
    w = w.detach().float()
    t1, e1 = _lead(w)
    nz = t1 != 0
    emax = int(e1[nz].max()) if bool(nz.any()) else 0
    ecode = (emax - e1).clamp(min=0)
    under = ~nz | (ecode > RF8_EXP_LEVELS - 1)
    r = w - t1
    t2, e2 = _lead(r)
    off = e1 - e2
    has = (r != 0) & (off <= RF8_MAX_OFFSET)
    same = torch.sign(r) == torch.sign(w)  # residual adds to |w|
    rcode = torch.where(same, off, off + 3)
    rcode = torch.where(has, rcode, torch.zeros_like(rcode))
    ecode = torch.where(under, torch.full_like(ecode, RF8_EXP_LEVELS), ecode)
    rcode = torch.where(under, torch.zeros_like(rcode), rcode)
    sign = (w < 0) & ~under
    code = (sign.to(torch.int32) << 7) | (ecode.to(torch.int32) << 3) | rcode.to(torch.int32)
    return code.to(torch.uint8), emax


def rf8_decode(code: torch.Tensor, emax: int) -> torch.Tensor:
    c = code.to(torch.int32)
    sign = torch.where((c >> 7) & 1 == 1, -1.0, 1.0)
    ecode, rcode = (c >> 3) & 15, c & 7
    e1 = (emax - ecode).float()
    lead = torch.exp2(e1)
    off = torch.where(rcode <= 4, rcode, rcode - 3).float()
    rsign = torch.where(rcode <= 4, 1.0, -1.0)
    res = torch.where(rcode == 0, torch.zeros_like(lead), rsign * torch.exp2(e1 - off))
    val = sign * (lead + res)
    return torch.where(ecode == RF8_EXP_LEVELS, torch.zeros_like(val), val)


def signed_digits(v: torch.Tensor) -> torch.Tensor:
    """Minimal number of nonzero signed binary digits (+-1) of |v| (weight of its non-adjacent
    form): 2 for every 2^a +- 2^b, 1 for a power of two, 0 for zero. Exact for float32/64 values."""
    m, _ = torch.frexp(v.detach().double().abs())  # |v| = m 2^e, m in [0.5, 1)
    n = (m * 2.0 ** 53).to(torch.int64)  # exact integer mantissa
    x = ((3 * n) >> 1) ^ (n >> 1)  # NAF digit positions (Reitwiesner / "x xor 3x" identity)
    count = torch.zeros_like(x)
    for _ in range(56):  # popcount, vectorised over values
        count += x & 1
        x = x >> 1
    return count


# --------------------------------------------------------------------------- 8-bit baselines

def fake_quant(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """Round-trip ``w`` through an 8-bit format with a per-tensor scale (amax -> the format's max):
    ``fp8_e4m3``, ``fp8_e5m2``, ``int8`` (symmetric), ``rf8`` (encode/decode above)."""
    if fmt in ("rf8", "rf8-unsigned"):
        code, emax = rf8_encode(w)
        if fmt == "rf8-unsigned":  # TEST-ONLY teeth: the sign bit is lost in the code
            code = code & 0x7F
        return rf8_decode(code, emax).to(w.dtype)
    amax = float(w.detach().abs().max())
    if amax == 0.0:
        return w.clone()
    if fmt == "int8":
        s = amax / 127.0
        return (w / s).round().clamp(-127, 127) * s
    dt = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}.get(fmt)
    if dt is None:
        raise UnknownNameError(f"unknown 8-bit format {fmt!r}; use rf8, fp8_e4m3, fp8_e5m2 or int8")
    s = amax / float(torch.finfo(dt).max)
    return (w / s).to(dt).to(w.dtype) * s


@torch.no_grad()
def quantize_weights_(model: nn.Module, fmt: str) -> nn.Module:
    """Apply ``fmt`` to every weight with >= 2 dims (weights only, before inference; spec §3)."""
    for p in model.parameters():
        if p.dim() >= 2:
            p.copy_(fake_quant(p, fmt))
    return model


# --------------------------------------------------------------------------- coding rate

def all_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def entropy_bits(x: torch.Tensor, step: float) -> float:
    """Empirical entropy (bits / value) of round(x / step): the coding rate of spec §3."""
    _, counts = torch.unique(torch.round(x.detach().double() / step), return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(p * torch.log2(p)).sum())


def exp_golomb_bits(x: torch.Tensor, step: float) -> float:
    """Mean signed Exp-Golomb (order 0) code length of round(x / step), as BackSlash reports."""
    q = torch.round(x.detach().double() / step).to(torch.int64)
    u = torch.where(q > 0, 2 * q - 1, -2 * q)  # zig-zag to unsigned
    return float((2 * torch.floor(torch.log2((u + 1).double())) + 1).mean())


def zero_fraction(x: torch.Tensor, step: float) -> float:
    return float((torch.round(x.detach() / step) == 0).double().mean())


def rel_error_bound_sweep(lo: float = -12.0, hi: float = 12.0, n: int = 200_001) -> tuple[float, torch.Tensor]:
    """Max relative error of :func:`rf8_value` over a log-uniform sweep of |w| in [2^lo, 2^hi]."""
    w = torch.exp2(torch.linspace(lo, hi, n, dtype=torch.float64))
    w = torch.cat([w, -w])
    return float(((rf8_value(w) - w).abs() / w.abs()).max()), w


def exact_two_term_values(a_range: range = range(-8, 8), max_gap: int = RF8_MAX_OFFSET) -> torch.Tensor:
    """All w = +-(2^a +- 2^b) with 1 <= a - b <= max_gap, and +-2^a (exactly representable)."""
    vals = []
    for a in a_range:
        vals.append(2.0 ** a)
        for g in range(1, max_gap + 1):
            vals += [2.0 ** a + 2.0 ** (a - g), 2.0 ** a - 2.0 ** (a - g)]
    v = torch.tensor(vals, dtype=torch.float64)
    return torch.cat([v, -v])

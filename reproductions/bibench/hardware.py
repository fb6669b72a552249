"""Hardware-inference track, CPU stand-in (spec §4, §6): a bit-packed XNOR + popcount matmul vs a float
matmul on the same +-1 matrices. Report only: BiBench measures ARM devices through Larq Compute Engine
and daBNN, which a CPU CI cannot reproduce.

For rows a, b in {-1, +1}^K packed as bits (1 for +1) into uint64 words (zero padding),
a . b = K - 2 popcount(a XOR b)  (= 2 popcount(XNOR) - K over the K real bits).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def pack_pm1(a: np.ndarray) -> np.ndarray:
    """(M, K) array of +-1 -> (M, ceil(K/64)) uint64 words (bit = 1 for +1, zero-padded)."""
    bits = np.packbits(a > 0, axis=1)
    pad = (-bits.shape[1]) % 8
    if pad:
        bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.ascontiguousarray(bits).view(np.uint64)


def xnor_popcount_matmul(pa: np.ndarray, pb: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """a @ b.T for packed +-1 rows ``pa`` (M, W) and ``pb`` (N, W) of true length ``k`` (int32 result)."""
    out = np.empty((pa.shape[0], pb.shape[0]), dtype=np.int32)
    for i in range(0, pa.shape[0], block):  # row blocks bound the (block, N, W) temporary
        x = np.bitwise_xor(pa[i:i + block, None, :], pb[None, :, :])
        out[i:i + block] = k - 2 * np.bitwise_count(x).sum(-1, dtype=np.int32)
    return out


@dataclass
class BenchResult:
    max_abs_err: float
    t_float_s: float
    t_binary_s: float
    storage_ratio: float

    @property
    def speedup(self) -> float:
        return self.t_float_s / self.t_binary_s


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def micro_benchmark(m: int, n: int, k: int, repeats: int, seed: int) -> BenchResult:
    """Time (best of ``repeats``) float32 a @ b.T vs the packed XNOR-popcount kernel; check they agree."""
    rng = np.random.default_rng(seed)
    a = np.where(rng.random((m, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    b = np.where(rng.random((n, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    pa, pb = pack_pm1(a), pack_pm1(b)
    ref = a @ b.T
    got = xnor_popcount_matmul(pa, pb, k)
    err = float(np.abs(ref - got).max())
    t_f = _best(lambda: a @ b.T, repeats)
    t_b = _best(lambda: xnor_popcount_matmul(pa, pb, k), repeats)
    storage = (a.nbytes + b.nbytes) / (pa.nbytes + pb.nbytes)
    return BenchResult(err, t_f, t_b, storage)

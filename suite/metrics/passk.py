"""Unbiased pass@k (Chen et al. 2021, Eq. 1): 1 - C(n-c, k) / C(n, k), computed as the stable product
1 - prod_{i=n-c+1}^{n} (1 - k / i)."""
from __future__ import annotations

from typing import Any

import numpy as np

from suite.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ConfigError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}; "
                          f"draw at least k samples per problem")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(n: Any, c: Any, k: int) -> float:
    """Mean pass@k over problems with ``n[i]`` samples and ``c[i]`` correct ones."""
    ns, cs = np.broadcast_arrays(np.asarray(n, dtype=np.int64).ravel(), np.asarray(c, dtype=np.int64).ravel())
    if ns.size == 0:
        raise ConfigError("mean_pass_at_k got no problems; pass one (n, c) per problem")
    return float(np.mean([pass_at_k(int(a), int(b), k) for a, b in zip(ns, cs)]))

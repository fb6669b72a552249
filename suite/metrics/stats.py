"""Statistical tests for exactness claims: chi-square goodness of fit of samples against an
enumerated distribution (used by the samplers' reproductions: SJD, AWRS)."""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats


def chi2_gof(codes: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """p-value of the chi-square goodness of fit of sample ``codes`` (ints indexing ``probs``).

    Bins with expected count < ``min_expected`` are pooled into one bin; if the pooled bin is
    itself too small it is merged into the smallest kept bin (the test's validity condition).
    """
    n = codes.numel()
    obs = torch.bincount(codes.reshape(-1), minlength=probs.numel()).double().numpy()
    p = probs.double()
    exp = (p / p.sum()).numpy() * n
    big = exp >= min_expected
    o, e = list(obs[big]), list(exp[big])
    o_small, e_small = obs[~big].sum(), exp[~big].sum()
    if e_small >= min_expected:
        o.append(o_small)
        e.append(e_small)
    elif e:
        j = int(np.argmin(e))
        o[j] += o_small
        e[j] += e_small
    if len(e) < 2:
        return 1.0
    return float(stats.chisquare(np.asarray(o), np.asarray(e)).pvalue)

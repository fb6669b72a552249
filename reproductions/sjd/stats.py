"""Two-sample tests between AR and SJD samples (spec §6; scipy.stats). The goodness-of-fit test
against enumerated probabilities is shared: :func:`suite.metrics.stats.chi2_gof`."""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats


def marginal_two_sample(a: torch.Tensor, b: torch.Tensor, vocab: int) -> float:
    """Bonferroni-corrected min p-value over positions of 2 x V contingency chi-square tests."""
    ps = []
    for t in range(a.shape[1]):  # one small test per position (64 at most)
        table = np.stack([np.bincount(a[:, t].numpy(), minlength=vocab), np.bincount(b[:, t].numpy(), minlength=vocab)])
        table = table[:, table.sum(0) > 0]
        ps.append(1.0 if table.shape[1] < 2 else stats.chi2_contingency(table).pvalue)
    return float(min(1.0, min(ps) * len(ps)))


def bigram_permutation_test(a: torch.Tensor, b: torch.Tensor, vocab: int, side: int, n_perm: int = 2000,
                            gen: torch.Generator | None = None, max_vocab: int = 64) -> float:
    """Two-sample permutation test on horizontal + vertical neighbour-pair frequencies.

    Statistic: squared distance of the two groups' mean per-image pair histograms, each coordinate
    scaled by its pooled mean; group labels are permuted per image (images are the unit). Vocabularies
    above ``max_vocab`` are folded (token % max_vocab) so the histogram stays small (still a valid test).
    """
    x = torch.cat([a, b])
    if vocab > max_vocab:
        x, vocab = x % max_vocab, max_vocab
    t = x.shape[1]
    j = torch.arange(t)
    h = (j % side < side - 1).nonzero().squeeze(1)
    v = (j < t - side).nonzero().squeeze(1)
    pairs = torch.cat([x[:, h] * vocab + x[:, h + 1], vocab * vocab + x[:, v] * vocab + x[:, v + side]], 1)
    hist = torch.zeros(x.shape[0], 2 * vocab * vocab, dtype=torch.float64)
    hist.scatter_add_(1, pairs, torch.ones_like(pairs, dtype=torch.float64))
    hist = hist / hist.mean(0).clamp(min=1e-9).sqrt()
    n_a = a.shape[0]
    labels = torch.zeros(x.shape[0], dtype=torch.float64)
    labels[:n_a] = 1
    perms = labels[torch.rand(n_perm, x.shape[0], generator=gen).argsort(1)]
    signs = torch.cat([labels[None], perms])  # (1 + n_perm, n)
    w = signs / n_a - (1 - signs) / (x.shape[0] - n_a)
    stat = ((w @ hist) ** 2).sum(1)
    return float(((stat[1:] >= stat[0]).sum() + 1) / (n_perm + 1))

"""suite.rl against hand computations."""
import numpy as np
import pytest
import torch

from suite.rl import dual_clip_surrogate, group_advantage


def test_group_advantage_is_grpo_per_group_and_the_baseline_without_std():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 3.0, 5.0])
    g = torch.tensor([7, 7, 7, 7, 2, 2, 9])  # any ids, any order; a group of one rollout
    a = group_advantage(r, g)
    sd = np.std([1, 0, 0, 1], ddof=1)
    np.testing.assert_allclose(a[:4].numpy(), (np.array([1, 0, 0, 1]) - 0.5) / (sd + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(a[4:6].numpy(), (np.array([1.0, 3.0]) - 2) / (np.sqrt(2) + 1e-6), rtol=1e-6)
    assert a[6] == 0.0  # one rollout: nothing to compare with
    np.testing.assert_allclose(group_advantage(r, g, std_norm=False).numpy(), [0.5, -0.5, -0.5, 0.5, -1, 1, 0])


def test_dual_clip_surrogate_regions():
    z = torch.zeros(1)
    assert float(dual_clip_surrogate(z, z, torch.tensor([2.0]), 0.2, 0.28, 10)) == pytest.approx(-2.0)
    # A > 0, ratio e: clipped at 1 + clip_high
    assert float(dual_clip_surrogate(torch.ones(1), z, torch.ones(1), 0.2, 0.28, 10)) == pytest.approx(-1.28)
    # A < 0, ratio e^-1: the lower clip 1 - clip_low is the max of the two
    assert float(dual_clip_surrogate(-torch.ones(1), z, -torch.ones(1), 0.2, 0.28, 10)) == pytest.approx(0.8)
    # A < 0, ratio e^5: the dual clip caps the loss at c |A|
    assert float(dual_clip_surrogate(torch.full((1,), 5.0), z, -torch.ones(1), 0.2, 0.28, 10)) == pytest.approx(10.0)
    # without the dual clip the same token would cost e^5
    assert float(dual_clip_surrogate(torch.full((1,), 5.0), z, -torch.ones(1), 0.2, 0.28, 1e9)) == \
        pytest.approx(np.exp(5.0), rel=1e-5)

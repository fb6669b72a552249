"""suite.rl against hand computations."""
import numpy as np
import pytest
import torch

from suite.rl import (accumulate_step, dual_clip_surrogate, group_advantage, micro_batches, microbatch_logprobs,
                      token_logprobs)


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


def test_token_logprobs_is_the_log_softmax_at_each_target():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g, dtype=torch.float64).to(torch.bfloat16)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    got = token_logprobs(logits, targets)
    assert got.dtype == torch.float32 and got.shape == (2, 5)
    for b in range(2):
        for t in range(5):
            row = logits[b, t].double()
            want = row[targets[b, t]] - torch.logsumexp(row, 0)  # log p(y_t) by hand
            assert abs(float(got[b, t]) - float(want)) < 1e-5
    # a causal LM: position t scores token t + 1
    tokens = torch.randint(0, 7, (2, 6), generator=g)
    lp = token_logprobs(logits[:, :5], tokens[:, 1:])
    assert torch.equal(lp[:, 2], token_logprobs(logits[:, 2:3], tokens[:, 3:4])[:, 0])


def test_micro_batches_respect_the_token_budget():
    lengths = [900, 50, 400, 400, 2000, 10, 300]
    groups = micro_batches(lengths, 1000)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:  # padded cost = rows × longest row, or one row alone
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 1000
    assert len(micro_batches(lengths, 10 ** 6)) == 1


def test_accumulate_step_is_the_gradient_of_the_sum():
    """fit backpropagates the returned tensor once: its gradient and value must be those of Σ parts."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    xs = [torch.randn(5, 3) for _ in range(3)]
    ws = [0.2, 0.5, 0.3]
    parts = [lambda x=x, w=w: net(x).pow(2).mean() * w for x, w in zip(xs, ws)]
    net(torch.ones(2, 3)).sum().backward()  # the previous fit step's gradient, still on the parameters
    out = accumulate_step(net, parts)
    net.zero_grad(set_to_none=True)
    out.backward()
    got = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    ref = sum(f() for f in parts)
    ref.backward()
    assert float(out.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(got, net.parameters()))


def test_microbatch_logprobs_equal_one_pass_on_every_real_token():
    """A causal stand-in (a running sum of embeddings, then a head): micro-batches cut to their longest row give the
    one-pass log-probs at every position before a row's end, and 0 past its micro-batch width."""
    g = torch.Generator().manual_seed(0)
    emb, head = torch.randn(11, 4, generator=g), torch.randn(4, 11, generator=g)
    logits_of = lambda x, m: (emb[x] * m[..., None]).cumsum(1) @ head  # noqa: E731
    lengths = [9, 3, 6, 9, 2]
    ids = torch.randint(0, 11, (5, 9), generator=g)
    mask = torch.arange(9)[None] < torch.tensor(lengths)[:, None]
    ref = token_logprobs(logits_of(ids[:, :-1], mask[:, :-1]), ids[:, 1:])
    groups = micro_batches(lengths, 12)
    assert len(groups) > 2
    got = microbatch_logprobs(logits_of, ids, mask.float(), lengths, groups)
    real = torch.arange(8)[None] < torch.tensor(lengths)[:, None] - 1
    assert torch.allclose(got[real], ref[real], atol=1e-6)
    width = {i: max(lengths[j] for j in grp) for grp in groups for i in grp}
    for i, row in enumerate(got):
        assert (row[width[i] - 1:] == 0).all()

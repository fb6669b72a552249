"""Minibatch draws of suite.ood: WILDS' GroupSampler (Camelyon17's penalised methods) and the official ColoredMNIST
clove_train slice; and that train_ood feeds them (with the penalty options) to the objective."""
import pytest
import torch

from suite.errors import ConfigError
from suite.ood import EnvData
from suite.ood import training as T
from suite.ood.net import mlp_classifier


def _three_hospitals(sizes=(300, 200, 100)):
    env = torch.cat([torch.full((n,), e, dtype=torch.long) for e, n in enumerate(sizes)])
    x = torch.arange(len(env), dtype=torch.float32)[:, None]  # x = the example's index
    return EnvData(x, torch.zeros(len(env)), env, len(sizes))


def test_sample_groups_is_wilds_group_sampler():
    """Each batch: 2 distinct hospitals, uniform over hospitals (not over examples), 16 distinct patches from each,
    environment ids renumbered to the 2 groups present (n_envs 2)."""
    d = _three_hospitals()
    gen = torch.Generator().manual_seed(0)
    seen = torch.zeros(3)
    for _ in range(600):
        b = d.sample_groups(16, 2, gen)
        assert b.n_envs == 2 and len(b) == 32 and torch.equal(torch.bincount(b.env), torch.tensor([16, 16]))
        origin = d.env[b.x[:, 0].long()]
        for g in range(2):
            src = origin[b.env == g]
            assert len(set(src.tolist())) == 1  # one hospital per group
            assert len(set(b.x[b.env == g, 0].tolist())) == 16  # without replacement (group larger than 16)
        assert origin[b.env == 0][0] != origin[b.env == 1][0]  # distinct hospitals
        seen[origin.unique()] += 1
    assert torch.allclose(seen / 600, torch.full((3,), 2 / 3), atol=0.06)  # uniform over hospitals


def test_sample_groups_small_group_draws_with_replacement_and_checks_counts():
    d = _three_hospitals((5, 40, 40))
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        b = d.sample_groups(8, 3, gen)
        assert torch.equal(torch.bincount(b.env), torch.tensor([8, 8, 8]))
    with pytest.raises(ConfigError):
        d.sample_groups(8, 4, gen)


def test_slice_per_env_is_the_official_clove_train_slice():
    """per_env distinct examples from each environment, drawn among its first min-env-size examples."""
    d = _three_hospitals((300, 200, 100))
    gen = torch.Generator().manual_seed(2)
    hits = torch.zeros(len(d))
    for _ in range(200):
        b = d.slice_per_env(64, gen)
        assert b.n_envs == 3 and torch.equal(torch.bincount(b.env), torch.tensor([64, 64, 64]))
        for e in range(3):
            pos = b.x[b.env == e, 0].long() - int(torch.nonzero(d.env == e)[0])  # position within the env
            assert len(set(pos.tolist())) == 64 and int(pos.max()) < 100
        hits[b.x[:, 0].long()] += 1
    assert hits[100:300].sum() == 0 and hits[400:500].sum() == 0  # past the smallest env's size: never drawn
    assert hits[:100].min() > 0 and hits[500:].min() > 0
    with pytest.raises(ConfigError):
        d.slice_per_env(101, gen)


@pytest.mark.parametrize("draw", ["groups", "slice"])
def test_train_ood_draws_and_penalty_options_reach_the_objective(monkeypatch, draw):
    seen = []
    real = T.ood_loss

    def spy(m, b, pen, lam, rho, env_reduce="mean"):
        seen.append((len(b), b.n_envs, env_reduce, pen.keywords if hasattr(pen, "keywords") else {}))
        return real(m, b, pen, lam, rho, env_reduce)

    monkeypatch.setattr(T, "ood_loss", spy)
    d = EnvData(torch.randn(600, 6), (torch.rand(600) < 0.5).float(), torch.arange(600) % 3, 3)
    cfg = T.OodTrainConfig(steps=3, lam=10.0, rho=0.0, batch_per_env=8, draw=draw, groups_per_batch=2,
                           env_reduce="sum" if draw == "slice" else "mean", penalty_kwargs={"width": 0.1})
    torch.manual_seed(0)
    T.train_ood(mlp_classifier(6, (8,)), d, "clove", cfg)
    want = (16, 2, "mean", {"width": 0.1}) if draw == "groups" else (24, 3, "sum", {"width": 0.1, "reduce": "sum"})
    assert seen == [want] * 3


def test_penalty_options_a_method_does_not_take_are_rejected():
    with pytest.raises(ConfigError):
        T.configured_penalty("vrex", T.OodTrainConfig(steps=1, penalty_kwargs={"width": 0.1}))
    with pytest.raises(ConfigError):
        T.configured_penalty("irm", T.OodTrainConfig(steps=1, env_reduce="sum"))

"""Penalties against closed forms / direct formulas, the loss-scaling rule and the worst-env metric."""
import pytest
import torch
import torch.nn.functional as F

from suite.ood import METHODS, EnvData, combine, env_accuracies, ood_loss, worst_env_accuracy
from suite.ood import clove, fishr, iga, irm, sd, vrex
from suite.ood.net import mlp_classifier
from suite.ood.objective import forward


def _data(seed=0, n=40, d=6, envs=2):
    g = torch.Generator().manual_seed(seed)
    return EnvData.from_pairs([(torch.randn(n, d, generator=g), (torch.rand(n, generator=g) < 0.5).float())
                               for _ in range(envs)])


def _out(seed=0):
    torch.manual_seed(seed)
    return forward(mlp_classifier(6, (8,)), _data(seed))


def test_irm_matches_closed_form():
    out = _out()
    z, y = out.logits, out.y
    closed = torch.stack([((torch.sigmoid(z) - y) * z)[out.env == e].mean() for e in range(2)]).pow(2).mean()
    assert torch.allclose(irm.penalty(out), closed, atol=1e-6)


def test_vrex_and_sd():
    out = _out()
    L = torch.stack([F.binary_cross_entropy_with_logits(out.logits[out.env == e], out.y[out.env == e])
                     for e in range(2)])
    assert torch.allclose(vrex.penalty(out), ((L - L.mean()) ** 2).mean(), atol=1e-6)
    assert torch.allclose(sd.penalty(out), out.logits.pow(2).mean())


def test_fishr_per_example_grads_closed_form():
    out = _out()
    r = torch.sigmoid(out.logits) - out.y
    closed = torch.cat([r[:, None] * out.features, r[:, None]], 1)
    assert torch.allclose(fishr.per_example_head_grads(out), closed, atol=1e-5)


def test_gradient_penalties_vanish_on_identical_envs():
    d = _data()
    twin = EnvData(torch.cat([d.x[d.env == 0]] * 2), torch.cat([d.y[d.env == 0]] * 2),
                   torch.cat([torch.zeros(40), torch.ones(40)]).long(), 2)
    torch.manual_seed(0)
    out = forward(mlp_classifier(6, (8,)), twin)
    for pen in (iga.penalty, fishr.penalty, vrex.penalty):
        assert float(pen(out).detach()) == pytest.approx(0.0, abs=1e-10)
    assert float(iga.penalty(_out())) > 0 and float(fishr.penalty(_out())) > 0


def _official_mmce(z, y, width):
    """The official mmce_penalty (RFC coloredmnist/train.py clove_train, src/algorithms/CLOvE.py) as a double sum."""
    p = torch.sigmoid(z)
    r = torch.where(p > 0.5, p, 1 - p)
    c = ((z > 0) == (y > 0.5)).float()
    n = len(z)
    return sum(float((c[i] - r[i]) * (c[j] - r[j]) * torch.exp(-(r[i] - r[j]).abs() / width))
               for i in range(n) for j in range(n)) / n ** 2


@pytest.mark.parametrize("width", [0.4, 0.1])
def test_mmce_matches_the_official_double_sum(width):
    """No square root (the old suite.ood.clove took sqrt of this) and the kernel width as a parameter."""
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(12, generator=g), (torch.rand(12, generator=g) < 0.5).float()
    assert float(clove.mmce(z, y, width)) == pytest.approx(_official_mmce(z, y, width), rel=1e-5)


def test_clove_penalty_width_and_reduction_over_environments():
    """reduce="mean": WILDS CLOvE (penalty /= n_groups); "sum": ColoredMNIST clove_train (train_penalty += mmce)."""
    out = _out()
    per_env = [_official_mmce(out.logits[out.env == e].detach(), out.y[out.env == e], 0.1) for e in range(2)]
    assert float(clove.penalty(out, width=0.1)) == pytest.approx(sum(per_env) / 2, rel=1e-5)
    assert float(clove.penalty(out, width=0.1, reduce="sum")) == pytest.approx(sum(per_env), rel=1e-5)
    assert float(clove.penalty(out, width=0.1)) != pytest.approx(float(clove.penalty(out)), rel=1e-3)


def test_ood_loss_sums_the_environment_risks_when_asked():
    torch.manual_seed(0)
    model, d = mlp_classifier(6, (8,)), _data()
    out = forward(model, d)
    mean = float(ood_loss(model, d, clove.penalty, 0.0, 0.0))
    assert float(ood_loss(model, d, clove.penalty, 0.0, 0.0, env_reduce="sum")) == pytest.approx(
        float(out.env_losses.sum()), rel=1e-6) and mean == pytest.approx(float(out.env_losses.mean()), rel=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_backpropagates(name):
    torch.manual_seed(0)
    model = mlp_classifier(6, (8,))
    loss = ood_loss(model, _data(), METHODS[name].penalty, 1000.0, 0.0011)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_loss_divided_by_lambda_above_one():
    e, p, l2 = torch.tensor(0.5), torch.tensor(0.2), torch.tensor(3.0)
    assert float(combine(e, p, 1000.0, l2, 0.001)) == pytest.approx((0.5 + 0.003 + 200.0) / 1000.0)
    assert float(combine(e, p, 0.5, l2, 0.001)) == pytest.approx(0.5 + 0.003 + 0.1)


def test_worst_env_is_min_over_envs():
    torch.manual_seed(0)
    model, d = mlp_classifier(6, (8,)), _data(envs=3)
    accs = env_accuracies(model, d)
    assert worst_env_accuracy(model, d) == pytest.approx(float(accs.min()))
    with torch.no_grad():
        pred = (model(d.x).reshape(-1) > 0).float()
    for e in range(3):
        assert float(accs[e]) == pytest.approx(float((pred == d.y)[d.env == e].float().mean()))

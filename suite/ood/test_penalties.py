"""Penalties against closed forms / direct formulas, the loss-scaling rule and the worst-env metric."""
import pytest
import torch
import torch.nn.functional as F

from suite.errors import ConfigError
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


def _official_split_half_irm(out):
    """WILDS / RFC src/algorithms/IRM.py as written: one scalar dummy scale, a Python loop over the groups present
    in the batch (split_into_groups: each group's examples in batch order), irm_penalty = grad(mean of losses[0::2])
    * grad(mean of losses[1::2]), summed over the groups and divided by n_groups_per_batch."""
    scale = torch.tensor(1.0, requires_grad=True)
    groups = torch.unique(out.env)
    pen = 0.0
    for g in groups.tolist():
        idx = torch.nonzero(out.env == g).flatten()
        losses = F.binary_cross_entropy_with_logits(scale * out.logits[idx], out.y[idx], reduction="none")
        g1 = torch.autograd.grad(losses[0::2].mean(), [scale], create_graph=True)[0]
        g2 = torch.autograd.grad(losses[1::2].mean(), [scale], create_graph=True)[0]
        pen = pen + torch.sum(g1 * g2)
    return pen / groups.numel()


@pytest.mark.parametrize("n_envs,present", [(3, (0, 1, 2)), (3, (0, 2)), (2, (0, 1))])
def test_irm_split_half_matches_the_official_per_group_loop(n_envs, present):
    """Camelyon17's IRMv1 (official irm_penalty): value and parameter gradients (create_graph) equal the per-group
    loop with a scalar dummy scale, on a batch whose groups are interleaved and of odd and even sizes; groups absent
    from the batch do not count in the average; it differs from the squared ColoredMNIST form."""
    g = torch.Generator().manual_seed(3)
    env = torch.tensor(present)[torch.randint(len(present), (37,), generator=g)]  # interleaved, uneven sizes
    d = EnvData(torch.randn(37, 6, generator=g), (torch.rand(37, generator=g) < 0.5).float(), env, n_envs)
    torch.manual_seed(0)
    model = mlp_classifier(6, (8,))
    params = list(model.parameters())
    mine = irm.penalty(forward(model, d), form="split_half")
    ref = _official_split_half_irm(forward(model, d))
    assert float(mine) == pytest.approx(float(ref), rel=1e-5, abs=1e-9)
    for a, b in zip(torch.autograd.grad(mine, params), torch.autograd.grad(ref, params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    squared = irm.penalty(forward(model, d))
    assert float(squared) != pytest.approx(float(mine), rel=1e-2)
    assert float(irm.penalty(forward(model, d), form="squared")) == float(squared)  # the default is "squared"


def test_irm_split_half_pairs_the_even_and_odd_examples_of_each_group():
    """Hand-checked: per-example d loss / ds = (sigmoid(z) - y) z; group 0 = examples 0, 2, 3 (in batch order: even
    half {0, 3}, odd half {2}), group 1 = examples 1, 4 (even {1}, odd {4})."""
    z = torch.tensor([0.5, -1.0, 2.0, 0.3, 1.5])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    from suite.ood.objective import EnvOutputs

    out = EnvOutputs(z, y, torch.tensor([0, 1, 0, 0, 1]), 2)
    d = (torch.sigmoid(z) - y) * z
    want = ((d[0] + d[3]) / 2 * d[2] + d[1] * d[4]) / 2
    assert float(irm.penalty(out, form="split_half")) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ConfigError):
        irm.penalty(out, form="halves")


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

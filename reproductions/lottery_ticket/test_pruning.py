"""Invariants of the generic pruning utilities (spec §6 smoke: masking invariants)."""
import pytest
import torch
from torch import nn

from reproductions.lottery_ticket import pruning as P
from suite.errors import ConfigError


def _mlp(seed: int = 0, d: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def test_prunable_params_are_weights_only():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    params = P.prunable_params(net)
    assert list(params) == ["0.weight", "3.weight"]
    rates = P.layer_rates(net, fc_rate=0.2, conv_rate=0.1)
    assert rates == {"0.weight": 0.1, "3.weight": 0.1}  # the output layer at fc_rate / 2
    with pytest.raises(ConfigError):
        P.prunable_params(nn.ReLU())


def test_layerwise_rates_and_counts_over_rounds():
    net = _mlp()
    params = P.prunable_params(net)
    rates = P.layer_rates(net, fc_rate=0.2)
    assert list(rates.values()) == [0.2, 0.2, 0.1]  # output layer at half rate
    masks = P.ones_masks(params)
    sizes = {k: p.numel() for k, p in params.items()}
    g = torch.Generator().manual_seed(1)
    for r in range(1, 6):
        # prune by the magnitudes of freshly perturbed "trained" weights each round
        trained = {k: torch.randn(p.shape, generator=g) for k, p in params.items()}
        new = P.magnitude_prune(trained, masks, rates)
        assert all((new[k] <= masks[k]).all() for k in masks), "a pruned weight came back"
        masks = new
        assert P.counts(masks) == P.expected_counts(sizes, rates, r)
        if r == 1:  # hand-computed: 20% of 19200 and 30000, 10% of 1000
            assert list(P.counts(masks).values()) == [15360, 24000, 900]
    c = P.counts(masks)
    assert abs(c["4.weight"] / 1000 - 0.9 ** 5) < 0.003 and abs(c["0.weight"] / 19200 - 0.8 ** 5) < 1e-3


def test_magnitude_prune_removes_the_smallest():
    w = {"a": torch.tensor([[0.5, -0.1, 2.0, -3.0, 0.05]])}
    m = {"a": torch.tensor([[True, True, True, True, False]])}
    new = P.magnitude_prune(w, m, {"a": 0.5})  # 4 remaining -> prune 2: |-0.1| and |0.5|
    assert new["a"].tolist() == [[False, False, True, True, False]]


def test_global_prune_ranks_across_layers():
    w = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([10.0, 0.5, 20.0, 30.0])}
    m = P.ones_masks(w)
    new = P.global_magnitude_prune(w, m, 3 / 7)
    assert new["a"].tolist() == [False, False, True] and new["b"].tolist() == [True, False, True, True]


def test_keep_top_is_the_stable_sort_prefix_ties_and_nan_included():
    """The selection (kthvalue + earliest ties) keeps exactly what a stable descending argsort's first k keep."""
    def by_sort(x, k):
        keep = torch.zeros(x.numel(), dtype=torch.bool)
        keep[torch.argsort(x.flatten(), descending=True, stable=True)[:k]] = True
        return keep.view_as(x)

    g = torch.Generator().manual_seed(0)
    ties = torch.randint(0, 4, (6, 50), generator=g).float()  # heavy ties
    ties[0, :10] = -1.0  # pruned entries score -1 (never revived)
    nan = torch.randn(300, generator=g)
    nan[[3, 77, 200]] = float("nan")
    for x in (ties, torch.randn(7, 9, generator=g), nan):
        for k in range(0, x.numel() + 1):
            assert torch.equal(P._keep_top(x, k), by_sort(x, k)), (x.shape, k)


def test_random_masks_keep_per_layer_counts_and_differ():
    net = _mlp()
    params = P.prunable_params(net)
    masks = P.magnitude_prune(params, P.ones_masks(params), P.layer_rates(net, 0.5))
    rnd = P.random_masks(masks, torch.Generator().manual_seed(0))
    assert P.counts(rnd) == P.counts(masks)
    assert any((rnd[k] != masks[k]).any() for k in masks)


def _train_masked(mask_grads: bool, remask: bool, steps: int = 30) -> tuple[float, float]:
    net = _mlp()
    params = P.prunable_params(net)
    masks = P.random_masks(P.magnitude_prune(params, P.ones_masks(params), P.layer_rates(net, 0.6)),
                           torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-3)
    g = torch.Generator().manual_seed(0)
    with P.MaskedTraining(net, masks, mask_grads=mask_grads, remask=remask) as mt:
        for _ in range(steps):
            x, y = torch.randn(32, 64, generator=g), torch.randint(0, 10, (32,), generator=g)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mt.on_step()
        moments = max(float(opt.state[params[k]]["exp_avg"][~m].abs().max()) for k, m in masks.items())
    return P.masked_max_abs(params, masks), moments


def test_masked_weights_stay_exactly_zero_under_adam():
    assert _train_masked(True, True) == (0.0, 0.0)
    assert _train_masked(True, False) == (0.0, 0.0)  # gradient masking alone keeps Adam's moments at 0
    revived, moments = _train_masked(False, False)
    assert revived > 0 and moments > 0  # the pitfall of spec §7 is real


def test_reset_to_restores_init_bitwise_on_survivors():
    net = _mlp()
    theta0 = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    params = P.prunable_params(net)
    masks = P.magnitude_prune(params, P.ones_masks(params), P.layer_rates(net, 0.2))
    P.reset_to(net, theta0, masks)
    for k, m in masks.items():
        assert torch.equal(params[k][m], theta0[k][m]) and (params[k][~m] == 0).all()
    assert torch.equal(net.state_dict()["0.bias"], theta0["0.bias"])


def test_prune_to_counts_rejects_too_many():
    w = {"a": torch.ones(4)}
    with pytest.raises(ConfigError):
        P.prune_to_counts(w, {"a": 3}, {"a": torch.tensor([True, False, False, True])})


def test_prune_largest_variant_removes_the_largest_trained_weights():
    """Teeth variant ``prune_largest``: same per-layer counts, but the largest |w| go instead of the smallest."""
    from reproductions.lottery_ticket.method import IMPSettings, prune_step
    from suite.train import TrainConfig

    net = _mlp(3)
    masks = P.ones_masks(P.prunable_params(net))
    ok = prune_step(net, net, masks, IMPSettings(rounds=1, train=TrainConfig(steps=1)))
    bad = prune_step(net, net, masks, IMPSettings(rounds=1, train=TrainConfig(steps=1), variant="prune_largest"))
    assert P.counts(ok) == P.counts(bad)
    for k, w in P.prunable_params(net).items():
        a = w.detach().abs()
        assert float(a[ok[k]].min()) >= float(a[~ok[k]].max())   # paper: the smallest go
        assert float(a[bad[k]].max()) <= float(a[~bad[k]].min())  # broken: the largest go

"""train_ood's penalty schedule: the anneal phase (its penalty weight) and the optimizer reset when it ends, as the
official WILDS IRM / VREX runs of the RFC Camelyon17 code train (src/algorithms/IRM.py, VREX.py)."""
import copy
import dataclasses

import torch

from suite.ood import EnvData
from suite.ood import training as T
from suite.ood.net import mlp_classifier


def _data():
    g = torch.Generator().manual_seed(0)
    env = torch.arange(90) % 3
    return EnvData(torch.randn(90, 5, generator=g), (torch.rand(90, generator=g) < 0.5).float(), env, 3)


CFG = T.OodTrainConfig(steps=6, lam=10.0, lr=0.05, rho=0.0, optimizer="sgd", momentum=0.9, weight_decay=0.01,
                       batch_per_env=8, draw="groups", groups_per_batch=2, penalty_kwargs={"form": "split_half"},
                       anneal_steps=3, anneal_lam=0.0, anneal_reset=True)


def _train(model, cfg, gen):
    T.train_ood(model, _data(), "irm", cfg, gen=gen)
    return model


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_anneal_then_reset_is_two_runs_with_a_fresh_optimizer():
    """WILDS IRM: penalty weight 0 for irm_penalty_anneal_iters updates, then `optimizer = initialize_optimizer()`
    and lambda: bit for bit two train_ood runs (weight 0, then lambda) on one batch stream, the second with a new
    optimizer. Without the reset (momentum carried over) or with the default anneal weight min(lam, 1) it differs."""
    torch.manual_seed(0)
    base = mlp_classifier(5, (8,))
    got = _params(_train(copy.deepcopy(base), CFG, torch.Generator().manual_seed(1)))
    ref, gen = copy.deepcopy(base), torch.Generator().manual_seed(1)
    plain = dataclasses.replace(CFG, anneal_steps=0, anneal_lam=None, anneal_reset=False)
    _train(ref, dataclasses.replace(plain, steps=3, lam=0.0), gen)
    _train(ref, dataclasses.replace(plain, steps=3), gen)
    assert torch.equal(got, _params(ref))
    no_reset = _params(_train(copy.deepcopy(base), dataclasses.replace(CFG, anneal_reset=False),
                              torch.Generator().manual_seed(1)))
    assert not torch.allclose(got, no_reset)
    warm_one = _params(_train(copy.deepcopy(base), dataclasses.replace(CFG, anneal_lam=None),
                              torch.Generator().manual_seed(1)))
    assert not torch.allclose(got, warm_one)


def test_penalty_weight_per_step(monkeypatch):
    """The default schedule is unchanged (min(lam, 1) during the anneal steps); anneal_lam sets it."""
    seen = []
    real = T.ood_loss
    monkeypatch.setattr(T, "ood_loss", lambda m, b, pen, lam, rho, env_reduce="mean": (seen.append(lam),
                                                                                      real(m, b, pen, lam, rho))[1])
    torch.manual_seed(0)
    for anneal_lam, want in ((None, [1.0] * 3 + [10.0] * 3), (0.0, [0.0] * 3 + [10.0] * 3),
                             (0.5, [0.5] * 3 + [10.0] * 3)):
        seen.clear()
        _train(mlp_classifier(5, (8,)), dataclasses.replace(CFG, anneal_lam=anneal_lam), torch.Generator())
        assert seen == want

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


def test_a_resumed_stage_draws_the_minibatches_it_would_have(tmp_path, monkeypatch):
    """With checkpoint_every, train_ood's draws' generator travels in fit's checkpoint: a stage interrupted at
    step 5 (last checkpoint at step 4, after the anneal reset at step 3) and resumed in a fresh process with a
    fresh generator ends bit for bit where the uninterrupted stage ends."""
    from suite.context import for_tests

    cfg = dataclasses.replace(CFG, checkpoint_every=2)
    torch.manual_seed(0)
    base = mlp_classifier(5, (8,))
    ref = copy.deepcopy(base)
    T.train_ood(ref, _data(), "irm", cfg, gen=torch.Generator().manual_seed(1), ctx=for_tests(tmp=tmp_path / "a"),
                name="stage")

    real, calls = T.ood_loss, [0]

    def dies_at_step_5(*a, **k):
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt  # the job is killed inside step 5 (zero-based), after step 4's checkpoint
        return real(*a, **k)

    monkeypatch.setattr(T, "ood_loss", dies_at_step_5)
    try:
        T.train_ood(copy.deepcopy(base), _data(), "irm", cfg, gen=torch.Generator().manual_seed(1),
                    ctx=for_tests(tmp=tmp_path / "b"), name="stage")
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(T, "ood_loss", real)
    got = mlp_classifier(5, (8,))  # the requeued job's fresh weights and fresh generator
    res = T.train_ood(got, _data(), "irm", cfg, gen=torch.Generator().manual_seed(1),
                      ctx=for_tests(tmp=tmp_path / "b"), name="stage")
    assert res.resumed_from_step == 4
    assert torch.equal(_params(got), _params(ref))

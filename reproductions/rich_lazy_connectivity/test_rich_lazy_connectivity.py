"""rich_lazy_connectivity: the norm-matched low-rank init, alignment formula, task shapes, a broken variant at
smoke size, the config errors and the smoke-scale claims."""
from __future__ import annotations

import pytest
import torch

from suite import config, registry, runner
from suite.errors import ConfigError

from . import SCALES, Config
from . import method as M

SLUG = "rich_lazy_connectivity"


def test_low_rank_init_rank_and_norm():
    g = torch.Generator().manual_seed(0)
    w0 = M.gaussian_w0(50, 1.25, g)
    for r in (1, 5, 50):
        w = M.low_rank_init(w0, r)
        assert M.numerical_rank(w) == r
        assert torch.allclose(w.norm(), w0.norm())
    assert M.effective_rank(M.low_rank_init(w0, 1)) == pytest.approx(1.0)


def test_alignment_formula():
    a = torch.randn(10, 4)
    k = a @ a.T
    assert float(M.alignment(k, k)) == pytest.approx(1.0, abs=1e-6)
    assert float(M.alignment(k, 3 * k)) == pytest.approx(1.0, abs=1e-6)
    assert float(M.alignment(torch.eye(2), torch.tensor([[0.0, 1], [1, 0]]))) == 0.0


def test_task_shapes_and_targets():
    x, y = M.make_2af(16, torch.Generator().manual_seed(0))
    assert x.shape == (8, 16, 3) and y.shape == (8, 16)
    assert (y[:-1] == 0).all() and ((y[-1] == 1) | (y[-1] == 2)).all()
    assert (x[:-1, :, 0] == 1).all() and (x[-1] == 0).all()


def test_tangent_kernel_shape():
    net = M.RateRNN(3, 20, 3, M.gaussian_w0(20, 1.25, torch.Generator().manual_seed(1)))
    x, _ = M.make_2af(5, torch.Generator().manual_seed(0))
    k = M.tangent_kernel(net, x)
    assert k.shape == (15, 15) and torch.allclose(k, k.T, atol=1e-5)


def test_bad_config():
    with pytest.raises(ConfigError):
        Config(ranks=(1, 500)).validate()
    with pytest.raises(ConfigError):
        Config(ranks=(1, 30)).validate()


def _cfg(scale="smoke", **kw):
    return config.resolve(registry.get(SLUG), scale, kw)


def test_smoke_claims_hold(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    bad = {k: v for k, v in rec["claims"].items() if v["verdict"] not in ("holds", "not-expected")}
    assert not bad, bad
    assert rec["metrics"]["baseline_steps"] == SCALES["smoke"]["steps"]


def test_untrained_variant_breaks_training_claim(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0, overrides=("variant=untrained",)), tmp_path,
                         device="cpu")
    m = rec["metrics"]
    assert m["dw@rank=1"] == 0.0 and m["dw@rank=64"] == 0.0
    assert rec["claims"]["C1-trained"]["verdict"] == "fails"


def test_rank_ignored_gives_full_rank():
    g = torch.Generator().manual_seed(0)
    w0 = M.gaussian_w0(30, 1.25, g)
    from . import _init_w
    assert M.numerical_rank(_init_w(_cfg(variant="rank-ignored"), w0, 1)) == 30
    assert M.numerical_rank(_init_w(_cfg(), w0, 1)) == 1


def test_full_dry_run(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run", rec.get("error")


def _record_run(monkeypatch, tmp_path, seed=0):
    """A tiny run that records each rank's network (W_in / W_out at construction) and its training batches."""
    from suite.context import for_tests

    from . import run
    nets: list[tuple[torch.Tensor, torch.Tensor]] = []
    batches: list[list[torch.Tensor]] = []

    class Rec(M.RateRNN):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            nets.append((self.w_in.weight.detach().clone(), self.w_out.weight.detach().clone()))
            batches.append([])

        def forward(self, x):
            if x.shape[1] == 4:  # batch_size 4: training batches only (probe 12, kernel 2, eval 10 trials)
                batches[-1].append(x.detach().clone())
            return super().forward(x)

    monkeypatch.setattr(M, "RateRNN", Rec)
    cfg = Config(n_hidden=8, ranks=(1, 3, 8), steps=3, batch_size=4, n_probe=12, n_kernel=2, n_eval=10)
    run(cfg, for_tests("smoke", seed=seed, tmp=tmp_path))
    return cfg, nets, batches


def test_ranks_get_own_readout_init_and_a_continuing_trial_stream(monkeypatch, tmp_path):
    """Official main.py: a new Net (PyTorch default W_in / W_out) per rank, and one dataset() stream giving
    first the probe batches, then rank after rank the training batches. The old code reused one seeded
    W_in / W_out and restarted the same stream for every rank: both asserts below failed on it."""
    cfg, nets, batches = _record_run(monkeypatch, tmp_path / "a")
    assert len(nets) == 3 and all(len(b) == cfg.steps for b in batches)
    for i in range(3):
        assert nets[i][0].abs().max() <= 3 ** -0.5 and nets[i][1].abs().max() <= 8 ** -0.5  # default init
        for j in range(i):
            assert not torch.equal(nets[i][0], nets[j][0]) and not torch.equal(nets[i][1], nets[j][1])
    from suite.context import for_tests
    gen = for_tests("smoke", seed=0).generator(100)
    expect = [M.make_2af(4, gen, cfg.seq_len, cfg.noise)[0] for _ in range(3 + 3 * cfg.steps)][3:]  # 3 probe
    got = [x for b in batches for x in b]
    assert len(got) == len(expect) and all(torch.equal(a, b) for a, b in zip(got, expect))
    # deterministic: the same seed redraws the same per-rank W_in / W_out
    monkeypatch.undo()
    _, nets2, _ = _record_run(monkeypatch, tmp_path / "b")
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(nets, nets2))

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
    k = M.tangent_kernel(net, x, "decision")
    assert k.shape == (15, 15) and torch.allclose(k, k.T, atol=1e-5)
    k = M.tangent_kernel(net, x)  # default: every time step (official main.py)
    assert k.shape == (8 * 15, 8 * 15) and torch.allclose(k, k.T, atol=1e-5)


def _slow_kernel(net, x, steps):
    """Official main.py's "Get K0": one autograd.grad per (t, b, k) w.r.t. W_hh, rows ordered (t, b, k)."""
    y, _ = net(x)
    ts = range(x.shape[0]) if steps == "all" else [x.shape[0] - 1]
    j = torch.stack([torch.autograd.grad(y[t, b, k], net.w_hh, retain_graph=True)[0].reshape(-1)
                     for t in ts for b in range(x.shape[1]) for k in range(y.shape[2])])
    return j @ j.T


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("steps", ["all", "decision"])
def test_tangent_kernel_equals_per_output_autograd_loop(alpha, steps):
    """The vectorised kernel (time-pair sum of output-signal and activity Grams) is the explicit J J^T."""
    net = M.RateRNN(3, 12, 3, M.gaussian_w0(12, 1.25, torch.Generator().manual_seed(1)), alpha).double()
    x, _ = M.make_2af(5, torch.Generator().manual_seed(0))
    x = x.double()
    torch.testing.assert_close(M.tangent_kernel(net, x, steps), _slow_kernel(net, x, steps), rtol=1e-10,
                               atol=1e-12)


def test_run_kernel_uses_every_time_step(monkeypatch, tmp_path):
    """Official main.py builds K0 / Kf from all seq_len steps x trials x outputs; the old code used the decision
    step only (n_kernel x 3 rows, 8x fewer), which fails here. The full preset keeps the official choice."""
    shapes = []
    orig = M.tangent_kernel

    def rec(model, x, *a, **kw):
        k = orig(model, x, *a, **kw)
        shapes.append(tuple(k.shape))
        return k

    monkeypatch.setattr(M, "tangent_kernel", rec)
    from suite.context import for_tests

    from . import run
    cfg = Config(n_hidden=8, ranks=(1, 8), steps=2, batch_size=4, n_probe=8, n_kernel=3, n_eval=8)
    run(cfg, for_tests("smoke", seed=0, tmp=tmp_path))
    rows = cfg.seq_len * cfg.n_kernel * 3
    assert shapes and all(s == (rows, rows) for s in shapes), shapes
    for scale in ("smoke", "small", "full"):
        assert _cfg(scale).ntk_steps == "all"


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

        def forward(self, x, *a):
            if x.shape[1] == 4:  # batch_size 4: training batches only (probe 12, kernel 2, eval 10 trials)
                batches[-1].append(x.detach().clone())
            return super().forward(x, *a)

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


def test_rank_ignored_variant_fails_the_rank_claims_by_construction(tmp_path):
    """The teeth variant makes the rank sweep a no-op: every 'rank' repeats the first one's run (full-rank W0,
    same W_in / W_out, same trials), so the weight changes and alignments are equal and all four rank-ignored
    claims fail exactly (under per-rank W_in / W_out draws the kernel-align gain was noise: +0.033 at small seed 0)."""
    from suite.context import for_tests

    from . import CLAIMS, run
    cfg = Config(n_hidden=8, ranks=(1, 3, 8), steps=5, batch_size=4, n_probe=8, n_kernel=3, n_eval=8,
                 variant="rank-ignored")
    m = run(cfg, for_tests("smoke", seed=0, tmp=tmp_path)).metrics
    assert m["dw@rank=1"] > 0 and m["dw@rank=1"] == m["dw@rank=3"] == m["dw@rank=8"]
    assert m["kernel_align_gain"] == 0.0 and m["rep_align_gain"] == 0.0 and m["dw_min_decrease"] == 0.0
    for c in CLAIMS:
        if c.teeth == "rank-ignored":
            assert c.check(m, "small")["verdict"] == "fails", c.id

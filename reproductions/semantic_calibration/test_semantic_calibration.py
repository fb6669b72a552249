"""semantic_calibration: the PCE family against direct formulas, the calibrators against reference
optimisers, the exact checks on procedural logits (argmax preserved, one group = TS), the broken
variants, the smoke run, the full preset against the official configuration, the full dry run."""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite import config as suite_config
from suite import registry, runner
from suite.context import for_tests
from suite.errors import ConfigError, CorruptDataError
from suite.metrics.calibration import ece as shared_ece
from suite.metrics.calibration import partitioned_calibration_error

from . import CLAIMS, Config, run
from . import data as D
from . import experiment as E
from . import method as M

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def proc() -> D.Predictions:
    return D.procedural(2000, 3000, seed=0)


@pytest.fixture(scope="module")
def probs_labels(proc) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.softmax(proc.z_test, 1), proc.y_test


# --------------------------------------------------------------------------- the PCE family (C1)

def _ece_direct(p: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE by the textbook loop over bins (lo, hi] (confidence 0 in the first bin)."""
    conf, pred = p.max(1), p.argmax(1)
    out = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if m.any():
            out += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return out


def test_pce_with_confidence_bins_is_ece(probs_labels):
    p, y = probs_labels
    ours = float(M.ece_as_pce(p, y))
    assert ours == pytest.approx(shared_ece(p.numpy(), y.numpy()), abs=1e-12)
    assert ours == pytest.approx(_ece_direct(p.numpy(), y.numpy()), abs=1e-12)


def test_pce_constant_and_bijective_groupings(probs_labels):
    p, y = probs_labels
    correct, conf = M.top_label_stats(p, y)
    # Example 5: one group -> |mean conf - accuracy|
    assert float(M.constant_pce(p, y)) == pytest.approx(abs(float(conf.mean() - correct.mean())), abs=1e-15)
    # Example 4: a bijective grouping (every example its own group) -> mean |1[correct] - conf|
    ident = torch.arange(len(y))
    assert float(M.pce(correct, conf, ident)) == pytest.approx(float((correct - conf).abs().mean()), abs=1e-12)


def test_classwise_ece_is_pce_over_class_partitions(probs_labels):
    p, y = probs_labels
    pn, yn = p.numpy().astype(np.float64), y.numpy()
    K, N = pn.shape[1], len(yn)
    direct = 0.0
    for u in range(K):  # appendix Eq. 7: (1/K) sum_u sum_G |G|/N |mean f_u - mean 1[y=u]|
        b = np.searchsorted(np.linspace(0, 1, 16)[1:-1], pn[:, u], side="left")
        for g in np.unique(b):
            m = b == g
            direct += m.sum() / N * abs(pn[m, u].mean() - (yn[m] == u).mean()) / K
    assert float(M.classwise_ece_as_pce(p, y)) == pytest.approx(direct, abs=1e-12)


def test_pce_of_several_partitions_is_their_mean_and_matches_shared(probs_labels):
    p, y = probs_labels
    correct, conf = M.top_label_stats(p, y)
    g = torch.randint(0, 3, (4, len(y)), generator=torch.Generator().manual_seed(0))
    each = [float(M.pce(correct, conf, g[i])) for i in range(4)]
    assert float(M.pce(correct, conf, g)) == pytest.approx(np.mean(each), abs=1e-14)
    assert float(M.pce(correct, conf, g)) == pytest.approx(
        partitioned_calibration_error(p.numpy(), y.numpy(), g.numpy()), abs=1e-12)


def test_ece_convention_matches_torchmetrics(probs_labels):
    tm = pytest.importorskip("torchmetrics.functional")
    p, y = probs_labels
    ref = float(tm.calibration_error(p.float(), y, task="multiclass", num_classes=p.shape[1], n_bins=15, norm="l1"))
    assert float(M.ece_as_pce(p.float(), y)) == pytest.approx(ref, abs=1e-5)


# --------------------------------------------------------------------------- calibrators

def _lbfgs_ts(z: torch.Tensor, y: torch.Tensor) -> float:
    """The official temp_scaling.calibrate: L-BFGS (strong Wolfe, 50 iterations) on tau from 1.0."""
    tau = torch.nn.Parameter(torch.tensor(1.0, dtype=z.dtype))
    opt = torch.optim.LBFGS([tau], line_search_fn="strong_wolfe", max_iter=50)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / tau, y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(tau.detach())


def test_temperature_matches_official_lbfgs_and_separate_fits(proc):
    z, y = proc.z_test, proc.y_test
    g = (proc.h_test[:, 0] > 0).long()[None]
    tau = M.fit_temperature(z, y, g, 2)[0]
    for k in range(2):
        m = g[0] == k
        assert float(tau[k]) == pytest.approx(_lbfgs_ts(z[m], y[m]), rel=1e-4)
    # heterogeneous miscalibration: the over-confident half (z = 2.5 u) needs tau ~ 2.5, the other ~ 0.6
    assert float(tau[1]) == pytest.approx(2.5, rel=0.15) and float(tau[0]) == pytest.approx(0.6, rel=0.15)
    # empty group -> tau = 1
    assert float(M.fit_temperature(z, y, torch.zeros_like(g), 2)[0, 1]) == 1.0


def _scipy_ets(z: np.ndarray, y: np.ndarray, z_eval: np.ndarray) -> np.ndarray:
    """ETS as in the official mix_calibration.ets_calibrate (MSE temperature in [0.05, 5] by
    L-BFGS-B from 1.0, then simplex weights by SLSQP from (1, 0, 0) on the MSE)."""
    from scipy import optimize
    from scipy.special import softmax

    K = z.shape[1]
    oh = np.eye(K)[y]
    mse_t = lambda t: np.mean((softmax(z / t, 1) - oh) ** 2)  # noqa: E731
    t = optimize.minimize(mse_t, 1.0, method="L-BFGS-B", bounds=((0.05, 5.0),), tol=1e-12).x[0]
    p0, p1, p2 = softmax(z / t, 1), softmax(z, 1), np.full_like(oh, 1 / K)
    mse_w = lambda w: np.mean((w[0] * p0 + w[1] * p1 + w[2] * p2 - oh) ** 2)  # noqa: E731
    w = optimize.minimize(mse_w, (1.0, 0.0, 0.0), method="SLSQP", bounds=((0, 1),) * 3, tol=1e-12,
                          constraints={"type": "eq", "fun": lambda w: np.sum(w) - 1}).x
    return w[0] * softmax(z_eval / t, 1) + w[1] * softmax(z_eval, 1) + w[2] / K


@pytest.mark.parametrize("which", ["over", "under"])
def test_ets_matches_official_scipy_procedure(proc, which):
    m = (proc.h_test[:, 0] > 0) if which == "over" else (proc.h_test[:, 0] <= 0)
    z, y = proc.z_test[m][:600], proc.y_test[m][:600]
    ours = M.group_calibrate(z, y, torch.zeros(1, len(y), dtype=torch.long), proc.z_val,
                             torch.zeros(1, len(proc.y_val), dtype=torch.long), 1, "ets")
    ref = _scipy_ets(z.numpy(), y.numpy(), proc.z_val.numpy())
    assert np.abs(ours.numpy() - ref).max() < 2e-4


def test_simplex_qp_is_the_exact_minimum():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(50, 3, 5, generator=gen, dtype=torch.float64)
    Q, c = A @ A.transpose(1, 2) / 5, torch.randn(50, 3, generator=gen, dtype=torch.float64)
    w = M.simplex_qp(Q, c)
    assert torch.all(w >= 0) and torch.allclose(w.sum(1), torch.ones(50, dtype=torch.float64))
    f = lambda w: (w[..., None, :] @ Q @ w[..., :, None])[..., 0, 0] - 2 * (w * c).sum(-1)  # noqa: E731
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, 101, dtype=torch.float64),
                                      torch.linspace(0, 1, 101, dtype=torch.float64), indexing="ij"), -1).reshape(-1, 2)
    grid = grid[grid.sum(1) <= 1]
    grid = torch.cat([grid, 1 - grid.sum(1, keepdim=True)], 1)             # (M, 3) points of the simplex
    fg = torch.einsum("mi,bij,mj->bm", grid, Q, grid) - 2 * c @ grid.T
    assert torch.all(f(w) <= fg.min(1).values + 1e-12)


# --------------------------------------------------------------------------- the grouping function and GC

def test_mixture_likelihood_is_the_spec_formula(proc):
    gen = torch.Generator().manual_seed(0)
    W = M.init_grouping(proc.h_val.shape[1], 2, gen)
    tau = torch.tensor([1.5, 0.7], dtype=torch.float64)
    lq = M.mixture_log_probs(proc.h_val[:50] @ W.T, proc.z_val[:50], tau)
    w = torch.softmax(proc.h_val[:50] @ W.T, 1)
    direct = sum(w[:, g:g + 1] * torch.softmax(proc.z_val[:50] / tau[g], 1) for g in range(2))
    assert torch.allclose(lq.exp(), direct, atol=1e-12)
    assert torch.allclose(lq.exp().sum(1), torch.ones(50, dtype=torch.float64))


def test_learned_grouping_finds_the_miscalibrated_region(proc):
    h, gen = proc.h_val, torch.Generator().manual_seed(3)
    W, tau = M.learn_partition(h, proc.z_val, proc.y_val, 2, gen, max_iter=100)
    g = M.hard_groups(W[None], proc.h_test)[0]
    agree = float((g == (proc.h_test[:, 0] > 0).long()).double().mean())
    assert max(agree, 1 - agree) > 0.9
    # broken variant: the untrained W splits along a random direction
    W0, _ = M.learn_partition(h, proc.z_val, proc.y_val, 2, torch.Generator().manual_seed(3), train=False)
    g0 = M.hard_groups(W0[None], proc.h_test)[0]
    agree0 = float((g0 == (proc.h_test[:, 0] > 0).long()).double().mean())
    assert max(agree0, 1 - agree0) < 0.8


@pytest.mark.parametrize("base", ["ts", "ets"])
def test_group_calibration_preserves_argmax_and_sums_to_one(proc, base):
    gen = torch.Generator().manual_seed(0)
    W = torch.stack([M.learn_partition(proc.h_val, proc.z_val, proc.y_val, 2, gen, max_iter=30)[0] for _ in range(3)])
    g = M.hard_groups(W, proc.h_test)
    ho, ev = E.split_indices(len(proc.y_test), 0.1, torch.Generator().manual_seed(1))
    p = M.group_calibrate(proc.z_test[ho], proc.y_test[ho], g[:, ho], proc.z_test[ev], g[:, ev], 2, base)
    assert torch.equal(p.argmax(1), proc.z_test[ev].argmax(1))            # Theorem 1, exactly
    assert float((p.sum(1) - 1).abs().max()) < 1e-12


def test_one_group_is_global_ts(proc):
    z, y = proc.z_test, proc.y_test
    ts = M.apply_ts(z, M.fit_temperature(z, y, torch.zeros(1, len(y), dtype=torch.long), 1),
                    torch.zeros(1, len(y), dtype=torch.long))[0]
    gc = M.group_calibrate(z, y, torch.zeros(4, len(y), dtype=torch.long), z, torch.zeros(4, len(y), dtype=torch.long), 1)
    assert float((gc - ts).abs().max()) <= 1e-12
    tau = float(M.fit_temperature(z, y, torch.zeros(1, len(y), dtype=torch.long), 1))
    assert torch.allclose(ts, torch.softmax(z / tau, 1), atol=1e-12)


def test_chunked_group_calibration_equals_unchunked(proc):
    g = torch.randint(0, 2, (5, len(proc.y_test)), generator=torch.Generator().manual_seed(0))
    a = M.group_calibrate(proc.z_test[:300], proc.y_test[:300], g[:, :300], proc.z_test[300:], g[:, 300:], 2, "ets")
    b = E.group_calibrate_chunked(proc.z_test[:300], proc.y_test[:300], g[:, :300], proc.z_test[300:], g[:, 300:], 2,
                                  "ets", "mse", budget=300 * 10 * 3 * 2)
    assert torch.allclose(a, b, atol=1e-14)


def test_broken_variants_change_what_they_should():
    g_ho = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    g_ev = torch.tensor([[0, 1, 1, 0]])
    gen = torch.Generator().manual_seed(0)
    a, b = M.calibration_groups(g_ho, g_ev, 2, "paper", gen)
    assert torch.equal(a, g_ho) and torch.equal(b, g_ev)
    a, b = M.calibration_groups(g_ho, g_ev, 2, "swapped-groups", gen)
    assert torch.equal(a, g_ho) and torch.equal(b, 1 - g_ev)
    a, b = M.calibration_groups(g_ho, g_ev, 2, "shuffled-groups", gen)
    assert torch.equal(b, g_ev) and torch.equal(a.sort(1).values, g_ho.sort(1).values) and not torch.equal(a, g_ho)


@pytest.fixture(scope="module")
def cfg_fast() -> Config:
    return Config(n_partitions=3, eval_partitions=2, lbfgs_iter=50)


@pytest.mark.parametrize("variant", ["random-groups", "swapped-groups", "shuffled-groups"])
def test_broken_variants_lose_the_gain_on_procedural_logits(proc, cfg_fast, variant):
    good = E.evaluate(proc, cfg_fast, 0, n_partitions=3, n_splits=2, variant="paper")
    bad = E.evaluate(proc, cfg_fast, 0, n_partitions=3, n_splits=2, variant=variant)
    assert good["ece_gcts"] / good["ece_ts"] < 0.5
    assert bad["ece_gcts"] / bad["ece_ts"] > 0.5                              # proc-gcts-halves-ece fails
    assert bad["ece_ts"] == good["ece_ts"] and bad["ece_ets"] == good["ece_ets"]  # baselines untouched
    if variant == "swapped-groups":  # the calibrators of the wrong group: worse than one global temperature
        assert bad["ece_gcts"] > bad["ece_ts"] and bad["nll_gcts"] > bad["nll_ts"]
        assert bad["sempce_gcts"] > bad["sempce_ts"]


# --------------------------------------------------------------------------- the run, presets, data

def test_smoke_run_passes_its_checks(tmp_path):
    rec = runner.execute(runner.RunSpec("semantic_calibration", "smoke", 0, ()), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    bad = {c: v for c, v in rec["claims"].items() if v["verdict"] not in ("holds", "not-expected")}
    assert not bad, bad
    assert rec["dataset"]["provenance"] == "stand-in"  # smoke trains on sklearn digits
    assert rec["wall_s"] < 60


def test_every_paper_claim_has_teeth_and_checks_expected_at_smoke():
    for c in CLAIMS:
        if c.kind == "paper":
            assert c.teeth and "small" in c.scales
    r = registry.get("semantic_calibration")
    assert not [c for c in r.claims if c.teeth and c.teeth not in ("random-groups", "swapped-groups")]


def test_full_dry_run_builds_on_fixture(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    cfg = suite_config.resolve(registry.get("semantic_calibration"), "full")
    out = run(cfg, for_tests("full", dry_run=True, tmp=tmp_path / "run"))
    assert out.dataset.provenance == "stand-in" and out.dataset.name.endswith("-fixture")


def test_predictions_pickles_read_tensors_and_arrays_and_refuse_code(tmp_path):
    D.write_fixture(tmp_path, ("cifar100_vgg19",), n_val=10, n_test=12)
    got = D.read_predictions_pickle(tmp_path / "cifar100_vgg19_test.pkl")
    assert got["logits"].shape == (12, 100) and got["labels"].dtype == torch.long
    arr = {"features": np.ones((3, 4), np.float32), "logits": np.zeros((3, 10), np.float32), "labels": np.arange(3)}
    (tmp_path / "np.pkl").write_bytes(pickle.dumps(arr))
    assert D.read_predictions_pickle(tmp_path / "np.pkl")["features"].shape == (3, 4)

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"features": Evil()}))
    with pytest.raises(CorruptDataError):
        D.read_predictions_pickle(tmp_path / "evil.pkl")


def test_config_ranges_and_relations():
    r = registry.get("semantic_calibration")
    with pytest.raises(ConfigError):
        suite_config.resolve(r, "smoke", ["ho_frac=1.5"])
    with pytest.raises(ConfigError):
        suite_config.resolve(r, "smoke", ["n_groups=1", "variant=swapped-groups"])
    with pytest.raises(ConfigError):
        suite_config.resolve(r, "smoke", ["sources="])


def test_partitions_are_learned_anew_for_every_split_seeded_per_split(proc, cfg_fast, monkeypatch):
    """Official main.py: set_seed(seed) then calibrate -> train_partitions for every split seed (20 new
    random inits per split). Each split learns its own n_partitions, from initialisations seeded by
    (run seed, split, partition), and those are the partitions its calibrators use."""
    calls: list[tuple[int, bool, torch.Tensor]] = []
    real = M.learn_partition

    def spy(h, z, y, n_groups, gen, **kw):
        seed0 = gen.initial_seed()
        W, tau = real(h, z, y, n_groups, gen, **kw)
        calls.append((seed0, kw.get("train", True), W))
        return W, tau

    monkeypatch.setattr(M, "learn_partition", spy)
    cfg = dataclasses.replace(cfg_fast, eval_partitions=0)
    E.evaluate(proc, cfg, 5, n_partitions=3, n_splits=2, variant="paper")
    trained = [(s, W) for s, t, W in calls if t]
    untrained = [s for s, t, _ in calls if not t]
    expected = [E.partition_seed(5, s, i) for s in range(2) for i in range(3)]
    assert [s for s, _ in trained] == expected                    # 2 x 3 L-BFGS problems, seeded per split
    assert untrained == expected                                  # gcts_rand: the same inits, untrained
    assert len(set(expected)) == 6
    # two splits get different partitions; a split's partition is what the per-split seeded learner gives
    assert not torch.allclose(trained[0][1], trained[3][1])
    W10 = real(proc.h_val, proc.z_val, proc.y_val, 2, torch.Generator().manual_seed(E.partition_seed(5, 1, 0)),
               weight_decay=cfg.weight_decay, max_iter=cfg.lbfgs_iter, tau_init=cfg.tau_init)[0]
    assert torch.equal(trained[3][1], W10)
    Ws = E.learn_partitions(proc, cfg, 5, 3, E.PARTITION_STREAM, train=True, split=1)
    assert torch.equal(Ws[0], W10)

"""Invariants of the initialisers, the exact convex-hull bound, a teeth variant, and the smoke run."""
from __future__ import annotations

import pytest
import torch

from suite import config, runner
from suite.errors import ConfigError

from . import method as M

SLUG = "vocab_init"


def _E(v: int = 60, d: int = 16) -> torch.Tensor:
    return torch.randn(v, d, generator=torch.Generator().manual_seed(0))


def test_hull_bound_exact_and_teeth() -> None:
    E, g = _E(), torch.Generator().manual_seed(1)
    H = torch.randn(1000, 16, generator=torch.Generator().manual_seed(2))
    for rows in (M.init_hull(E, 30, g), M.init_mean(E, 30)):
        assert M.hull_bound_excess(E, rows, H) <= 1e-9
        assert M.simplex_recovery(E, rows) < 0.05
    big = M.init_random(E, 30, g, 5 * float(E.norm(dim=1).mean()) / 4)
    assert M.hull_bound_excess(E, big, H) > 0
    broken = M.init_hull(E, 30, g, "hull-unnormalised")  # teeth: weights off the simplex break the bound
    assert M.hull_bound_excess(E, broken, H) > 0


def test_weights_on_simplex() -> None:
    w = M.hull_weights(50, 20, torch.Generator().manual_seed(0))
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(20, dtype=w.dtype))
    wb = M.hull_weights(50, 20, torch.Generator().manual_seed(0), "hull-unnormalised")
    assert (wb < 0).any()


def test_multivariate_moments() -> None:
    E = _E(200, 8) * torch.linspace(0.5, 2, 8) + 3
    s = M.init_multivariate(E, 50_000, torch.Generator().manual_seed(0))
    assert (s.mean(0) - E.mean(0)).abs().max() < 0.05
    assert (torch.cov(s.T) - torch.cov(E.T)).abs().max() < 0.1


def test_cw2v_in_hull_and_learns() -> None:
    E = _E()
    text = torch.randint(90, (200, 16), generator=torch.Generator().manual_seed(3))
    rows, losses = M.cw2v(E, torch.arange(60, 90), text, 100, 2, 5, 0.05, torch.Generator().manual_seed(4))
    assert sum(losses[-10:]) < sum(losses[:10])
    H = torch.randn(1000, 16, generator=torch.Generator().manual_seed(5))
    assert M.hull_bound_excess(E, rows, H) <= 1e-9


def test_bad_config() -> None:
    repro = __import__("suite.registry", fromlist=["get"]).get(SLUG)
    with pytest.raises(ConfigError):
        config.resolve(repro, "smoke", {"methods": ("random", "bogus")})


def test_smoke_with_minilm(tmp_path) -> None:
    pytest.importorskip("transformers")
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0, ("minilm=true",)), tmp_path)
    m = rec["metrics"] if isinstance(rec, dict) else rec.metrics
    assert m["minilm_vocab"] == 30522 and m["minilm_dim"] == 384
    assert m["minilm_bound_excess_hull"] <= 1e-9 and m["minilm_bound_excess_mean"] <= 1e-9
    assert m["minilm_bound_excess_random_large"] > 0
    assert m["bound_excess_hull_methods"] <= 1e-9


def test_full_pipeline_runs_on_fixture_layout(tmp_path) -> None:
    """The full path for real (not a dry run) on a tiny random Llama + tiny corpora written in the published
    layout: expansion, every init on input AND untied head rows, step-0 ppl, CPT through fit, claims' metrics."""
    pytest.importorskip("transformers")
    from .full import _fixture
    repro = __import__("suite.registry", fromlist=["get"]).get(SLUG)
    _fixture(config.resolve(repro, "full"))(tmp_path / "data" / "vocab-init")
    over = ("full_cpt_steps=3", "cw2v_steps=3", "full_batch=2", "full_seq_len=32", "full_new_tokens=10",
            "n_hidden=50", "full_eval_docs=4")
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0, over), tmp_path / "res", data_root=tmp_path / "data")
    assert rec["status"] != "failed", rec
    m = rec["metrics"]
    assert m["full_new_tokens"] == 10 and m["old_tokenization_changed"] == 0.0
    assert m["bound_excess_hull_methods"] <= 1e-6 < m["bound_excess_random-large"]
    for k in ("cw2v_vs_random", "cw2v_vs_best", "multivariate_vs_random", "ppl_A_change_hull_max",
              "cpt_steps_cw2v"):
        assert k in m


def test_cw2v_and_multivariate_teeth_variants() -> None:
    """Teeth of C2/C3: sign-flipped unconstrained CW2V diverges out of the hull; the unscaled covariance
    (scatter matrix) samples rows ~sqrt(V) times too spread."""
    E = _E()
    text = torch.randint(90, (200, 16), generator=torch.Generator().manual_seed(3))
    rows, losses = M.cw2v(E, torch.arange(60, 90), text, 100, 2, 5, 0.05, torch.Generator().manual_seed(4),
                          "cw2v-ascent-unconstrained")
    assert sum(losses[-10:]) > sum(losses[:10])
    H = torch.randn(1000, 16, generator=torch.Generator().manual_seed(5))
    assert M.hull_bound_excess(E, rows, H) > 0
    ok = M.init_multivariate(E, 2000, torch.Generator().manual_seed(0))
    bad = M.init_multivariate(E, 2000, torch.Generator().manual_seed(0), variant="multivariate-unscaled-cov")
    assert bad.std(0).mean() > 5 * ok.std(0).mean()

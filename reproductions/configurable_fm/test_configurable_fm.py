"""configurable_fm: the analysis on constructed activations with known answers, the hooks' exactness,
the skill generator, each broken variant's effect, the presets, and the smoke run's checks."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from suite import config, registry, runner
from suite.context import for_tests

from . import CLAIMS, SCALES
from . import experiment as E
from . import method as M
from . import skills as S

SLUG = "configurable_fm"


# ---------------------------------------------------------------- §3.1 sparsity
def test_token_sparsity_known_answers():
    a = torch.tensor([[10.0, 0.5, 2.0, 0.0],      # > 1.0: {10, 2} -> 0.5; 90% of 12.5 = 11.25 needs 2 units
                      [1.0, 1.0, 1.0, 1.0],        # all active; 90% of 4 needs 4 units
                      [-5.0, 0.0, 0.0, 0.0]])      # |a| counts; one unit carries everything
    rel, m90 = M.token_sparsity(a, tau=0.1, mass=0.9)
    assert rel.tolist() == [0.5, 1.0, 0.25]
    assert m90.tolist() == [0.5, 1.0, 0.25]


def test_token_sparsity_all_zero_token_counts_as_dense():
    rel, m90 = M.token_sparsity(torch.zeros(1, 8))
    assert rel.item() == 0.0 and m90.item() == 1.0


# ---------------------------------------------------------------- §3.2 specialisation
def test_thresholds_are_per_neuron_percentiles():
    a = torch.arange(100.0)[:, None, None].expand(100, 1, 3) * torch.tensor([1.0, 2.0, -1.0])
    thr = M.neuron_thresholds(a, 0.9)
    assert thr.squeeze(0).tolist() == [89.0, 178.0, 89.0]


def test_frequency_and_selectivity_known_answers():
    # 2 tasks, 1 layer, 3 units; tokens 0-1 task 0, tokens 2-3 task 1
    a = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])[:, None, :]
    f = M.activation_frequency(a, torch.tensor([0, 0, 1, 1]), 2, torch.full((1, 3), 0.5))
    assert f.squeeze(1).tolist() == [[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]]
    s = M.selectivity(f)
    assert s.squeeze(1).tolist() == [[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0]]


def test_selectivity_three_tasks_uses_max_of_others():
    f = torch.tensor([[0.9, 0.2], [0.5, 0.3], [0.1, 0.4]])
    s = M.selectivity(f)
    assert torch.allclose(s, torch.tensor([[0.4, -0.2], [-0.4, -0.1], [-0.8, 0.1]]))


def test_top_units_per_layer_and_sizes():
    assert M.n_select(256, 0.05) == 13 and M.n_select(1536, 0.05) == 77  # spec §6: "about 13 units per layer"
    score = torch.tensor([[[0.1, 0.9, 0.5, 0.2], [0.3, 0.0, 0.8, 0.7]]])
    top = M.top_units(score, 0.5)
    assert top.tolist() == [[[False, True, True, False], [False, False, True, True]]]
    low = M.top_units(score, 0.5, lowest=True)
    assert low.tolist() == [[[True, False, False, True], [True, True, False, False]]]


def test_planted_units_are_recovered():
    assert E.planted_recall(0.05, torch.Generator().manual_seed(0)) == 1.0


def test_jaccard_and_purity():
    sets = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    j = M.jaccard(sets)
    assert j[0, 1].item() == pytest.approx(1 / 3) and j[0, 2].item() == 0.0 and j[1, 1].item() == 1.0
    assert M.mean_offdiag(j) == pytest.approx((2 / 3) / 6)
    assign = torch.tensor([0, 0, 1, 1])
    assert M.cluster_purity(sets, assign, 2).tolist() == [1.0, 0.5, 1.0]


def test_kmeans_separates_obvious_clusters():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 2, generator=g) * 0.1, torch.randn(20, 2, generator=g) * 0.1 + 5])
    a = M.kmeans(x, 2, g)
    assert len(set(a[:20].tolist())) == 1 and len(set(a[20:].tolist())) == 1 and a[0] != a[-1]


# ---------------------------------------------------------------- §3.4 effect matrix
def test_ablation_summary_known_answers():
    delta = torch.tensor([[0.6, 0.1], [0.0, 0.4]])
    rnd = torch.tensor([[0.1, 0.1], [0.1, 0.1]])
    s = M.ablation_summary(delta, rnd, floor=0.01)
    assert s["diag_drop"] == pytest.approx(0.5) and s["offdiag_drop"] == pytest.approx(0.05)
    assert s["selectivity_index"] == pytest.approx(10.0) and s["vs_random"] == pytest.approx(5.0)
    assert s["min_task_index"] == pytest.approx(6.0)  # task 0: 0.6 / 0.1; task 1: 0.4 / floor
    assert s["diag_is_row_max"] == 1.0


# ---------------------------------------------------------------- hooks
def _tiny_lm(seed: int = 0) -> nn.Module:
    return S.build_lm(32, 2, 2, 64, seed=seed).eval()


def test_hooks_capture_and_mask_exactly():
    lm = _tiny_lm()
    g = torch.Generator().manual_seed(0)
    data = S.generate(8, g)
    sub = E.TinyLMSubject(lm, data, data, data, S.SKILLS)
    try:
        assert sub.hook_exact_err() < 1e-6
        mask = M.random_units(1, 2, 64, 0.2, g)[0]
        assert sub.mask_exact_err(mask) < 1e-6
        before = [d.weight.clone() for d in sub.downs]
        sub.mask_exact_err(mask)
        assert all(torch.equal(b, d.weight) for b, d in zip(before, sub.downs))  # weights restored
        # the masked units really are zero in what W_down receives
        with sub.hooks.masked(mask):
            sub.hooks.capture = True
            lm(data.tokens[:4])
            sub.hooks.capture = False
        # capture happens before masking is applied: the hook sees the raw activation
        assert all(a.shape[-1] == 64 for a in sub.hooks.pop())
        a, seq = next(sub.acts("select"))
        assert a.shape == (int(data.real[:1024].sum()), 2, 64) and seq.max() < data.tokens.shape[0]
        assert (a >= 0).all()  # ReLU activations
    finally:
        sub.close()
    assert all(not d._forward_pre_hooks for d in S.down_projections(lm))


def test_masking_changes_output_only_through_masked_units():
    lm = _tiny_lm(1)
    hooks = M.FFNHooks(S.down_projections(lm))
    x = S.generate(4, torch.Generator().manual_seed(1)).tokens
    try:
        base = lm(x)
        with hooks.masked(torch.zeros(2, 64, dtype=torch.bool)):
            same = lm(x)
        with hooks.masked(torch.ones(2, 64, dtype=torch.bool)):
            off = lm(x)
        assert torch.equal(base, same) and not torch.allclose(base, off)
        assert torch.equal(lm(x), base)  # the mask is lifted after the block
    finally:
        hooks.remove()


# ---------------------------------------------------------------- skills
def test_skill_sequences_are_correct():
    d = S.generate(50, torch.Generator().manual_seed(0))
    assert d.tokens.shape[1] == S.MAX_LEN and int(d.tokens.max()) < S.VOCAB
    for row, tgt, k in zip(d.tokens.tolist(), d.target.tolist(), d.skill.tolist()):
        assert row[0] == S.TAG0 + k
        sep = row.index(S.SEP)
        body, ans = row[1:sep], [t for t, m in zip(row, tgt) if m]
        assert ans[-1] == S.EOS
        ans = ans[:-1]
        name = S.SKILLS[k]
        if name == "copy":
            assert ans == body
        elif name == "reverse":
            assert ans == body[::-1]
        elif name == "sort":
            assert ans == sorted(body)
        elif name == "parity":
            assert set(body) <= {0, 1} and ans == [sum(body) % 2]
        else:
            p = body.index(S.PLUS)
            a, b = int("".join(map(str, body[:p]))), int("".join(map(str, body[p + 1:])))
            assert int("".join(map(str, ans[::-1]))) == a + b and len(ans) == 4


def test_score_of_a_perfect_model_is_one():
    d = S.generate(10, torch.Generator().manual_seed(0))

    class Oracle(nn.Module):
        def forward(self, t):  # logits that put all mass on the true next token
            nxt = torch.cat([d.tokens[: t.shape[0], 1:t.shape[1] + 1]], 1)
            return torch.nn.functional.one_hot(nxt, S.VOCAB).float() * 50

    q = S.score(Oracle(), d, len(S.SKILLS))
    assert q["exact"].tolist() == [1.0] * 5 and q["token"].tolist() == [1.0] * 5


# ---------------------------------------------------------------- broken variants
def test_shuffled_labels_destroy_selectivity():
    """A table where units are planted per task: true labels give high top selectivity, shuffled ones not."""
    g = torch.Generator().manual_seed(0)
    k, n_seq, units = 3, 60, 40
    labels = torch.arange(n_seq) % k
    hits = torch.rand(n_seq, 1, units, generator=g) * 2
    for t in range(k):
        hits[labels == t, 0, t * 5:(t + 1) * 5] += 8
    ntok = torch.full((n_seq,), 10.0)
    s_true = M.selectivity(E.frequency_from_hits(hits, ntok, labels, k))
    s_shuf = M.selectivity(E.frequency_from_hits(hits, ntok, labels[torch.randperm(n_seq, generator=g)], k))
    top = lambda s: float((s * M.top_units(s, 0.125)).sum() / M.top_units(s, 0.125).sum())  # noqa: E731
    assert top(s_true) > 3 * top(s_shuf)


def test_least_selective_sets_are_the_bottom_of_the_ranking():
    s = torch.tensor([[[0.5, -0.5, 0.1, 0.0]]])
    assert M.top_units(s, 0.25, lowest=True)[0, 0].tolist() == [False, True, False, False]


def test_variants_reach_the_pipeline(tmp_path):
    """Each broken variant changes what it should on a tiny untrained setup (fast)."""
    repro = registry.get(SLUG)

    def run_lm(variant: str) -> dict:
        cfg = config.resolve(repro, "smoke", {"variant": variant, "lm_steps": 30, "minilm": False,
                                              "lm_select_per_skill": 20, "lm_eval_per_skill": 20,
                                              "lm_train_per_skill": 200})
        ctx = for_tests("smoke", seed=0, tmp=tmp_path / variant)
        from . import analysis_settings, lm_metrics
        return lm_metrics(cfg, ctx, analysis_settings(cfg))

    ok, untrained = run_lm("correct"), run_lm("untrained")
    shuffled, least = run_lm("shuffled-labels"), run_lm("least-selective")
    assert untrained["lm_sparsity_vs_init"] == pytest.approx(1.0) and ok["lm_sparsity_vs_init"] != 1.0
    assert "lm_train_s" not in untrained and "lm_train_s" in ok
    # shuffled labels: the selectivity of the top units falls to the level of the shuffled null
    assert shuffled["lm_top_selectivity"] < ok["lm_top_selectivity"]
    # least-selective: the masked sets have negative selectivity for their own task, so they overlap heavily
    assert least["lm_jaccard"] > ok["lm_jaccard"]
    assert least["lm_top_selectivity"] == ok["lm_top_selectivity"]  # same ranking, other end used


# ---------------------------------------------------------------- declaration, presets
def test_paper_claims_have_teeth_in_the_variant_field():
    variants = set(M.VARIANTS)
    for c in CLAIMS:
        if c.kind == "paper":
            assert c.teeth in variants and "small" in c.scales


def test_config_fields_have_ranges_and_presets_resolve():
    repro = registry.get(SLUG)
    for scale in SCALES:
        config.resolve(repro, scale)
    with pytest.raises(Exception):
        config.resolve(repro, "small", {"skills": "copy"})
    with pytest.raises(Exception):
        config.resolve(repro, "small", {"minilm_quality": "retrieval"})


def test_full_preset_is_pinned():
    """Spec §5/§6 settings of the full preset (no official code exists; README table)."""
    repro = registry.get(SLUG)
    cfg = config.resolve(repro, "full")
    assert cfg.model_dir == "models/Meta-Llama-3-8B-Instruct"
    assert (cfg.tau, cfg.mass, cfg.pct, cfg.q, cfg.random_draws) == (0.1, 0.9, 0.9, 0.05, 5)
    assert cfg.full_tasks == ("math", "code", "knowledge", "language")
    assert cfg.minilm_retrieval is True
    small = config.resolve(repro, "small")
    assert (small.lm_dim, small.lm_depth, small.lm_heads, small.lm_ffn) == (64, 2, 4, 256)  # spec §6


# ---------------------------------------------------------------- the smoke run
def test_smoke_run_checks_hold(tmp_path):
    """The smoke preset skips MiniLM (core install); the dev install has it, so run it here too."""
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0, ("minilm=true",)), tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    for cid, c in rec["claims"].items():
        assert c["verdict"] in ("holds", "not-expected"), (cid, c)
    m = rec["metrics"]
    assert m["lm_active_frac"] < m["lm_init_active_frac"]
    assert rec["dataset"]["provenance"] == "stand-in"
    assert 0 < m["minilm_active_frac"] < 1 and m["minilm_n_units_masked_per_layer"] == 77
    assert m["minilm_hook_exact_err"] <= 1e-5 and m["minilm_mask_exact_err"] <= 1e-5

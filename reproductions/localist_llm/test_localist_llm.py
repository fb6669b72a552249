"""localist_llm: the dialled attention, the group-sparsity penalty and the metrics on constructed inputs with
known answers, the pointer task, the recruitment criterion, the broken variants, and the smoke-scale claims."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from suite import config, registry, runner, teeth
from suite.context import for_tests
from suite.errors import ConfigError

from . import CLAIMS, SCALES, Config
from . import method as M
from .experiment import mechanism_metrics, recruitment_stream
from .recruit import Recruiter, bic_threshold, decide, decide_bits, make_domains, n_params, sample_streams
from .tasks import PointerTask, fixed_blocks, sentence_blocks

SLUG = "localist_llm"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _qkv(b=2, h=3, t=10, dh=4, seed=0):
    g = _gen(seed)
    return tuple(torch.randn(b, h, t, dh, generator=g, dtype=torch.float64) for _ in range(3))


# ---------------------------------------------------------------- attention and the dial

def test_temperature_formula():
    assert M.temperature(0.0, 2.0) == 2.0 and M.temperature(1.0, 2.0) == 1.0 and M.temperature(0.5, 1.0) == 0.75


def test_dial_at_zero_is_standard_attention():
    q, k, v = _qkv()
    blk = torch.randint(3, (2, 10), generator=_gen(1))
    out, alpha = M.localist_attention(q, k, v, M.outside_mask(blk, blk), 0.0, 4.0, 1.0, True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    assert torch.allclose(alpha.sum(-1), torch.ones(2, 3, 10, dtype=torch.float64))
    # the hard mask at lambda = 0 is no mask either (0 * inf = 0)
    out_inf, _ = M.localist_attention(q, k, v, M.outside_mask(blk, blk), 0.0, math.inf, 1.0, True)
    assert torch.allclose(out_inf, ref, atol=1e-12, rtol=0)


def test_locality_logits_known_numbers():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    outside = torch.tensor([[False, True, True]])
    got = M.locality_logits(scores, outside, 0.5, 4.0, 1.0)
    # tau = 0.75; bias -0.5*4 = -2 on the two outside keys
    assert torch.allclose(got, torch.tensor([[1 / 0.75, 2 / 0.75 - 2, 3 / 0.75 - 2]]))


def test_hard_mask_leaves_no_offblock_mass():
    q, k, v = _qkv()
    blk = torch.randint(3, (2, 10), generator=_gen(2))
    out = M.outside_mask(blk, blk)
    _, a = M.localist_attention(q, k, v, out, 1.0, math.inf, 1.0, True)
    assert float((a * out[:, None]).sum(-1).max()) == 0.0
    assert torch.allclose(a.sum(-1), torch.ones_like(a.sum(-1)))


def test_dial_concentrates_and_the_bound_holds():
    q, k, v = _qkv(t=16, seed=3)
    blk = torch.randint(4, (2, 16), generator=_gen(4))
    out = M.outside_mask(blk, blk)
    ins = ~out[:, None]
    fids, ents = [], []
    scores = q @ k.transpose(-1, -2) / 2.0
    for lam in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, a = M.localist_attention(q, k, v, out, lam, 4.0, 1.0, False)
        fids.append(float(M.fidelity(a, ins).mean()))
        ents.append(float(M.entropy_bits(a).mean()))
        if lam > 0:
            off = (a * out[:, None]).sum(-1)
            assert bool((off <= M.offblock_bound(scores, out[:, None], lam, 4.0, 1.0) + 1e-12).all())
    assert all(b > a for a, b in zip(fids, fids[1:])) and all(b < a for a, b in zip(ents, ents[1:]))
    # exponentially small in the margin: at M = 40 the off-block mass is < 1e-6
    _, a = M.localist_attention(q, k, v, out, 1.0, 40.0, 1.0, False)
    assert float((a * out[:, None]).sum(-1).max()) < 1e-6


# ---------------------------------------------------------------- penalty

def test_group_penalty_hand_computed():
    # one query (target block 0), keys in blocks [0, 0, 1, 1, 1, 2]; alpha = (.5, .1, .2, .1, .0, .1)
    blk = torch.tensor([[0, 0, 1, 1, 1, 2]])
    target = torch.zeros(1, 6, dtype=torch.long)
    alpha = torch.tensor([0.5, 0.1, 0.2, 0.1, 0.0, 0.1], dtype=torch.float64).expand(1, 1, 6, 6)
    r = M.group_penalty(alpha, blk, target, 3, eps=0.0)
    want = math.sqrt(3) * math.sqrt(0.04 + 0.01) + math.sqrt(1) * 0.1
    assert torch.allclose(r, torch.full((1, 1, 6), want, dtype=torch.float64))


def test_penalty_gradient_matches_closed_form():
    blk = torch.randint(3, (2, 9), generator=_gen(5))
    target = torch.randint(3, (2, 9), generator=_gen(6))
    alpha = torch.softmax(torch.randn(2, 2, 9, 9, generator=_gen(7), dtype=torch.float64), -1).requires_grad_(True)
    M.group_penalty(alpha, blk, target, 3, 1e-8).sum().backward()
    assert torch.allclose(alpha.grad, M.group_penalty_grad(alpha.detach(), blk, target, 3, 1e-8), atol=1e-12)


def test_penalty_enters_the_loss_with_lambda_gamma():
    blk = torch.tensor([[0, 0, 1, 1]])
    alpha = torch.full((1, 1, 4, 4), 0.25)
    nll = torch.tensor(1.0)
    r = M.group_penalty(alpha, blk, blk, 2, 1e-8).mean()
    loss, rr = M.localist_loss(nll, [alpha, alpha], blk, blk, 2, 0.5, 0.1, 1e-8)
    assert torch.allclose(rr, r) and torch.allclose(loss, 1.0 + 0.05 * r)
    assert M.localist_loss(nll, [alpha], blk, blk, 2, 0.0, 0.1, 1e-8)[0] == nll  # dial 0: no penalty


# ---------------------------------------------------------------- metrics

def test_entropy_and_fidelity_on_constructed_maps():
    n = 32
    uni = torch.full((n,), 1.0 / n)
    one = F.one_hot(torch.tensor(3), n).float()
    ins = torch.arange(n) >= 24
    assert abs(float(M.entropy_bits(uni)) - 5.0) < 1e-6 and float(M.entropy_bits(one)) == 0.0
    assert abs(float(M.fidelity(uni, ins)) - 0.25) < 1e-7 and float(M.fidelity(one, ins)) == 0.0
    two = torch.zeros(n)
    two[[0, 30]] = torch.tensor([0.4, 0.6])
    assert float(M.hit_rate(two[None], ins[None])) == 1.0
    assert abs(float(M.entropy_bits(two)) - (-(0.4 * math.log2(0.4) + 0.6 * math.log2(0.6)))) < 1e-6


# ---------------------------------------------------------------- data

def test_pointer_task_answers_and_blocks():
    task = PointerTask(4, 8, 8, 16)
    tok, blk, ans = task.sample(64, _gen(8))
    assert tok.shape == (64, task.seq_len) == blk.shape
    L = 17
    for i in range(64):  # reference by brute force (test only)
        g, key = int(tok[i, -2]), int(tok[i, -1])
        assert blk[i, -1] == g and blk[i, -2] == g
        slot = [s for s in range(4) if int(tok[i, s * L]) == g][0]
        seg = tok[i, slot * L:(slot + 1) * L]
        assert bool((blk[i, slot * L:(slot + 1) * L] == g).all())
        j = [p for p in range(8) if int(seg[1 + 2 * p]) == key][0]
        assert int(ans[i]) == int(seg[2 + 2 * j])
        # the query key is a distractor in every other block
        for s in range(4):
            assert key in tok[i, s * L + 1:(s + 1) * L:2].tolist()


def test_sentence_and_fixed_blocks():
    w = torch.tensor([list(b"Ab. Cd.\nEf g. ")])
    ids = sentence_blocks(w)[0].tolist()
    assert ids == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3]  # new block at the space of ". " and after "\n"
    assert fixed_blocks(w, 5)[0].tolist() == [0] * 5 + [1] * 5 + [2] * 4


# ---------------------------------------------------------------- recruitment

def test_bic_criterion_on_constructed_numbers():
    p, n = 240, 1000
    thr = 0.5 * p * math.log(n)
    assert bic_threshold(p, n) == pytest.approx(thr)
    assert not decide(thr - 1e-6, p, n) and decide(thr + 1e-6, p, n)
    assert decide_bits(thr + 1e-6, p, n) and not decide_bits(thr - 1e-6, p, n)
    assert n_params(16, "bigram") == 240 and n_params(16, "unigram") == 15


def test_recruiter_recruits_for_new_domain_only():
    trans = make_domains(3, 16, 0.5, 0)
    s = sample_streams(trans, torch.tensor([0, 1, 2]), 12000, _gen(9))
    rec = Recruiter(16, "bigram", 0.5)
    rec.add_block(s[0, :5000])
    rec.add_block(s[1, :5000])
    assert rec.step(s[0, 5000:6000])["recruited"] == 0.0
    assert rec.step(s[1, 5000:6000])["recruited"] == 0.0
    r = rec.step(s[2, :1000])
    assert r["recruited"] == 1.0 and r["delta"] > r["threshold"] and len(rec.blocks) == 3
    assert rec.step(s[2, 1000:2000])["recruited"] == 0.0  # C now has its block


def test_sample_streams_follow_the_transition_matrix():
    trans = make_domains(1, 4, 1.0, 3)
    s = sample_streams(trans, torch.zeros(200, dtype=torch.long), 300, _gen(10)).reshape(-1)
    c = torch.bincount(s[:-1] * 4 + s[1:], minlength=16).double().view(4, 4)
    emp = c / c.sum(-1, keepdim=True)
    assert float((emp - trans[0]).abs().max()) < 0.03


# ---------------------------------------------------------------- the broken variants (fast)

def _cfg(**kw):
    return config.resolve(registry.get(SLUG), "smoke", {k: v for k, v in kw.items()})


def test_dial_ignored_and_flipped_change_the_attention():
    scores = torch.randn(1, 6, 6, generator=_gen(11))
    outside = torch.rand(1, 6, 6, generator=_gen(12)) > 0.5
    ign = M.locality_logits(scores, outside, 1.0, 4.0, 1.0, "dial-ignored")
    assert torch.equal(ign, scores)  # no bias, no temperature change: the dial does nothing
    flip = torch.softmax(M.locality_logits(scores, outside, 1.0, 4.0, 1.0, "dial-sign-flipped"), -1)
    ok = torch.softmax(M.locality_logits(scores, outside, 1.0, 4.0, 1.0), -1)
    base = torch.softmax(scores, -1)
    ins = ~outside
    assert bool((M.fidelity(flip, ins) <= M.fidelity(base, ins) + 1e-7).all())
    assert bool((M.fidelity(ok, ins) >= M.fidelity(base, ins) - 1e-7).all())


def test_penalty_sign_flipped_rewards_offblock_mass():
    blk = torch.tensor([[0, 0, 1, 1]])
    alpha = torch.full((1, 1, 4, 4), 0.25)
    nll = torch.tensor(1.0)
    good, r = M.localist_loss(nll, [alpha], blk, blk, 2, 1.0, 0.1, 1e-8)
    bad, _ = M.localist_loss(nll, [alpha], blk, blk, 2, 1.0, 0.1, 1e-8, "penalty-sign-flipped")
    assert float(good) == pytest.approx(1.0 + 0.1 * float(r)) and float(bad) == pytest.approx(1.0 - 0.1 * float(r))


def test_recruitment_variants_fail_their_claims():
    ctx = for_tests()
    ok = recruitment_stream(_cfg(), ctx, "correct")
    never = recruitment_stream(_cfg(), ctx, "recruit-never")
    always = recruitment_stream(_cfg(), ctx, "no-complexity-cost")
    assert ok["rec_delay_max"] == 1.0 and ok["rec_false_recruits"] == 0.0 and ok["rec_blocks_minus_domains"] == 0
    assert never["rec_delay_max"] > 1.0 and never["rec_new_missed"] == 1.0
    assert always["rec_false_recruits"] > 0 and always["rec_blocks_minus_domains"] > 0


def test_mechanism_checks_hold_and_variants_do_not_touch_them():
    cfg = _cfg()
    m = mechanism_metrics(cfg, "correct")
    assert m["dial0_max_abs_diff"] <= 1e-12 and m["hardmask_offblock_constructed"] == 0.0
    assert m["offblock_bound_excess"] <= 0 and m["penalty_grad_err"] <= 1e-9 and m["metric_formula_err"] <= 1e-12
    assert m["bic_decision_errors"] == 0.0
    # the recruitment teeth make the criterion check fail too (it runs the same decide())
    assert mechanism_metrics(cfg, "recruit-never")["bic_decision_errors"] > 0


# ---------------------------------------------------------------- declaration, smoke run, full dry run

def test_every_paper_claim_has_teeth_from_the_variant_field():
    choices = teeth.variant_choices(registry.get(SLUG))
    for c in CLAIMS:
        assert c.kind in ("paper", "check")
        if c.kind == "paper" and c.teeth:
            assert c.teeth in choices and c.teeth != "correct" and "small" in c.scales
        elif c.kind == "paper":
            assert c.scales == ("full",) and c.no_teeth
    assert set(M.VARIANTS) == set(choices)


def test_smoke_run_passes_its_claims(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    for cid, entry in rec["claims"].items():
        if "smoke" in registry.get(SLUG).claim(cid).scales:
            assert entry["verdict"] == "holds", (cid, entry)
    assert rec["dataset"]["provenance"] == "stand-in"
    # even an undertrained model: the dial moves entropy and fidelity the right way
    m = rec["metrics"]
    assert m["dial_entropy_drop"] > 0 and m["dial_fidelity_gain"] > 0 and m["dial_monotone_violation"] == 0


def test_smoke_run_is_reproducible():
    cfg = _cfg(steps=5, n_eval=50)
    r = registry.get(SLUG)
    a = r.run(cfg, for_tests()).metrics
    b = r.run(cfg, for_tests()).metrics
    assert a == b


def test_full_dry_run_builds_on_fixtures(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run", rec.get("error")


def test_full_preset_is_the_spec_protocol():
    cfg = config.resolve(registry.get(SLUG), "full")
    assert cfg.wikitext and cfg.lm_depth == 2 and cfg.text_blocks == "sentence"
    assert cfg.lm_lambda_train == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) == cfg.lm_lambda_eval  # spec §5 grid
    assert cfg.rec_source == "text" and cfg.lm_dial_lambda in cfg.lm_lambda_train


def test_config_ranges_and_relations():
    r = registry.get(SLUG)
    for s in ("smoke", "small", "full"):
        config.resolve(r, s)
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["margin=-1"])
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["lambda_eval=0,1.5"])
    with pytest.raises(ConfigError, match="dial_lambda"):
        config.resolve(r, "small", ["dial_lambda=0.25"])
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["variant=broken"])
    assert SCALES["small"] == {} and Config().margin == 4.0 and Config().gamma == 0.1 and Config().tau0 == 1.0

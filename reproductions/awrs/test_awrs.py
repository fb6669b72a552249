"""AWRS: method invariants, the spec §6 smoke assertions (T1-T4) and the teeth."""
from __future__ import annotations

import math

import pytest
import torch

from suite import registry
from suite.context import for_tests

from suite.metrics.stats import chi2_gof

from . import AWRSConfig, run
from .constraints import Checker, make, parens_dfa, regex_dfa, token_table
from .lm import BigramLM, corpus
from .method import awrs_batch, awrs_reference, gumbel, masking_batch, masking_reference, with_replacement_batch
from .smc import Task, enumerate_target, posterior_estimate, smc, total_variation


@pytest.fixture(scope="module")
def lm() -> BigramLM:
    return BigramLM.train(corpus(4000, 0.5, 0), 300)


def _ctx(lm, text="ab1", constraint="regex"):
    dfa = make(constraint)
    trans, acc = token_table(dfa, lm.tokens)
    s = dfa.run(text)
    ids = lm.encode(text)
    return dfa, lm.logp[ids[-1] if ids else lm.vocab], torch.cat([trans[s] >= 0, acc[s:s + 1]])


def test_dfas():
    r, p = regex_dfa(), parens_dfa(3)
    assert r.run("ab12") in r.accept and r.run("ab1") not in r.accept and r.run("1") == -1
    assert r.run("abc12345") == -1
    assert p.run("(())") in p.accept and p.run("(((())))") == -1 and p.run("())") == -1 and p.run("") not in p.accept


def test_two_token_worked_example():
    """Spec §3: valid a (mass α), invalid b. Weights 1, 1/2, α/2 w.p. α², α(1-α), 1-α, so E[w] = α."""
    n = 200000
    for alpha in (0.2, 0.5, 0.9):
        logw = torch.tensor([[math.log(alpha), math.log(1 - alpha)]], dtype=torch.float64)
        d = awrs_batch(logw.expand(n, -1), torch.tensor([[True, False]]).expand(n, -1),
                       torch.Generator().manual_seed(0))
        w = d.logw.exp()
        assert (d.tok == 0).all()
        for value, prob in ((1.0, alpha ** 2), (0.5, alpha * (1 - alpha)), (alpha / 2, 1 - alpha)):
            freq = float(((w - value).abs() < 1e-12).double().mean())
            assert abs(freq - prob) < 0.01
        assert abs(float(w.mean()) - alpha) < 4 * float(w.std()) / math.sqrt(n)


def test_batch_matches_reference_call_for_call(lm):
    """The vectorised sampler makes the same draw, weight and number of checks as the algorithm box."""
    dfa, logw, valid = _ctx(lm, "a")
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        g1, g2 = gumbel((logw.numel(),), g), gumbel((logw.numel(),), g)
        chk = Checker(dfa)
        tok, lw, _ = awrs_reference(logw, "a", lm.tokens, chk, g1, g2)
        d = awrs_batch(logw[None], valid[None], g, g1=g1[None], g2=g2[None])
        assert int(d.tok) == tok and abs(float(d.logw) - lw) < 1e-9 and int(d.calls) == chk.calls
        chk = Checker(dfa)
        tok, _, _ = awrs_reference(logw, "a", lm.tokens, chk, g1, g2, proper_weights=False)
        d = awrs_batch(logw[None], valid[None], g, g1=g1[None], proper_weights=False)
        assert int(d.tok) == tok and int(d.calls) == chk.calls


def test_dead_particle_gets_zero_weight():
    logw = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    d = awrs_batch(logw, torch.tensor([[False, False]]), torch.Generator().manual_seed(0))
    assert int(d.tok) == -1 and d.logw.item() == -math.inf and int(d.calls) == 2


def test_t1_t2_t3_exact_unbiased_cheap(lm):
    _, logw, valid = _ctx(lm)
    n, g = 20000, torch.Generator().manual_seed(2)
    ell = logw.exp() * valid
    d = awrs_batch(logw.expand(n, -1), valid.expand(n, -1), g)
    assert chi2_gof(d.tok, ell) > 1e-3  # T1
    w = d.logw.exp()
    assert abs(float(w.mean()) - float(ell.sum())) <= 3 * float(w.std()) / math.sqrt(n)  # T2
    if float(ell.sum()) >= 0.3:  # T3
        assert float(d.calls.double().mean()) <= 0.1 * logw.numel()
    assert (masking_batch(logw.expand(5, -1), valid.expand(5, -1), g).calls == logw.numel()).all()


def test_masking_reference_counts_its_checks(lm):
    """Masking checks every token with mass once per call and draws from the masked distribution."""
    text = "ab1"
    _, logw, valid = _ctx(lm, text)
    chk = Checker(make("regex"))
    g = torch.Generator().manual_seed(6)
    toks = [masking_reference(logw, text, lm.tokens, chk, g) for _ in range(3)]
    assert chk.calls == 3 * logw.numel() and all(valid[t] for t in toks)
    chk2 = Checker(make("regex"))
    masking_reference(logw.masked_fill(~valid, -math.inf), text, lm.tokens, chk2, g)  # pruned: fewer checks
    assert chk2.calls == int(valid.sum())


def test_no_early_exit_checks_everything(lm):
    _, logw, valid = _ctx(lm)
    g = torch.Generator().manual_seed(7)
    d = awrs_batch(logw.expand(50, -1), valid.expand(50, -1), g, variant="no_early_exit", proper_weights=False)
    assert (d.calls == logw.numel()).all()


def test_teeth_variants_break_their_claims_at_smoke():
    out = run(AWRSConfig(variant="no_early_exit", n_local=2000, corpus_size=4000), for_tests("smoke"))
    assert registry.get("awrs").claim("few-checks").check(out.metrics, "smoke")["verdict"] == "fails"


def test_t4_mutations(lm):
    _, logw, valid = _ctx(lm)
    n, g = 20000, torch.Generator().manual_seed(3)
    ell = logw.exp() * valid
    w = awrs_batch(logw.expand(n, -1), valid.expand(n, -1), g, variant="no_round2").logw.exp()
    assert abs(float(w.mean()) - float(ell.sum())) > 3 * float(w.std()) / math.sqrt(n)
    _, logw, valid = _ctx(lm, "a")
    ell = logw.exp() * valid
    rep = with_replacement_batch(logw.expand(n, -1), valid.expand(n, -1), g)
    r1 = awrs_batch(logw.expand(n, -1), valid.expand(n, -1), g, proper_weights=False)
    assert chi2_gof(rep.tok, ell) > 1e-3 and chi2_gof(r1.tok, ell) > 1e-3
    assert rep.calls.double().mean() > r1.calls.double().mean()


def test_chi2_has_power(lm):
    """Unconstrained samples (renormalised to valid ones would differ) are rejected: use p itself."""
    _, logw, valid = _ctx(lm)
    n = 20000
    d = awrs_batch(logw.expand(n, -1), valid.expand(n, -1), torch.Generator().manual_seed(4))
    skewed = logw.exp() * valid * torch.linspace(0.5, 1.5, logw.numel(), dtype=torch.float64)
    assert chi2_gof(d.tok, skewed) < 1e-6


def test_smc_tiny_against_enumeration(lm):
    task = Task(lm, *token_table(parens_dfa(3), lm.tokens), 4)
    codes, p = enumerate_target(task)
    pi = p / p.sum()
    g = torch.Generator().manual_seed(5)
    res = smc(task, 1500, 10, g)
    lcd = smc(task, 1500, 1, g, proper_weights=False)
    tv_s = total_variation(codes, pi, *posterior_estimate(res))
    tv_l = total_variation(codes, pi, *posterior_estimate(lcd))
    assert tv_s < tv_l and tv_s < 0.06
    z = res.log_z.exp()
    assert abs(float(z.mean()) - float(p.sum())) <= 3 * float(z.std()) / math.sqrt(1500)


def test_teeth_no_round2_fails_the_weight_claim():
    out = run(AWRSConfig(variant="no_round2", n_local=5000, corpus_size=4000), for_tests("smoke"))
    c = registry.get("awrs").claim("unbiased-weight")
    assert c.check(out.metrics, "smoke")["verdict"] == "fails"

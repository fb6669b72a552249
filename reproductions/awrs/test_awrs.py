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
from .samplers import Method, ess, methods, paired_bootstrap, resample, run_instance
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


# --- full-scale samplers (samplers.py): the paper's baselines on a tiny random LM (issue 17) ---------------------
TINY = ["a", "b", "c", "1", "2", "x", "ab", "12"]  # token strings; EOS is column len(TINY)
TINY_MAX = 4  # tokens incl. EOS


def _tiny_lm(seed: int = 0):
    """A random bigram LM over TINY + EOS, tilted towards [a-c]+[0-9]{2,4} so that ~10 % of its mass is valid."""
    v = len(TINY)
    t = torch.randn(v + 1, v + 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    letters, digits = [0, 1, 2, 6], [3, 4, 7]
    t[v, letters] += 1.5
    for i in letters:
        t[i, digits] += 1.5
    for i in digits:
        t[i, digits] += 0.5
        t[i, v] += 1.5
    logp = torch.log_softmax(t, 1)
    return lambda seqs: logp[[s[-1] if s else v for s in seqs]]


def _tiny_texts(lm, max_tokens: int = TINY_MAX) -> dict[str, float]:
    """Exact P(text, finished within max_tokens) by enumeration of token sequences."""
    v, out, frontier = len(TINY), {}, [([], 0.0)]
    for t in range(max_tokens):
        nxt = []
        for seq, lp in frontier:
            row = lm([seq])[0]
            text = "".join(TINY[i] for i in seq)
            out[text] = out.get(text, 0.0) + math.exp(lp + float(row[v]))
            if t < max_tokens - 1:
                nxt += [(seq + [i], lp + float(row[i])) for i in range(v)]
        frontier = nxt
    return out


@pytest.fixture(scope="module")
def tiny():
    lm, dfa = _tiny_lm(), regex_dfa()
    ok = lambda s: dfa.run(s) in dfa.accept  # noqa: E731
    texts = _tiny_texts(lm)
    valid = {s: p for s, p in texts.items() if ok(s)}
    q = sum(valid.values())  # P(finished and valid) under the LM
    keys = sorted(valid)
    pi = torch.tensor([valid[k] / q for k in keys], dtype=torch.float64)  # global target π ∝ p · 1[s ∈ L]
    return {"lm": lm, "dfa": dfa, "ok": ok, "texts": texts, "q": q, "keys": keys, "pi": pi}


def _runs(tiny, method: Method, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [run_instance(tiny["lm"], TINY, Checker(tiny["dfa"]), tiny["ok"], method, TINY_MAX, g) for _ in range(n)], g


def _pick(tiny, runs, g) -> torch.Tensor:
    """One string per run drawn from its weighted posterior (runs with positive weight), as an index into keys."""
    return torch.tensor([tiny["keys"].index(r.texts[int(torch.multinomial(r.weights.float(), 1, generator=g))])
                         for r in runs if r.weights.sum() > 0])


def _posterior_only_on_valid(tiny, r) -> bool:
    return all(not w or (d and tiny["ok"](t)) for t, d, w in zip(r.texts, r.finished, r.weights.tolist()))


def test_method_table_matches_the_paper_settings():
    """spec §4 / scripts/pattern_matching.sh: base LM 1, LCD 1, sample-rerank 10, twisted SMC 10 (ESS 0.9),
    AWRS-SMC 5 (ESS 0.5)."""
    m = {x.name: x for x in methods()}
    assert (m["base_lm"].proposal, m["base_lm"].particles, m["base_lm"].critic) == ("lm", 1, "none")
    assert (m["lcd"].proposal, m["lcd"].particles) == ("lcd", 1)
    assert (m["sample_rerank"].proposal, m["sample_rerank"].particles, m["sample_rerank"].ess,
            m["sample_rerank"].critic) == ("lm", 10, 0.0, "end")
    assert (m["twisted_smc"].proposal, m["twisted_smc"].particles, m["twisted_smc"].ess,
            m["twisted_smc"].critic) == ("lm", 10, 0.9, "twist")
    assert (m["awrs_smc"].proposal, m["awrs_smc"].particles, m["awrs_smc"].ess) == ("awrs", 5, 0.5)


def test_base_lm_samples_the_lm_and_ignores_the_constraint(tiny):
    """Base LM: strings are exact LM samples (valid or not), no constraint call, accuracy = P(valid)."""
    runs, _ = _runs(tiny, Method("base_lm", "lm", 1), 2000, 10)
    assert all(r.calls == 0 for r in runs)
    texts = sorted(tiny["texts"])
    codes = torch.tensor([texts.index(r.texts[0]) if r.finished[0] else len(texts) for r in runs])
    probs = torch.tensor([tiny["texts"][t] for t in texts] + [1 - sum(tiny["texts"].values())], dtype=torch.float64)
    assert chi2_gof(codes, probs) > 1e-3  # the LM's own distribution over strings (and unfinished)
    assert sum(r.finished[0] and not tiny["ok"](r.texts[0]) for r in runs) > 100  # invalid strings come out
    acc = torch.tensor([r.accuracy for r in runs])
    assert abs(float(acc.mean()) - tiny["q"]) < 4 * math.sqrt(tiny["q"] * (1 - tiny["q"]) / len(runs))


def test_sample_rerank_returns_only_valid_samples(tiny):
    """Sample-rerank: weight 1[s ∈ L] at the end, so all posterior mass sits on the valid samples (uniformly:
    the proposal is the LM) whenever one exists, accuracy is P(some sample valid), and a draw from the posterior
    is an exact draw from π."""
    n = 5
    runs, g = _runs(tiny, Method("sample_rerank", "lm", n, critic="end"), 1200, 11)
    for r in runs:
        good = [d and tiny["ok"](t) for t, d in zip(r.texts, r.finished)]
        assert r.calls == sum(r.finished)  # one complete() per finished sample
        if any(good):
            assert r.accuracy == pytest.approx(1.0)
            assert torch.allclose(r.weights, torch.tensor(good, dtype=torch.float64) / sum(good))
        else:
            assert r.accuracy == 0.0 and float(r.weights.sum()) == 0.0
    expect = 1 - (1 - tiny["q"]) ** n
    acc = torch.tensor([r.accuracy for r in runs])
    assert abs(float(acc.mean()) - expect) < 4 * math.sqrt(expect * (1 - expect) / len(runs))
    assert chi2_gof(_pick(tiny, runs, g), tiny["pi"]) > 1e-3


def test_twisted_smc_weights_and_resampling(tiny):
    """Twisted SMC: one prefix check per token (complete at EOS) kills invalid particles; resampling at ESS < 0.9 M
    refills the population from the live ones, so it succeeds far more often than the same sampler without
    resampling (= rerank with early kill: 1 - (1 - q)^M); weight only on valid strings; consistent for π."""
    m = 5
    tw, _ = _runs(tiny, Method("twisted_smc", "lm", m, 0.9, "twist"), 600, 12)
    flat, _ = _runs(tiny, Method("no_resampling", "lm", m, 0.0, "twist"), 600, 13)
    for r in tw + flat:
        assert r.calls == r.tokens and _posterior_only_on_valid(tiny, r)
    a_tw = float(torch.tensor([r.accuracy for r in tw]).mean())
    a_flat = float(torch.tensor([r.accuracy for r in flat]).mean())
    expect = 1 - (1 - tiny["q"]) ** m
    se = math.sqrt(expect * (1 - expect) / 600)
    assert abs(a_flat - expect) < 4 * se and a_tw > expect + 6 * se
    big, g = _runs(tiny, Method("twisted_smc", "lm", 20, 0.9, "twist"), 300, 14)
    assert chi2_gof(_pick(tiny, big, g), tiny["pi"]) > 1e-3


def test_awrs_samplers_put_weight_on_valid_strings_only(tiny):
    for method in (Method("lcd", "lcd", 1), Method("awrs_smc", "awrs", 5, 0.5)):
        runs, _ = _runs(tiny, method, 40, 15)
        assert all(_posterior_only_on_valid(tiny, r) for r in runs)
        assert any(r.accuracy > 0 for r in runs)


def test_resample_and_ess():
    g = torch.Generator().manual_seed(16)
    logw = torch.log(torch.tensor([0.0, 1.0, 3.0, 0.0], dtype=torch.float64))
    idx = torch.cat([resample(logw, g) for _ in range(2000)])
    assert not ((idx == 0) | (idx == 3)).any()  # dead particles are never ancestors
    assert chi2_gof(idx, torch.tensor([0.0, 1.0, 3.0, 0.0])) > 1e-3  # ancestors drawn ∝ weights
    assert ess(torch.zeros(7, dtype=torch.float64)) == pytest.approx(7.0) and ess(logw) == pytest.approx(1.6)
    assert ess(torch.full((3,), -math.inf)) == 0.0


def test_paired_bootstrap():
    g = torch.Generator().manual_seed(17)
    b = torch.rand(200, generator=g, dtype=torch.float64)
    d, lo, hi = paired_bootstrap(b + 0.1, b, 2000, g)  # paired: a constant shift has a zero-width CI
    assert d == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    d, lo, hi = paired_bootstrap(torch.rand(200, generator=g, dtype=torch.float64), b, 2000, g)
    assert lo < d < hi and hi - lo < 0.25


def test_full_path_ends_strings_at_the_official_end_tokens(tmp_path):
    """experiments/tasks.py PatternMatching.get_eos_tokens: added (special) tokens, tokens holding a newline
    and the tokenizer's EOS all end the string; the sampler sees them as one EOS slot with their summed mass."""
    from transformers import PreTrainedTokenizerFast

    from .full import end_tokens, merged_end_logprobs, write_model_fixture

    write_model_fixture(tmp_path)
    tok = PreTrainedTokenizerFast.from_pretrained(tmp_path, local_files_only=True)
    strs = [tok.decode([i]) for i in range(len(tok))]
    ends = end_tokens(tok, strs)
    newline = {i for i, s in enumerate(strs) if "\n" in s}
    assert newline and set(ends) == newline | set(tok.get_added_vocab().values()) | {tok.eos_token_id}
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(3, len(strs), generator=g, dtype=torch.float64), 1)
    keep = torch.tensor([i for i in range(len(strs)) if i not in set(ends)])
    out = merged_end_logprobs(logp, keep, torch.tensor(ends))
    assert out.shape == (3, len(keep) + 1)
    assert torch.allclose(out.exp().sum(1), torch.ones(3, dtype=torch.float64))  # still a distribution
    assert torch.allclose(out[:, -1].exp(), logp[:, ends].exp().sum(1))

"""Mechanics of the warm-started threshold decoder (spec §6 smoke assertions), teeth, and the loss."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError
from suite.models.transformer import TransformerLM

from . import Config, SCALES, data as D
from .experiment import stub_checks
from .method import DecodeConfig, StubDLLM, TinyDLLM, causal_loss, decode, inject, interp_weights, \
    masked_diffusion_loss

TOK = D.tokenizer()
M = TOK.mask_id


def _gold(k: int = 24, seed: int = 0) -> torch.Tensor:
    ps = D.generate(k, seed)
    return D.encode(TOK, [p.question for p in ps], [p.answer for p in ps], 56, 24)[2]


def _cfg(**kw) -> Config:
    return replace(Config(**SCALES["smoke"]), **kw)


def test_stub_mechanics_hold() -> None:
    m = stub_checks(_cfg(), for_tests())
    assert m["stub_rho0_identical"] == 1.0
    assert m["stub_oracle_nfe_rho1"] == 1.0 and m["stub_oracle_acc_rho1_minus_b1"] == 0.0
    assert m["stub_eps_acc_noremask_minus_b1"] < 0 <= m["stub_eps_acc_remask_minus_b1"]
    assert m["stub_nfe_minus_forward_rows"] == 0.0
    assert 1.0 < m["stub_nfe_b1"] <= 24 and m["stub_eps_nfe_remask"] < m["stub_nfe_b1"]


def test_rho0_draws_nothing_and_is_all_mask() -> None:
    g = torch.Generator().manual_seed(0)
    st = g.get_state()
    x0, prov = inject(_gold(), 0.0, M, g)
    assert (x0 == M).all() and not prov.any() and torch.equal(g.get_state(), st)


def test_injection_rate_and_provisional() -> None:
    gold = _gold(200)
    x0, prov = inject(gold, 0.5, M, torch.Generator().manual_seed(1))
    assert torch.equal(prov, x0 != M) and torch.equal(x0[prov], gold[prov])
    assert abs(prov.float().mean().item() - 0.5) < 0.03


def test_b0_fixed_steps_has_nfe_n() -> None:
    gold = _gold(8)
    stub = StubDLLM(gold, TOK.vocab_size, M)
    d = decode(stub, torch.full_like(gold, M), torch.zeros_like(gold, dtype=torch.bool), M, DecodeConfig(fixed_k=1))
    assert (d.nfe == 24).all() and torch.equal(d.tokens, gold)


def test_blocks_commit_left_to_right() -> None:
    gold = _gold(4)
    stub = StubDLLM(gold, TOK.vocab_size, M)
    d = decode(stub, torch.full_like(gold, M), torch.zeros_like(gold, dtype=torch.bool), M,
               DecodeConfig(block_len=8), keep_trace=True)
    for x in d.trace:  # a later block only gets tokens once every earlier block is complete
        masked = x == M
        for b in range(1, 3):
            started = (~masked[:, 8 * b:8 * b + 8]).any(1)
            assert not (started & masked[:, :8 * b].any(1)).any()
    assert torch.equal(d.tokens, gold)


def test_remask_only_touches_injected_tokens() -> None:
    """A DLLM that scores every visible token low: only provisional tokens may be remasked."""
    gold = _gold(16)
    x0, prov = inject(gold, 0.5, M, torch.Generator().manual_seed(2))
    run = lambda v: decode(StubDLLM(gold, TOK.vocab_size, M, visible_all_low=True), x0, prov, M,  # noqa: E731
                           DecodeConfig(remask=True, variant=v), max_passes=200)
    ok = run("paper")
    assert torch.equal(ok.remasked, prov.sum(1)) and torch.equal(ok.tokens, gold)
    bad = run("remask-committed")  # broken: decoder commits get remasked too
    assert (bad.remasked > prov.sum(1)).any()


def test_draft_padding_is_mask_not_eos() -> None:
    st = D.draft_to_state(TOK, ["1+2=3 #### 3", "9" * 40], 24)
    assert (st[0, 12:] == M).all() and (st != TOK.eos_id).all() and (st[1] != M).all()


def test_interp_alpha0_equals_baseline_and_alpha_changes_input() -> None:
    torch.manual_seed(0)
    ps = D.generate(6, 3)
    pr, pm, an = D.encode(TOK, [p.question for p in ps], [p.answer for p in ps], 56, 24)
    model = TransformerLM(TOK.vocab_size, 81, 32, 1, 4, causal=False)
    dl = TinyDLLM(model, pr, pm, M, [0, 1, M, 4])
    x0, no = torch.full_like(an, M), torch.zeros_like(an, dtype=torch.bool)
    rows = torch.arange(6)
    plain = dl(x0, rows, None)
    zero = dl(x0, rows, (an, interp_weights(an, 0.0, M)))
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))
    assert not torch.allclose(plain[0], dl(x0, rows, (an, interp_weights(an, 0.7, M)))[0])
    d0 = decode(dl, x0, no, M, DecodeConfig())
    d1 = decode(dl, x0, no, M, DecodeConfig(), mix=(an, interp_weights(an, 0.0, M)))
    assert torch.equal(d0.tokens, d1.tokens) and torch.equal(d0.nfe, d1.nfe)


def test_losses_finite_and_decrease() -> None:
    torch.manual_seed(0)
    ps = D.generate(64, 4)
    pr, pm, an = D.encode(TOK, [p.question for p in ps], [p.answer for p in ps], 56, 24)
    model = TransformerLM(TOK.vocab_size, 81, 32, 1, 4, causal=False)
    aux = TransformerLM(TOK.vocab_size, 81, 32, 1, 4, causal=True)
    opt = torch.optim.Adam(list(model.parameters()) + list(aux.parameters()), 3e-3)
    syms = torch.arange(5, TOK.vocab_size)
    first = None
    for _ in range(20):
        loss = masked_diffusion_loss(model, pr, pm, an, M, syms) + causal_loss(aux, pr, an, TOK.pad_id, TOK.eos_id)
        assert torch.isfinite(loss)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first


def test_teeth_never_score_fails_remask_claim() -> None:
    """Broken decoder (injected tokens never scored), run through ``run``: the remasking claim fails."""
    r = registry.get("dllm_context_init")
    cfg = replace(config.resolve(r, "smoke"), variant="never-score", n_eval=8, steps=2)
    m = r.run(cfg, for_tests()).metrics
    assert r.claim("M-remask-restores").check(m, "smoke")["verdict"] == "fails"
    assert r.claim("M-oracle-one-pass").check(m, "smoke")["verdict"] == "fails"  # never scored: 0 passes


def test_teeth_variants_are_wired_through_run() -> None:
    """The teeth of the paper claims, run through ``run`` at smoke size and judged by the claims'
    small-scale rule (the small-scale teeth runs are in the README): an untrained DLLM remasks the
    injected tokens it cannot score, so NFE no longer falls with ρ; a gold answer leaked into the
    drafts gives accuracy for free."""
    r = registry.get("dllm_context_init")
    base = replace(config.resolve(r, "smoke"), n_eval=8, stub_problems=8)
    m = r.run(replace(base, variant="untrained-dllm"), for_tests()).metrics
    assert "dllm_train_loss" not in m  # the DLLM was not trained
    assert r.claim("C1-nfe-monotone").check(m, "small")["verdict"] == "fails"
    m = r.run(replace(base, variant="gold-drafts"), for_tests()).metrics
    assert m["acc_inject@rho=1.0"] == 1.0
    assert r.claim("C2-no-free-accuracy").check(m, "small")["verdict"] == "fails"


def test_random_remask_control_matches_counts_not_positions() -> None:
    """C2's control arm: per pass, as many remasks per sequence as the confidence rule, at random
    provisional positions. With a stub that scores wrong drafted tokens low, the confidence rule remasks
    exactly the wrong ones (and recovers gold); the random rule remasks as many, mostly the wrong ones missed."""
    gold = _gold(32)
    wrong = torch.rand(gold.shape, generator=torch.Generator().manual_seed(3)) < 0.3
    draft = torch.where(wrong, (gold + 1) % TOK.vocab_size, gold)
    x0, prov = inject(draft, 1.0, M, torch.Generator().manual_seed(2))
    run = lambda rule: decode(StubDLLM(gold, TOK.vocab_size, M), x0, prov, M,  # noqa: E731
                              DecodeConfig(remask=True, remask_rule=rule), max_passes=200,
                              generator=torch.Generator().manual_seed(5))
    conf, rand = run("confidence"), run("random")
    assert torch.equal(conf.remasked, (wrong & prov).sum(1)) and torch.equal(conf.tokens, gold)
    assert torch.equal(rand.remasked, conf.remasked)  # same counts (one scoring pass, R = 1)
    assert (rand.tokens != gold).sum() > 0  # wrong tokens left in place where random picked right ones
    with pytest.raises(ConfigError):
        DecodeConfig(remask_rule="nope")


def test_dry_run_loads_the_dllm_through_remote_code(tmp_path) -> None:
    """Issue 17: the full dry run's DLLM is a folder with its own modelling code (like LLaDA), loaded by
    ``load_dllm`` (AutoModel + trust_remote_code) with a chat template, as the real run loads LLaDA."""
    from .full import load_dllm
    from .remote_fixture import write_remote_code_dllm

    folder = write_remote_code_dllm(tmp_path / "dllm")
    assert (folder / "modeling_tiny_dllm.py").exists() and '"auto_map"' in (folder / "config.json").read_text()
    model, tok = load_dllm(folder, "cpu", torch.float32)
    assert type(model).__module__.startswith("transformers_modules")  # the folder's own code, not a built-in class
    assert tok.chat_template and tok.mask_token_id is not None
    ids = torch.tensor([[1, 2, 3, tok.mask_token_id]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert out.shape == (1, 4, len(tok))
    emb = model.get_input_embeddings()(ids)
    assert torch.allclose(model(inputs_embeds=emb, attention_mask=torch.ones_like(ids)).logits, out, atol=1e-6)


def test_full_arms_are_also_scored_as_lm_eval_scores_gsm8k(tmp_path) -> None:
    """Issue 17 item 4: the full path scores every arm's answers with lm-evaluation-harness's gsm8k filters
    and metric (suite.metrics.answers, tested against lm-eval's own code) and writes them out."""
    import json

    from .full import standard_scores

    answers = ["Half of 84.\n#### 42", "Two and six.\n#### 8"]
    outs = {"b1": ["so 42 in all. #### 42", "The answer is 7. Then 9"], "aux": ["#### 42.00", "8"]}
    m = standard_scores(outs, answers, tmp_path)
    assert m["lmeval_strict/b1"] == 0.5 and m["lmeval_flexible/b1"] == 0.5  # flexible takes the last number: 9
    assert m["lmeval_strict/aux"] == 0.0 and m["lmeval_flexible/aux"] == 0.5  # 42.00 is not 42 for lm-eval
    rows = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["problem"]) for r in rows] == [("b1", 0), ("b1", 1), ("aux", 0), ("aux", 1)]


def test_trust_remote_code_is_a_config_field_that_reaches_the_loader(monkeypatch, tmp_path) -> None:
    """Issue 17: ``trust_remote_code`` (default True: LLaDA ships its modelling code) is what ``load_dllm`` passes
    to transformers, in the dry run and the real run; False refuses the remote-code fixture."""
    from . import full
    from .remote_fixture import write_remote_code_dllm

    class Loaded(Exception):
        pass

    seen = []

    def loader(folder, dev, dtype, trust_remote_code):
        seen.append(trust_remote_code)
        raise Loaded

    monkeypatch.setattr(full, "load_dllm", loader)
    cfg = config.resolve(registry.get("dllm_context_init"), "full")
    assert cfg.trust_remote_code is True  # the default
    for trust in (True, False):
        c = replace(cfg, trust_remote_code=trust)
        with pytest.raises(Loaded):
            full.run_full(c, for_tests("full", dry_run=True))
        with pytest.raises(Loaded):
            full.run_full(c, for_tests("full", data_root=tmp_path))
    assert seen == [True, True, False, False]
    monkeypatch.undo()
    folder = write_remote_code_dllm(tmp_path / "dllm")
    with pytest.raises(ValueError, match="trust_remote_code"):  # the flag reaches transformers
        full.load_dllm(folder, "cpu", torch.float32, trust_remote_code=False)

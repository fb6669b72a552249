"""Spec §6 smoke assertions for Light-IF (Entropy-SFT selection, dense reward, TEA weights), checker
and GRPO invariants, full-scale readers, and the teeth test."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from suite import config, registry
from suite.context import for_tests

from . import tasks as T
from .checkers import score_text
from .experiment import reward_cases
from .method import EntropySFT, GRPOConfig, RewardConfig, compute_score, cosine_length_reward, \
    entropy_sft_select, grpo_advantage, grpo_loss, sft_loss, tea_weights, token_entropy

TOK = T.tokenizer()


def test_entropy_sft_selection_on_hand_tensors() -> None:
    ce = torch.tensor([[2.0, 1.0, 3.0, 0.5, 9.0]])
    h = torch.tensor([[0.0, 0.0, 3.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    # δ = CE - 0.8 H = [2.0, 1.0, 0.6, 0.5, (masked)]; N = 4, k = floor(0.8*4) = 3
    idx = entropy_sft_select(ce, h, valid, EntropySFT())
    assert sorted(idx.tolist()) == [0, 1, 2]
    assert entropy_sft_select(ce, h, valid, EntropySFT(token_ratio=0.1)).tolist() == [0]  # k = max(0, 1)
    # position 2 has the largest CE but most of it is entropy: with λ = 0.8 it ranks below 0 and 1
    assert entropy_sft_select(ce, h, valid, EntropySFT(token_ratio=0.5)).tolist() == [0, 1]


def test_sft_loss_normalisations() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    y = torch.randint(0, 11, (2, 5))
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[1, 3:] = False
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    idx = entropy_sft_select(ce, token_entropy(logits), valid, EntropySFT())
    kept = ce.reshape(-1)[idx]
    assert len(idx) == math.floor(0.8 * 8)
    assert torch.allclose(sft_loss(logits, y, valid, EntropySFT()), kept.mean())
    assert torch.allclose(sft_loss(logits, y, valid, EntropySFT(), num_items_in_batch=20), kept.sum() / (20 * 0.8))
    assert torch.allclose(sft_loss(logits, y, valid, EntropySFT(enabled=False)), ce[valid].mean())


def test_token_entropy_chunked_matches_direct() -> None:
    logits = torch.randn(3, 7, 13, dtype=torch.float64)
    p = logits.softmax(-1)
    assert torch.allclose(token_entropy(logits, chunk=4).double(), -(p * p.log()).sum(-1), atol=1e-5)


def test_reward_hand_cases() -> None:
    for name, got, want in reward_cases(TOK):
        assert abs(got - want) < 1e-5, name
    c = cosine_length_reward(torch.tensor([0.0, 4096.0, 8192.0, 9000.0]), torch.tensor([1.5, 1.5, 1.5, 0.0]), 8192)
    assert torch.allclose(c, torch.tensor([0.0, 1.5, -2.0, -2.0]))
    low = cosine_length_reward(torch.tensor([4096.0]), torch.tensor([0.1]), 8192)
    assert torch.allclose(low, torch.tensor([-0.5]))
    sat = torch.tensor([[True, False]])
    act = torch.tensor([[True, True]])
    r = compute_score(sat, act, torch.tensor([0.1, 0.2]), torch.tensor([True]), torch.tensor([10]),
                      RewardConfig("binary"))
    assert float(r["score"]) == 0.0 and abs(float(r["point"]) - 0.1) < 1e-7


def test_tea_weights_sum_and_clamp() -> None:
    adv = torch.tensor([[3.0] * 4, [-1.0] * 4])
    lp = torch.tensor([[100.0, -1, -1, -1], [-1.0, -1, -1, -2]])
    m = torch.ones(2, 4, dtype=torch.bool)
    m[1, 3] = False
    w = tea_weights(adv, lp, m, alpha=10.0, ub=5.0)
    assert float(w.sum()) <= 10.0 + 1e-6 and float(w.max()) == 5.0 and float(w[1, 3]) == 0.0
    w1 = tea_weights(adv, torch.zeros(2, 4), m, alpha=10.0, ub=5.0)  # cov = 0 -> uniform α/N
    assert torch.allclose(w1[m], torch.full((7,), 10.0 / 7))


def test_grpo_advantage_and_loss() -> None:
    adv = grpo_advantage(torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]), 4)
    assert torch.all(adv[:4] == 0)                                  # zero-variance group: no signal
    assert torch.allclose(adv[4:], torch.tensor([-1.0, 1.0, -1.0, 1.0]) * 0.5 / math.sqrt(1 / 3), atol=1e-4)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, requires_grad=True)
    y = torch.tensor([[1, 2, 3], [1, 2, 3]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, _ = grpo_loss(logits, y, mask, torch.tensor([1.0, -1.0]), None, None, GRPOConfig(kl_coef=0.0))
    loss.backward()
    g = logits.grad
    assert bool((g[0, torch.arange(3), y[0]] < 0).all()) and bool((g[1, torch.arange(3), y[1]] > 0).all())
    # clip ratio 1.0: a ratio of 1.8 is NOT clipped (ratio range [0, 2], §7)
    old = torch.log_softmax(logits.detach(), -1).gather(-1, y[..., None])[..., 0] - math.log(1.8)
    l1, _ = grpo_loss(logits.detach(), y, mask, torch.tensor([1.0, 1.0]), old, None, GRPOConfig(kl_coef=0.0))
    assert abs(float(l1) + 1.8) < 1e-4
    l2, _ = grpo_loss(logits.detach(), y, mask, torch.tensor([1.0, 1.0]), old, None,
                      GRPOConfig(0.2, 0.2, kl_coef=0.0))
    assert abs(float(l2) + 1.2) < 1e-4


def test_valid_answers_pass_checkers_and_each_checker_fires() -> None:
    rng = np.random.default_rng(0)
    specs = T.sample_specs(500, rng)
    assert bool(((specs.active.sum(1) >= 2) & (specs.active.sum(1) <= 4)).all())
    prompts = T.encode_prompts(specs, TOK)
    assert prompts.shape == (500, T.PROMPT_LEN)
    words = T.sample_valid_answers(specs, rng)
    resp = T.answers_to_response(words, TOK)
    p = T.parse(resp, TOK, prompts[:, -1:])
    assert bool(T.check(p, specs, TOK).all())
    assert bool((T.check(T.parse(resp, TOK), specs, TOK) == 0).all())  # no </think> anywhere -> nothing holds
    # answers to other prompts violate constraints; every constraint type fails somewhere
    other = T.check(T.parse(resp.roll(1, 0), TOK, prompts[:, -1:]), specs, TOK)
    assert bool((~other & specs.active).any(0).all())
    assert len({tuple(r) for r in words[:50].tolist()}) == 50       # targets carry entropy


def test_text_checker_for_full_scale() -> None:
    spec = {"keywords": ["hi"], "keywords_num": [[2, 2]], "end_phrase": "bye", "low_word_cnt": 3,
            "max_word_cnt": 10}
    assert score_text("hi hi bye", "q", spec) == (False, 0.0, 0.0)
    think, acc, point = score_text("<think>plan</think> hi there hi bye", "q", spec)
    assert think and acc == 1.0 and abs(point - 0.3) < 1e-9
    _, acc, point = score_text("</think> x </think> hi there bye", "q", spec)
    assert acc == 0.0 and abs(point - 0.2) < 1e-9


def test_full_readers_round_trip(tmp_path) -> None:
    from .full import read_cold_start, read_rl, write_fixtures

    sft, rl = write_fixtures(tmp_path)
    pairs, items = read_cold_start(sft), read_rl(rl)
    assert len(pairs) == 4 and "</think>" in pairs[0][1] and len(items) == 4
    assert items[0][1]["end_phrase"] == "bye"


def test_teeth_entropy_sign_flip_fails_selection_claim() -> None:
    r = registry.get("light_if")
    cfg = replace(config.resolve(r, "smoke"), variant="delta-plus-entropy", sft_steps=1, base_steps=1,
                  rl_init_steps=0, rl_steps=1, rl_arms=("binary", "dense"))
    m = r.run(cfg, for_tests()).metrics
    assert r.claim("M-esft-selection").check(m, "smoke")["verdict"] == "fails"
    assert r.claim("M-reward-cases").check(m, "smoke")["verdict"] == "holds"


def test_broken_variants_change_what_they_name() -> None:
    # esft-keep-lowest: the complement end of the δ ranking (k = 3 of 4 tokens, δ = CE − 0 · H)
    ce, h, v = torch.tensor([[4.0, 1.0, 3.0, 2.0]]), torch.zeros(1, 4), torch.ones(1, 4, dtype=torch.bool)
    top = set(entropy_sft_select(ce, h, v, EntropySFT(0.75, 0.0)).tolist())
    low = set(entropy_sft_select(ce, h, v, EntropySFT(0.75, 0.0, keep_lowest=True)).tolist())
    assert top == {0, 2, 3} and low == {1, 3, 2}
    # point-sign-flipped: the dense partial credit becomes a penalty; binary is untouched
    sat = torch.tensor([[True, False]])
    act = torch.ones(1, 2, dtype=torch.bool)
    args = (sat, act, torch.tensor([0.2, 0.1]), torch.tensor([True]), torch.tensor([3]))
    assert float(compute_score(*args, RewardConfig("dense", length_term=False))["score"]) == pytest.approx(0.2)
    assert float(compute_score(*args, RewardConfig("dense", length_term=False, point_sign=-1.0))["score"]) == \
        pytest.approx(-0.2)
    assert float(compute_score(*args, RewardConfig("binary", point_sign=-1.0))["score"]) == 0.0


def test_full_dry_run_provenance_is_the_fixture(tmp_path) -> None:
    from .full import locate_data

    r = registry.get("light_if")
    sft, rl, ref = locate_data(config.resolve(r, "full"), for_tests("full", dry_run=True, data_root=tmp_path))
    assert sft.is_file() and rl.is_file()
    assert ref.provenance == "stand-in" and "fixture" in ref.name


def test_broken_variants_reach_the_full_path() -> None:
    """The TEST-ONLY variants act at full scale too (the full claims' teeth can only run there)."""
    from .full import _esft_arms, rewards

    r = registry.get("light_if")
    full = config.resolve(r, "full")
    assert _esft_arms(full)["esft"].enabled and not _esft_arms(full)["plain"].enabled
    assert not _esft_arms(replace(full, variant="esft-off"))["esft"].enabled
    assert _esft_arms(replace(full, variant="esft-keep-lowest"))["esft"].keep_lowest
    assert _esft_arms(replace(full, variant="delta-plus-entropy"))["esft"].entropy_coef == -full.entropy_coef
    item = [("q", {"keywords": ["hi"], "keywords_num": [[2, 2]], "end_phrase": "bye"})]
    text, n = ["<think>p</think> hi bye"], torch.tensor([6])  # end phrase met (0.1), keyword count missed
    ok = rewards(text, n, item, "dense", 8192)
    bad = rewards(text, n, item, "dense", 8192, point_sign=-1.0)
    assert float(ok["point"]) == pytest.approx(0.1) and float(ok["score"] - bad["score"]) == pytest.approx(0.2)


def test_an_interrupted_rl_stage_resumes_to_the_same_policy(tmp_path, monkeypatch) -> None:
    """Full-scale fits checkpoint (full_checkpoint_every): an RL stage of 3 rollout batches × 2 updates stopped
    after update 3 (between the two updates of batch 2) and run again resumes with the same rollout batch,
    prompt picks and RNG, ending at the straight run's weights."""
    from suite.context import for_tests
    from suite.models.hf import load_causal_lm, save_tiny_random_lm

    from . import full as F

    folder = save_tiny_random_lm(tmp_path / "lm", "qwen3", extra_tokens=("</think>",))
    cfg = replace(config.resolve(registry.get("light_if"), "full"), full_rl_prompts=2, full_rl_mini_batch=1,
                  full_rl_epochs=1, full_rl_micro_tokens=40, full_gen_batch=5, full_max_new=4,
                  full_checkpoint_every=1)
    items = [(f"say {w} {i}", {"keywords": [w], "keywords_num": [[1, 1]], "end_phrase": "bye"})
             for i, w in enumerate(["hi", "yo", "ok", "no", "go", "up", "on"])]
    gcfg = GRPOConfig(cfg.clip_ratio, cfg.clip_ratio, cfg.clip_c, cfg.kl_coef, 0.0, True, cfg.tea_alpha,
                      cfg.tea_ub, cfg.tea_coef)

    def stage(run_dir, seed):
        torch.manual_seed(seed)
        lm = load_causal_lm(folder, "cpu")
        assert F.rl_stage(lm, items, "dense", gcfg, cfg, for_tests("full", tmp=run_dir), "rl") == 6
        return lm.model.state_dict()

    straight = stage(tmp_path / "a", 0)
    real_fit = F.fit

    def stop_after_two(*args, **kw):
        def on_step(state):
            if state.step == 3:
                raise KeyboardInterrupt  # a preempted job: the checkpoint of step 2 stays
        return real_fit(*args, on_step=on_step, **kw)

    monkeypatch.setattr(F, "fit", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        stage(tmp_path / "b", 0)
    monkeypatch.setattr(F, "fit", real_fit)
    resumed = stage(tmp_path / "b", 123)  # another global seed: the checkpoint restores every RNG
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)

"""Full-scale RL follows the official stage-1 recipe (``rl/verl/recipe/Light-IF/Light-IF-1.7B-stage1.sh`` and
verl's actor config): 15 epochs of 128-prompt batches × n = 8, 4 updates of 32 prompts per batch with the old
log-probs computed once before them (so the clipped surrogate sees exp(logp − old_logp) ≠ 1 from the second
update on), micro-batches of ≤ 20000 tokens with gradient accumulation, AdamW weight decay 0.01, prompts over
1024 tokens filtered out."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from suite import config, registry
from suite.context import for_tests

from . import full as F
from . import method as M
from .method import GRPOConfig

ITEMS = [(f"say {w} {i}", {"keywords": [w], "keywords_num": [[1, 1]], "end_phrase": "bye"})
         for i, w in enumerate(["hi", "yo", "ok", "no"])]


def _full():
    return config.resolve(registry.get("light_if"), "full")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from suite.models.hf import save_tiny_random_lm

    return save_tiny_random_lm(tmp_path_factory.mktemp("lm"), "qwen3", extra_tokens=("</think>",))


def test_rl_schedule_is_the_recipe() -> None:
    """data.train_batch_size 128, drop-last, trainer.total_epochs 15, ppo_mini_batch_size 32 (4 updates)."""
    cfg = _full()
    assert (cfg.full_rl_prompts, cfg.full_rl_mini_batch, cfg.full_rl_epochs, cfg.rl_group) == (128, 32, 15, 8)
    assert F.rl_schedule(4800, cfg) == (37, 4, 15 * 37 * 4)
    assert F.rl_schedule(4863, cfg) == (37, 4, 15 * 37 * 4)  # the last partial batch is dropped
    with pytest.raises(Exception, match="full_rl_mini_batch"):
        F.rl_schedule(4800, replace(cfg, full_rl_mini_batch=48))


def test_overlong_prompts_are_filtered(tiny) -> None:
    from suite.models.hf import load_causal_lm

    tok = load_causal_lm(tiny, "cpu").tokenizer
    items = [("short", {}), ("long " * 400, {})]
    n = [len(tok(F.chat(tok, q), add_special_tokens=False)["input_ids"]) for q, _ in items]
    kept = F.filter_prompts(items, tok, 1024)
    assert n[0] <= 1024 < n[1] and kept == items[:1]


def test_rl_updates_use_old_logprobs_and_the_recipe_optimizer(tiny, tmp_path, monkeypatch) -> None:
    """One batch of 2 prompts × 8, 2 updates of 1 prompt each, every sequence its own micro-batch: the
    surrogate's ratio is exp(logp − old_logp) with old_logp from before the first update, so it is 1 at the
    first update and not at the second; each update accumulates 8 micro-batches weighted 1/8; AdamW wd 0.01."""
    from suite.models.hf import load_causal_lm

    cfg = replace(_full(), full_rl_prompts=2, full_rl_mini_batch=1, full_rl_epochs=1, full_rl_micro_tokens=1,
                  full_gen_batch=3, full_max_new=4, full_checkpoint_every=0,
                  full_rl_lr=1e-3)  # a large lr, so the policy moves visibly in one update
    gcfg = GRPOConfig(cfg.clip_ratio, cfg.clip_ratio, cfg.clip_c, cfg.kl_coef)
    ratios, calls, seen = [], [], {}
    real_surrogate, real_loss, real_fit = M.dual_clip_surrogate, F.grpo_loss, F.fit

    def surrogate(logp, old_logp, adv, *a):
        ratios.append((logp.detach() - old_logp).exp())
        return real_surrogate(logp, old_logp, adv, *a)

    def loss(logits, y, mask, adv, old, ref, g):
        calls.append(mask.shape[0])
        return real_loss(logits, y, mask, adv, old, ref, g)

    def fit(model, loss_fn, data, tc, **kw):
        seen["tc"] = tc
        return real_fit(model, loss_fn, data, tc, **kw)

    monkeypatch.setattr(M, "dual_clip_surrogate", surrogate)
    monkeypatch.setattr(F, "grpo_loss", loss)
    monkeypatch.setattr(F, "fit", fit)
    torch.manual_seed(0)
    lm = load_causal_lm(tiny, "cpu")
    n_updates = F.rl_stage(lm, ITEMS[:2], "dense", gcfg, cfg, for_tests("full", tmp=tmp_path), "rl")
    assert n_updates == 2 and seen["tc"].steps == 2
    assert seen["tc"].optimizer == "adamw" and seen["tc"].weight_decay == 0.01
    assert calls == [1] * 16  # 2 updates × 8 rollouts, one sequence per micro-batch
    first = torch.cat([r.flatten() for r in ratios[:8]])
    second = torch.cat([r.flatten() for r in ratios[8:]])
    assert torch.allclose(first, torch.ones_like(first), atol=1e-5)
    assert (second - 1).abs().max() > 1e-2  # off-policy after the first AdamW step


def test_dry_run_takes_two_rl_updates(tmp_path) -> None:
    """The dry run reaches the off-policy update too (one batch of 2 prompts, mini-batch 1)."""
    cfg = replace(_full(), full_rl_prompts=2, full_rl_mini_batch=1, full_rl_epochs=1)
    assert F.rl_schedule(2, cfg) == (1, 2, 2)

"""Full-path behaviours that now follow the official code (issue 17; README "Full preset against the official
code"): DAPO dynamic sampling with refill (recipe/dapo/dapo_ray_trainer.py), left truncation of prompts to
max_prompt_length (verl RLHFDataset, truncation='left'), validation metrics per data_source (verl _validate)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from suite.context import for_tests

from . import SCALES, Config, rl_setup, tree_config
from . import task as T
from .experiment import Env, encode_prompts, make_model, train_arm
from .full import by_source, truncate_left
from .method import LMSampler

TOK = T.tokenizer()


def _run(max_gen_batches: int, filter_uniform: bool = True, updates: int = 3) -> tuple[dict, list[int]]:
    """train_arm on a scripted reward: 3 of 4 problems are uniform (every leaf wrong), the rest mixed (leaf parity)."""
    cfg = Config(**{**SCALES["smoke"], "max_gen_batches": max_gen_batches, "filter_uniform": filter_uniform})
    train = T.generate(40, 0)
    hard = {id(p) for p in train[:30]}
    calls: list[int] = []

    def reward(ro, probs):
        calls.append(len(probs))
        ok = np.array([0.0 if id(probs[p.prompt]) in hard else float(p.index[-1] % 2) for p in ro.leaves])
        return ok, ok

    tree = tree_config(cfg)
    setup = rl_setup(cfg, TOK.pad_id, tree, prompts_per_step=4, gen_prompts=4, updates=updates, minibatches=1)
    env = Env(encode=lambda ps: encode_prompts(TOK, ps), reward=reward,
              sampler=lambda m, g: LMSampler(m, TOK.eos_id, TOK.pad_id, 1.0, g),
              evaluate=lambda m: 0.0, eos=TOK.eos_id, boxed=lambda ids: T.has_box(TOK.decode(ids)))
    base = make_model(TOK, 16, 1, 2, cfg.max_len, 0)
    return train_arm("treepo", base, train, env, setup, for_tests("smoke", 0)), calls


def test_dynamic_sampling_refills_to_prompts_per_step() -> None:
    """Official: generation batches are added until train_prompt_bsz non-uniform prompts are kept (surplus cut).
    The old filter-only update kept ~1 of 4 prompts from a single generation batch."""
    out, calls = _run(max_gen_batches=50)
    assert out["kept_prompts"] == [4, 4, 4]
    assert sum(out["gen_batches"]) == len(calls) > 3  # more than one generation batch per update
    assert out["gave_up"] == 0


def test_dynamic_sampling_gives_up_after_max_gen_batches() -> None:
    out, calls = _run(max_gen_batches=1)
    assert out["gen_batches"] == [1, 1, 1] and len(calls) == 3
    assert out["gave_up"] == sum(k < 4 for k in out["kept_prompts"]) > 0


def test_no_filter_means_one_generation_batch_all_kept() -> None:
    out, calls = _run(max_gen_batches=50, filter_uniform=False)
    assert out["gen_batches"] == [1, 1, 1] and out["kept_prompts"] == [4, 4, 4]


def test_prompt_truncation_is_left_at_max_prompt_length() -> None:
    ids = list(range(1030))
    assert truncate_left(ids, 1024) == ids[6:]
    assert truncate_left(ids[:10], 1024) == ids[:10]
    assert Config().full_max_prompt_len == 1024


def test_validation_per_data_source_and_both_official_test_files() -> None:
    assert Config().test_files == ("DeepScaler.aime.parquet", "SimpleRL-simplelr_qwen_level3to5.test.parquet")
    got = by_source(np.array([1.0, 0, 0, 0, 1, 1]), ["aime", "aime", "simplerl", "simplerl", "simplerl", "aime"])
    assert got == {"aime": 2 / 3, "simplerl": 1 / 3}


def test_full_dry_run_reports_per_source_accuracy(tmp_path) -> None:
    from . import run

    out = run(replace(Config(), model_dir="models/Qwen2.5-7B"), for_tests("full", dry_run=True, data_root=tmp_path))
    per = [k for k in out.metrics if k.startswith("acc_treepo/")]
    assert len(per) == 2 and all(k.endswith("/mean@2") for k in per)
    assert "gen_batches_per_update_treepo" in out.metrics

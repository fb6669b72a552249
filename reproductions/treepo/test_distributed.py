"""TreePO data-parallel over ranks (issue 17 item 5): two ranks on this CPU (gloo). One spawn per test (spawning is
slow), each bounded by an alarm so that a hang fails instead of blocking.

- the pieces, in one spawn of our own: (a) a generation batch sharded over the ranks and gathered back equals, on
  every rank, the one-process rollout of the whole batch (deterministic sampler: same leaves, order, index strings,
  rewards, token counts); (b) the gradient of the distributed token-mean PPO loss (each rank its rows, the global
  token count, times the world size) through DDP (tiny transformer) and FSDP (tiny Qwen2 sharded over its decoder
  layers as the full path does) equals the one-process loss's gradient on the whole mini-batch, also when each rank
  micro-batches its rows (full scale's dynamic micro-batching; rank 1 pads to rank 0's micro-batch count);
- (c) the full path run by the runner as 2 ranks completes with one record made by a world of 2.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from suite import distributed as D
from suite import registry, runner
from suite.runner import free_port
from suite.models.hf import load_causal_lm, save_tiny_random_lm
from suite.models.transformer import TransformerLM
from suite.rl import token_logprobs

from . import task as T
from .experiment import RLSetup, encode_prompts, minibatch_loss, rank_rows, sharded_rollout
from .full import _Logits, fsdp_wrap, write_fixture
from .method import Rollout, TreeConfig, ppo_loss, tree_rollout

needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
TOK = T.tokenizer()


class _DetSampler:
    """A sampler whose segment depends on its prefix only (no random numbers), so a rollout of a prompt is the
    same whichever rank rolls it out."""

    def __call__(self, prefixes: list[list[int]], n: int) -> tuple[list[list[int]], np.ndarray]:
        out = []
        for p in prefixes:
            h = sum((i + 1) * t for i, t in enumerate(p))
            seg = [TOK.eos_id if (h + j) % 9 == 0 else TOK.stoi[str((h * 7 + j * 3) % 10)] for j in range(n)]
            out.append(seg[:seg.index(TOK.eos_id) + 1] if TOK.eos_id in seg else seg)
        return out, np.array([float(sum(p) % 5) for p in prefixes])


def _reward(ro: Rollout, probs: list[T.Problem]) -> tuple[np.ndarray, np.ndarray]:
    correct = np.array([float((len(p.response) + len(probs[p.prompt].prompt)) % 2) for p in ro.leaves])
    return correct, correct - 0.01 * np.array([len(p.response) for p in ro.leaves])


def _leaf_rows(ro: Rollout) -> list[tuple]:
    return [(p.prompt, p.index, p.segs, p.status) for p in ro.leaves]


def _batch(n_rows: int, vocab: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(3, vocab, (n_rows, 9), generator=g)
    km = torch.ones(n_rows, 9, dtype=torch.bool)
    rm = torch.rand(n_rows, 8, generator=g) < 0.6  # rows with different token counts
    adv = torch.randn(n_rows, 8, generator=g)
    noise = 0.3 * torch.randn(n_rows, 8, generator=g)
    return toks, km, rm, adv, noise


def _grad_gap(base: torch.nn.Module, wrapped: torch.nn.Module, n_rows: int, vocab: int, seed: int,
              micro: int = 0) -> float:
    """max |grad(distributed loss) − grad(one-process loss)| over the parameters, for one mini-batch of n_rows;
    ``micro`` > 0: the distributed loss micro-batched (rows of 9 tokens: micro // 9 rows per micro-batch) through
    ``experiment.minibatch_loss`` as a fit step runs it (gradients zeroed after the loss, before its backward)."""
    toks, km, rm, adv, noise = _batch(n_rows, vocab, seed)
    ref = copy.deepcopy(base)
    with torch.no_grad():
        old = token_logprobs(ref(toks, km)[:, :-1], toks[:, 1:]) + noise
    ppo_loss(token_logprobs(ref(toks, km)[:, :-1], toks[:, 1:]), old, adv, rm).backward()
    rows = rank_rows(torch.arange(n_rows))
    keep = rm[rows] if len(D.shard(torch.arange(n_rows))) else torch.zeros_like(rm[rows])
    if micro:
        setup = RLSetup(0, TreeConfig(), 1, 1, 1, 1e-3, 0.0, 1.0, 0.2, 0.28, 10.0, 4, True, 1, 1, micro_tokens=micro)
        loss = minibatch_loss(wrapped, (toks[rows], km[rows], keep, old[rows], adv[rows]), setup, D.world_size())
        wrapped.zero_grad(set_to_none=True)
        loss.backward()
    else:
        logp = token_logprobs(wrapped(toks[rows], km[rows])[:, :-1], toks[rows][:, 1:])
        ppo_loss(logp, old[rows], adv[rows], keep, across_ranks=True).backward()
    grads = {k.removeprefix("module."): p.grad for k, p in wrapped.named_parameters()}
    gap = 0.0
    for k, p in ref.named_parameters():
        g = grads[k]
        g = g.full_tensor() if hasattr(g, "full_tensor") else g
        gap = max(gap, float((g - p.grad).abs().max()))
    return gap


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    D.init("cpu")
    try:
        out: dict = {}
        # (a) 5 prompts over 2 ranks (3 + 2); the reference is this process's rollout of all of them
        probs = T.generate(5, 3)
        tree = TreeConfig(seg_len=3, max_depth=4, width=4, first_div_min=2, first_div_max=2, max_response=12,
                          fallback=False)
        roll = lambda prompts: tree_rollout(prompts, _DetSampler(), tree, TOK.eos_id,  # noqa: E731
                                            lambda ids: TOK.stoi["]"] in ids, np.random.default_rng(0))
        enc = lambda ps: encode_prompts(TOK, ps)  # noqa: E731
        prompts, ro, correct, r = sharded_rollout(probs, enc, roll, _reward)
        ref_prompts = enc(probs)
        ref = roll(ref_prompts)
        ref_c, ref_r = _reward(ref, probs)
        out["rollout_equal"] = (prompts == ref_prompts and _leaf_rows(ro) == _leaf_rows(ref)
                                and correct.tolist() == ref_c.tolist() and r.tolist() == ref_r.tolist()
                                and (ro.tokens_decoded, ro.segments_decoded) == (ref.tokens_decoded,
                                                                                ref.segments_decoded))
        out["leaves"] = len(ro.leaves)
        # (b) DDP on a tiny transformer; FSDP on a tiny Qwen2 sharded as the full path shards it; 5 rows (3 + 2)
        # and 1 row (rank 1 holds none: its masked stand-in row)
        torch.manual_seed(0)
        lm = TransformerLM(TOK.vocab_size, 16, 16, 2, 2, causal=True)
        out["ddp_gap"] = max(_grad_gap(lm, D.wrap(copy.deepcopy(lm), "ddp"), n, TOK.vocab_size, n) for n in (5, 1))
        # rank 0 holds 3 rows -> 2 micro-batches of <= 18 tokens, rank 1 2 rows -> 1, padded to 2
        out["ddp_micro_gap"] = max(_grad_gap(lm, D.wrap(copy.deepcopy(lm), "ddp"), n, TOK.vocab_size, n, micro=18)
                                   for n in (5, 1))
        hf = load_causal_lm(Path(folder) / "qwen", "cpu").model
        pol = _Logits(hf)
        gaps = []
        for n in (5, 1):
            sharded = fsdp_wrap(copy.deepcopy(pol), hf._no_split_modules)
            gaps.append(_grad_gap(pol, sharded, n, hf.config.vocab_size, 10 + n))
        out["fsdp_gap"] = max(gaps)
        out["fsdp_micro_gap"] = max(_grad_gap(pol, fsdp_wrap(copy.deepcopy(pol), hf._no_split_modules), n,
                                              hf.config.vocab_size, 20 + n, micro=9) for n in (5, 1))
        out["fsdp_units"] = sum(type(m).__name__.startswith("FSDP") for m in sharded.modules())
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        D.shutdown()


@needs_gloo
def test_two_ranks_gather_rollouts_and_match_the_one_process_gradient(tmp_path, bounded):
    save_tiny_random_lm(tmp_path / "qwen", "qwen2", max_len=64)
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for o in outs:
        assert o["rollout_equal"], o  # (a) the whole batch, in one process's order, on both ranks
        assert o["leaves"] > 5
        assert o["ddp_gap"] < 1e-6, o  # (b) the averaged gradient is the one-process token-mean gradient
        assert o["fsdp_gap"] < 1e-6, o
        assert o["ddp_micro_gap"] < 1e-6 and o["fsdp_micro_gap"] < 1e-6, o  # micro-batched: the same gradient
        assert o["fsdp_units"] == 1 + 2  # the tiny Qwen2's 2 decoder layers and the root


def test_full_declares_one_rank_per_gpu():
    res = registry.get("treepo").declared_resources("full", ())
    assert res.processes == res.gpus == 8


@needs_gloo
@pytest.mark.slow  # about 20 s alone on 2 shared CPU cores, more under load (2 ranks import transformers, run both arms)
def test_full_path_as_two_ranks_makes_one_record(tmp_path, bounded):
    data = tmp_path / "data"
    cfg = registry.get("treepo").config()
    write_fixture(data / "TreePO_data", tuple(cfg.train_files) + tuple(cfg.test_files))
    save_tiny_random_lm(data / "models" / "tiny", "qwen2", max_len=512)
    over = ("model_dir=models/tiny", "full_seg_len=4", "full_max_depth=3", "full_width=4", "full_first_div_max=2",
            "full_prompts_per_step=2", "full_mini_batch=1", "full_updates=2", "full_eval_samples=2",
            "full_gen_prompts=2", "max_gen_batches=3")
    spec = runner.RunSpec("treepo", "full", 0, over)
    rec = runner.execute(spec, tmp_path / "results", device="cpu", data_root=data, processes=2)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["env"]["world_size"] == 2
    m = rec["metrics"]
    for arm in ("treepo", "grpo"):
        assert m[f"tokens_{arm}"] > 0 and 0.0 <= m[f"acc_{arm}"] <= 1.0
    # every generation batch's leaves gathered once: GRPO samples W independent leaves for each of its prompts
    assert m["trajectories_per_update_grpo"] == 4 * 2 * m["gen_batches_per_update_grpo"]
    assert len(list((tmp_path / "results").rglob("result.json"))) == 1

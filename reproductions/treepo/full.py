"""Full scale (spec §5): Qwen2.5-7B (base) trained with TreePO and with GRPO on the TreePO_data parquet
files (verl schema: ``prompt`` = chat list, ``data_source``, ``reward_model.ground_truth``,
``extra_info``), evaluated avg@16 at temperature 1 on the test parquet files. Rollouts use the same
:func:`tree_rollout` with a Hugging Face segment sampler (Ls = 512, D = 14, W = 16, d0 ~ U{2..8});
the PPO update is the same ``suite.train.fit`` loop as the CPU scales.

Outcome reward (spec §3 r_i; README "Full-scale reward"): the official scorer, in :mod:`.reward` (the stop-word
cut of ``verl/utils/reward_score/math_verify_timeout.py``, Qwen-Math's ``extract_answer`` and ``strip_string``, then
Math-Verify's ``parse`` and symbolic comparison), scored 1 / 0 as the spec says (official +1 / -1).

Several ranks (``Resources.processes = 8`` at full, one per GPU, as verl's FSDP workers): every update's prompts
are sharded over the ranks for the rollout and gathered back (``experiment.sharded_rollout``); the policy trains
FSDP-sharded over the decoder layers (:func:`fsdp_wrap`), each rank on its rows of every mini-batch with the token
mean over the whole mini-batch; a full copy of the weights on every rank rolls out (verl's rollout engine), synced
after the updates; the test prompts are sharded for validation.

Deviations: no vLLM (HF ``generate`` per segment, so wall time is not the paper's GPU-hours; decoded
tokens are counted as a prefix-cached engine decodes them).
``--dry-run`` uses a tiny random Qwen2 model, a character tokenizer and a 2-record fixture parquet in the
published schema.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite import distributed as D
from suite.context import RunContext
from suite.errors import CorruptDataError, DataNotFoundError, SuiteError
from suite.models.hf import load_causal_lm, save_tiny_random_lm
from suite.models.locate import locate_model
from suite.data.external import locate
from suite.spec import Outcome

from .experiment import Env, rank_generator, rank_rng, summarize, train_arm
from .method import Rollout, TreeConfig, overlong_penalty, tree_rollout
from .reward import answer_correct, has_closed_box, require_math_verify

COLUMNS = ("prompt", "reward_model")
HOW = "hf download m-a-p/TreePO_data --repo-type dataset --local-dir <data root>/TreePO_data"


def read_parquet(path: Path) -> list[dict]:
    """Records (chat prompt list, ground truth) of one verl parquet file."""
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found; run `{HOW}`")
    try:
        import pandas as pd

        df = pd.read_parquet(path)
    except ImportError as e:
        raise SuiteError(f"reading parquet needs pyarrow ({e}); pip install pyarrow") from None
    except Exception as e:
        raise CorruptDataError(f"{path} is not a readable parquet file ({str(e)[:100]}); re-download it") from e
    miss = [c for c in COLUMNS if c not in df.columns]
    if miss:
        raise CorruptDataError(f"{path} lacks columns {miss} of the verl schema; re-download TreePO_data")
    out = []
    # validation metrics are grouped by data_source, as verl's _validate does (default "unknown")
    sources = df["data_source"] if "data_source" in df.columns else ["unknown"] * len(df)
    for p, rm, src in zip(df["prompt"], df["reward_model"], sources):
        gt = rm.get("ground_truth") if isinstance(rm, dict) else None
        if isinstance(gt, (list, tuple, np.ndarray)):  # several truths: the official reward reads the last
            gt = gt[-1] if len(gt) else None
        if gt is None:
            raise CorruptDataError(f"{path}: a record has no reward_model.ground_truth; re-download TreePO_data")
        out.append({"prompt": [dict(m) for m in p], "answer": str(gt), "data_source": str(src)})
    return out


def truncate_left(ids: list[int], max_len: int) -> list[int]:
    """verl RLHFDataset with ``truncation='left'`` (and filter_overlong_prompts False, the ppo_trainer.yaml
    default): a prompt longer than max_prompt_length keeps its last ``max_len`` tokens."""
    return ids[-max_len:] if len(ids) > max_len else ids


def by_source(correct: np.ndarray, sources: list[str]) -> dict[str, float]:
    """Mean correctness per data_source (verl process_validation_metrics mean@N: the per-prompt mean over its N
    samples, averaged over prompts; equal to the pooled mean since every prompt has N samples)."""
    src = np.array(sources)
    return {str(s): float(correct[src == s].mean()) for s in dict.fromkeys(sources)}


def write_fixture(folder: Path, names: tuple[str, ...]) -> Path:
    """Tiny parquet files in the published verl schema (dry runs and tests)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    recs = [{"prompt": [{"role": "user", "content": "What is 2+3? Put the answer in \\boxed{}."}],
             "data_source": "fixture", "reward_model": {"ground_truth": "5", "style": "rule"},
             "extra_info": {"index": 0}},
            {"prompt": [{"role": "user", "content": "What is 7*6? Put the answer in \\boxed{}."}],
             "data_source": "fixture", "reward_model": {"ground_truth": "42", "style": "rule"},
             "extra_info": {"index": 1}}]
    for n in names:
        tmp = folder / f".{n}.tmp"
        # one data_source per file (the published files name theirs), so per-source metrics are exercised
        pd.DataFrame([{**r, "data_source": f"fixture-{n.split('.')[0]}"} for r in recs]).to_parquet(tmp)
        tmp.replace(folder / n)
    return folder


class _StepEntropy:
    """A ``generate`` logits processor that keeps each row's entropy of the next-token distribution, step by step
    (B,) on the device, and leaves the scores as they are: the entropy without storing (B, steps, vocab) scores
    (``output_scores``), which at a 152k vocabulary and 512-token segments does not fit a GPU."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        lp = scores.float().log_softmax(-1)
        self.steps.append(-(lp.exp() * lp).nan_to_num().sum(-1))
        return scores


class HFSampler:
    """Segment sampler over a Hugging Face causal LM: ``generate`` ≤ n new tokens per prefix (temperature
    1, top-p 1), cut after EOS; mean entropy of the sampling distributions. ``batch``: prefixes per ``generate``
    call (its KV cache must fit the device; the official rollout's vLLM schedules its own)."""

    def __init__(self, model: Any, eos: int, pad: int, gen: torch.Generator, batch: int = 64) -> None:
        self.model, self.eos, self.pad, self.gen, self.batch = model, eos, pad, gen, batch

    @torch.no_grad()
    def __call__(self, prefixes: list[list[int]], n: int) -> tuple[list[list[int]], np.ndarray]:
        from transformers import LogitsProcessorList

        dev = next(self.model.parameters()).device
        torch.manual_seed(int(torch.randint(2 ** 31 - 1, (1,), generator=self.gen)))
        rows: list[list[int]] = []
        ents: list[torch.Tensor] = []
        for lo in range(0, len(prefixes), self.batch):
            chunk = prefixes[lo:lo + self.batch]
            L = max(map(len, chunk))
            ids = torch.tensor([[self.pad] * (L - len(p)) + p for p in chunk], device=dev)
            att = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in chunk], device=dev)
            ent = _StepEntropy()
            out = self.model.generate(input_ids=ids, attention_mask=att, max_new_tokens=n, do_sample=True,
                                      temperature=1.0, top_p=1.0, top_k=0, pad_token_id=self.pad,
                                      eos_token_id=self.eos, logits_processor=LogitsProcessorList([ent]))
            new = out[:, L:]
            is_eos = new == self.eos
            valid = (is_eos.int().cumsum(1) - is_eos.int()) == 0  # up to and including the first EOS
            e = torch.stack(ent.steps, 1)[:, :new.shape[1]]
            ents.append(((e * valid).sum(1) / valid.sum(1).clamp_min(1)).cpu())
            new, valid = new.cpu(), valid.cpu()
            rows += [r[v].tolist() for r, v in zip(new, valid)]
        return rows, torch.cat(ents).numpy()


class _Logits(torch.nn.Module):
    """``forward(tokens, key_mask) -> logits`` around a HF causal LM (what ``train_arm`` expects)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, attention_mask=key_mask.long()).logits


def fsdp_wrap(model: torch.nn.Module, layer_names: Any) -> torch.nn.Module:
    """The policy sharded over the ranks with FSDP (``suite.distributed.wrap``), one unit per decoder layer: the
    classes the HF model names in ``_no_split_modules``, which verl's FSDP auto-wrap policy shards
    (``verl/utils/fsdp_utils.py get_fsdp_wrap_policy``), then the root (embeddings, final norm, head)."""
    names = set(layer_names or ())
    if not names:
        raise SuiteError(f"{type(model).__name__}: the HF model names no _no_split_modules to shard with FSDP")
    return D.wrap(model, "fsdp", shard_children=lambda m: type(m).__name__ in names)


def _model_dir(cfg: Any, ctx: RunContext) -> tuple[Path, str]:
    """The policy's ``save_pretrained`` folder under the data root (or an absolute path); without it, in a dry
    run or a rehearsal, a tiny random Qwen2 written as its fixture."""
    return locate_model(ctx, "treepo-lm", cfg.model_dir,
                        "a save_pretrained folder of Qwen/Qwen2.5-7B (hf download Qwen/Qwen2.5-7B --local-dir "
                        f"<data root>/{cfg.model_dir})",
                        lambda d: save_tiny_random_lm(d, "qwen2", max_len=512), "tiny-random-qwen2")


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    from . import rl_setup  # the declaration module builds the shared RL setup

    require_math_verify()  # the reward's checker: a one-line error naming the install before any work
    names = tuple(cfg.train_files) + tuple(cfg.test_files)
    # provenance comes from the locator: "paper" only when the parquet files are under the data root
    data, ref = locate(ctx, "TreePO_data", cfg.data_dir, names, HOW, fixture=lambda f: write_fixture(f, names))
    model_dir, model_name = _model_dir(cfg, ctx)
    if ctx.dry_run:
        tree = TreeConfig(seg_len=4, max_depth=3, width=4, first_div_max=2, max_response=12)
        kw: dict[str, Any] = {"prompts_per_step": 2, "gen_prompts": 2, "updates": 1, "minibatches": 1,
                              "eval_samples": 2, "micro_tokens": 16}  # rows of ~20 tokens: one per micro-batch
    else:
        tree = TreeConfig(seg_len=cfg.full_seg_len, max_depth=cfg.full_max_depth, width=cfg.full_width,
                          first_div_max=cfg.full_first_div_max, max_response=cfg.full_seg_len * cfg.full_max_depth,
                          allocation=cfg.allocation)
        kw = {"prompts_per_step": cfg.full_prompts_per_step, "updates": cfg.full_updates,
              "minibatches": max(1, cfg.full_prompts_per_step // cfg.full_mini_batch), "lr": cfg.full_lr,
              "eval_samples": cfg.full_eval_samples, "gen_prompts": cfg.full_gen_prompts,
              "micro_tokens": cfg.full_micro_tokens}
    train = [r for f in cfg.train_files for r in read_parquet(data / f)]
    test = [r for f in cfg.test_files for r in read_parquet(data / f)]
    lm = load_causal_lm(model_dir, ctx.device)
    tok = lm.tokenizer
    eos, pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    setup = rl_setup(cfg, pad, tree, **kw)
    model = _Logits(lm.model)
    lm.model.train()

    def encode(recs: list[dict]) -> list[list[int]]:
        if getattr(tok, "chat_template", None):
            ids = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True) for r in recs]
        else:
            ids = [tok.encode("\n".join(m["content"] for m in r["prompt"]) + "\n") for r in recs]
        return [truncate_left(x, cfg.full_max_prompt_len) for x in ids]

    def reward(ro: Rollout, recs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        texts = tok.batch_decode([p.response for p in ro.leaves], skip_special_tokens=True)
        # every leaf is scored on its text, whatever its status, as the official reward manager does
        ok = np.array([float(answer_correct(t, recs[p.prompt]["answer"])) for p, t in zip(ro.leaves, texts)])
        lens = np.array([len(p.response) for p in ro.leaves])
        return ok, ok + overlong_penalty(lens, tree.max_response, min(cfg.full_seg_len, tree.max_response // 4))

    # the rollout's "has a boxed answer" test, as the official rollout's extract_last_boxed (reward.has_closed_box)
    has_box = lambda ids: has_closed_box(tok.decode(ids, skip_special_tokens=True))  # noqa: E731

    last: dict[str, float] = {}

    def evaluate(m: torch.nn.Module) -> float:
        """avg@k on the test files; the test prompts sharded over the ranks, the correctness gathered (rank order),
        so every rank returns the same numbers (one process: all of them, as before)."""
        k = setup.eval_samples
        ev = replace(tree, width=k, first_div_min=1, first_div_max=k, repetition_stop=False, fallback=False)
        mine = list(D.shard(test))
        ro = tree_rollout(encode(mine), HFSampler(m.model, eos, pad, rank_generator(ctx, 7), cfg.full_sampler_batch),
                          ev, eos, has_box,
                          rank_rng(0), first_div=k)
        parts = D.gather((reward(ro, mine)[0], [mine[p.prompt]["data_source"] for p in ro.leaves]))
        ok = np.concatenate([c for c, _ in parts])
        last.clear()
        last.update(by_source(ok, [s for _, src in parts for s in src]))
        return float(ok.mean())

    layers = getattr(lm.model, "_no_split_modules", None)
    env = Env(encode=encode, reward=reward, sampler=lambda m, g: HFSampler(m.model, eos, pad, g, cfg.full_sampler_batch),
              evaluate=evaluate, eos=eos, boxed=has_box, wrap=lambda m: fsdp_wrap(m, layers))
    runs, per_source = {}, {}
    for arm in cfg.arms:
        runs[arm] = train_arm(arm, model, train, env, setup, ctx)
        per_source.update({f"acc_{arm}/{src}/mean@{setup.eval_samples}": v for src, v in last.items()})
    m = summarize(runs, setup)
    m.update(per_source)  # final validation per data_source (official val-core/<data_source>/acc/mean@16)
    return Outcome(metrics=m, dataset=ref, notes={"model_dir": str(cfg.model_dir), "model": model_name})

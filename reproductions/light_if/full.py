"""Full scale (spec §5): a Hugging Face causal LM (Qwen3 family) from ``<data root>/<model_dir>``.

1. Cold start: plain SFT and Entropy-SFT (§3.3), each from the base weights, on ``cold-start-2k.json``
   (ShareGPT ``conversations`` [{from, value}] or ``messages`` [{role, content}]), loss on the
   assistant turn, through ``suite.train.fit``.
2. TEA-RL (§3.4) from the Entropy-SFT model on the RL parquet (``reward_model.ground_truth`` = JSON
   with ``source``, ``query``, ``jqzl_prompt``; prompts over 1024 tokens dropped): GRPO as in
   ``Light-IF-1.7B-stage1.sh`` (15 epochs, 128 prompts × n = 8 per batch, 4 updates of 32 prompts, micro-batches
   of ≤ 20000 tokens, AdamW wd 0.01), temperature 1, dense reward
   acc + point + cosine length term (flagged sum, §7), TEA entropy bonus; a binary-reward arm too.
3. Every model is scored on held-out RL prompts: all-constraints-satisfied rate, mean partial credit
   and the mean token entropy of its own samples (the checkers of ``checkers.py``).
4. IFEval (spec §2 C1, §4; ``ifeval.py``): the base model (the paper's Qwen3 baseline), both cold-start
   models and both RL models answer IFEval's ``input_data.jsonl`` in thinking mode (greedy, as
   lm-eval's IFEval task), scored prompt-/instruction-level strict and loose by lm-eval's IFEval checker.
   The full claims read these numbers.

``--dry-run`` builds all of it with a tiny random Qwen3 model, a character tokenizer and fixture
files, and takes one step of each SFT stage and the 2 updates of one RL batch. Not implemented: ZeRO-3
(one device), the stage-2 curriculum, and CFBench, IFBench and SuperCLUE-CPIF (README).
"""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import ConfigError, CorruptDataError, DataNotFoundError
from suite.models.hf import CausalLM, load_causal_lm, save_tiny_random_lm
from suite.models.locate import locate_model
from suite.spec import DatasetRef, Outcome
from suite.rl import accumulate_step, micro_batches, microbatch_logprobs
from suite.train import TrainConfig, fit

from . import ifeval as IF
from .checkers import score_text
from .method import EntropySFT, GRPOConfig, cosine_length_reward, grpo_advantage, grpo_loss, \
    sft_loss, token_entropy


# --------------------------------------------------------------------------- data

def read_cold_start(path: Path) -> list[tuple[str, str]]:
    """(user prompt, assistant response) pairs of a ShareGPT/messages JSON list."""
    if not path.is_file():
        raise DataNotFoundError(f"cold-start data not found at {path}; {SFT_HOW}")
    try:
        rows = json.loads(path.read_text())
        out = []
        for r in rows:
            turns = r.get("conversations") or r.get("messages")
            txt = [t.get("value", t.get("content")) for t in turns]
            out.append((txt[-2], txt[-1]))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise CorruptDataError(f"{path} is not a ShareGPT JSON list ({e}); re-copy cold-start-2k.json") from e
    return out


def read_rl(path: Path) -> list[tuple[str, dict]]:
    """(query, jqzl_prompt spec) of the RL parquet rows whose source is ``jqzl-en``."""
    import pandas as pd

    if not path.is_file():
        raise DataNotFoundError(f"RL prompts not found at {path}; {RL_HOW}")
    try:
        df = pd.read_parquet(path)
        gts = [json.loads(r["ground_truth"]) for r in df["reward_model"]]
    except Exception as e:
        raise CorruptDataError(f"{path} lacks reward_model.ground_truth JSON ({str(e)[:80]}); re-copy it") from e
    return [(g["query"], g["jqzl_prompt"] if isinstance(g["jqzl_prompt"], dict) else json.loads(g["jqzl_prompt"]))
            for g in gts if g.get("source", "jqzl-en") == "jqzl-en"]


SFT_HOW = "copy cold-start-2k.json of qihoo360/Light-IF-SFTData there"
RL_HOW = "copy rl-stagte1-5k.parquet of the Light-IF release (Qihoo360/Light-IF, RL data) there"


def write_fixtures(root: Path) -> tuple[Path, Path]:
    """A 4-example cold-start JSON and a 4-row RL parquet in the published layouts (dry runs, tests)."""
    return write_sft_fixture(root / "cold-start.json"), write_rl_fixture(root / "rl.parquet")


def write_sft_fixture(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sft = [{"conversations": [{"from": "human", "value": f"Write {i + 2} words ending with ok."},
                              {"from": "gpt", "value": "<think>Preview: end with ok. Check: done.</think>"
                                                       + " word" * i + " ok"}]} for i in range(4)]
    path.write_text(json.dumps(sft))
    return path


def write_rl_fixture(path: Path) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": [{"role": "user", "content": f"Say hi {i} times. End your answer with 'bye'."}],
             "reward_model": {"style": "rule", "ground_truth": json.dumps(
                 {"source": "jqzl-en", "query": f"Say hi {i} times. End your answer with 'bye'.",
                  "jqzl_prompt": {"keywords": ["hi"], "keywords_num": [[i, i]], "end_phrase": "bye"}})}}
            for i in range(1, 5)]
    pd.DataFrame(rows).to_parquet(path)
    return path


def locate_data(cfg: Any, ctx: RunContext) -> tuple[Path, Path, DatasetRef]:
    """The cold-start JSON and the RL parquet under the data root (``paper`` only when both were found
    there); in a dry run without them, fixtures in the published layouts (``*-fixture``, stand-in)."""
    paths, refs = [], []
    for name, rel, how, write in (("light-if-cold-start", cfg.sft_file, SFT_HOW, write_sft_fixture),
                                  ("light-if-rl-stage1", cfg.rl_file, RL_HOW, write_rl_fixture)):
        f = Path(rel)
        folder, ref = locate(ctx, name, str(f.parent), [f.name], how,
                             fixture=lambda d, f=f, write=write: write(d / f.name))
        paths.append(folder / f.name)
        refs.append(ref)
    return paths[0], paths[1], DatasetRef.combine(*refs)


def chat(tok: Any, prompt: str) -> str:
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
    return f"User: {prompt}\nAssistant: "


def sft_tensors(pairs: list[tuple[str, str]], tok: Any, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (N, L) and the target mask (assistant tokens + eos), cropped to ``max_tokens``."""
    seqs, masks = [], []
    for p, r in pairs:  # data construction, once
        a = tok(chat(tok, p), add_special_tokens=False)["input_ids"]
        b = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append((a + b)[:max_tokens])
        masks.append(([False] * len(a) + [True] * len(b))[:max_tokens])
    L = max(map(len, seqs))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    tgt = torch.zeros((len(seqs), L), dtype=torch.bool)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, :len(s)], tgt[i, :len(m)] = torch.tensor(s), torch.tensor(m)
    return ids, tgt


# --------------------------------------------------------------------------- stages

def sft_stage(lm: CausalLM, data: tuple[torch.Tensor, torch.Tensor], esft: EntropySFT, cfg: Any, steps: int,
              ctx: RunContext, name: str) -> float:
    def loss_fn(model: Any, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, tgt = b
        L = int(torch.nonzero(tgt.any(0)).max()) + 1
        ids, tgt = ids[:, :L], tgt[:, :L]
        logits = model(input_ids=ids[:, :-1], attention_mask=torch.ones_like(ids[:, :-1])).logits
        return sft_loss(logits, ids[:, 1:], tgt[:, 1:], esft)

    lm.model.train()
    tc = TrainConfig(steps=steps, batch_size=cfg.full_sft_batch, lr=cfg.full_sft_lr, optimizer="adamw",
                     schedule="linear_warmup_cosine", warmup_steps=max(1, steps // 100), grad_clip=1.0,
                     log_every=max(1, steps // 20), checkpoint_every=cfg.full_checkpoint_every)
    res = fit(lm.model, loss_fn, data, tc, ctx=ctx, name=name)
    lm.model.eval()
    return res.final_loss


@torch.no_grad()
def sample(lm: CausalLM, prompts: list[str], max_new: int,
           chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int, list[str]]:
    """Sampled sequences (left-padded prompt + response, right-padded), their attention mask, the prompt
    width and the decoded responses (temperature 1). ``chunk``: sequences per ``generate`` call (its KV
    cache must fit the device; the release samples with vLLM), all sharing one prompt width."""
    tok = lm.tokenizer  # its pad token was set once by load_causal_lm
    enc = tok([chat(tok, p) for p in prompts], return_tensors="pt", padding=True, padding_side="left",
              add_special_tokens=False)
    enc = enc.to(lm.device)
    w = enc["input_ids"].shape[1]
    was = lm.model.training
    lm.model.eval()
    step = chunk or len(prompts)
    resps = []
    for lo in range(0, len(prompts), step):
        out = lm.model.generate(input_ids=enc["input_ids"][lo:lo + step],
                                attention_mask=enc["attention_mask"][lo:lo + step], do_sample=True,
                                temperature=1.0, top_k=0, max_new_tokens=max_new, pad_token_id=tok.pad_token_id)
        resps.append(out[:, w:])
    lm.model.train(was)
    width = max(r.shape[1] for r in resps)
    resp = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[1]), value=tok.pad_token_id)
                      for r in resps])
    is_eos = resp == tok.eos_token_id
    done = is_eos.cumsum(1)
    rmask = (done == 0) | ((done == 1) & is_eos)  # up to and including the first eos
    made = torch.cat([torch.full((r.shape[0],), r.shape[1]) for r in resps]).to(resp.device)
    rmask &= torch.arange(width, device=resp.device)[None] < made[:, None]  # not the padding between chunks
    out = torch.cat([enc["input_ids"], resp], 1)
    att = torch.cat([enc["attention_mask"].bool(), rmask], 1)
    texts = tok.batch_decode(resp.masked_fill(~rmask, tok.pad_token_id), skip_special_tokens=False)
    texts = [t.replace(tok.eos_token, "").replace(tok.pad_token, "") for t in texts]
    return out, att, w, texts


def rewards(texts: list[str], lengths: torch.Tensor, items: list[tuple[str, dict]], kind: str,
            max_len: int, point_sign: float = 1.0) -> dict[str, torch.Tensor]:
    parsed = [score_text(t, q, s) for t, (q, s) in zip(texts, items)]
    think = torch.tensor([p[0] for p in parsed], dtype=torch.float32)
    acc = torch.tensor([p[1] for p in parsed])
    point = torch.tensor([p[2] for p in parsed])
    r_len = cosine_length_reward(lengths.cpu(), acc + point, max_len) * think
    score = acc if kind == "binary" else acc + point_sign * point + r_len  # §7: flagged combination
    return {"score": score, "acc": acc, "point": point}


def evaluate(lm: CausalLM, items: list[tuple[str, dict]], cfg: Any, batch: int = 8) -> dict[str, float]:
    acc, point, ent_sum, ent_n = [], [], 0.0, 0
    for lo in range(0, len(items), batch):
        chunk = items[lo:lo + batch]
        out, att, w, texts = sample(lm, [q for q, _ in chunk], cfg.full_max_new)
        r = rewards(texts, att[:, w:].sum(1), chunk, "dense", cfg.full_max_new)
        acc += r["acc"].tolist()
        point += r["point"].tolist()
        with torch.no_grad():
            logits = lm.model(input_ids=out[:, :-1], attention_mask=att[:, :-1].long()).logits[:, w - 1:]
            m = att[:, w:]
            ent_sum += float((token_entropy(logits) * m).sum())
            ent_n += int(m.sum())
    return {"all_sat": float(np.mean(acc)), "point": float(np.mean(point)), "entropy": ent_sum / max(ent_n, 1)}


def filter_prompts(items: list[tuple[str, dict]], tok: Any, max_prompt: int) -> list[tuple[str, dict]]:
    """verl's ``filter_overlong_prompts``: drop the prompts whose chat-template tokens (generation prompt
    included) exceed ``data.max_prompt_length``."""
    return [it for it in items if len(tok(chat(tok, it[0]), add_special_tokens=False)["input_ids"]) <= max_prompt]


def rl_schedule(n_items: int, cfg: Any) -> tuple[int, int, int]:
    """(rollout batches per epoch, updates per rollout batch, fit steps = updates in all). verl: a
    drop-last dataloader of ``data.train_batch_size`` prompts, ``trainer.total_epochs`` passes, and
    ``ppo_mini_batch_size`` prompts per update with ``ppo_epochs`` 1."""
    if cfg.full_rl_prompts % cfg.full_rl_mini_batch:
        raise ConfigError(f"full_rl_prompts={cfg.full_rl_prompts} is not a multiple of full_rl_mini_batch="
                          f"{cfg.full_rl_mini_batch}")
    per_epoch = n_items // cfg.full_rl_prompts
    if per_epoch < 1:
        raise ConfigError(f"{n_items} RL prompts give no batch of full_rl_prompts={cfg.full_rl_prompts}; "
                          f"lower full_rl_prompts or supply the RL parquet")
    updates = cfg.full_rl_prompts // cfg.full_rl_mini_batch
    return per_epoch, updates, cfg.full_rl_epochs * per_epoch * updates


class RolloutBatch:
    """The rollout batch that the updates of one RL step consume: sequences, masks, GRPO advantages and the
    old (behaviour) and reference log-probs, both computed once before the first update (verl's
    ``compute_log_prob`` / ``compute_ref_log_prob``). It travels in the fit checkpoint (``stateful=``), so a
    job stopped between two updates of one batch resumes on the same batch."""

    def __init__(self) -> None:
        self.index = -1
        self.data: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, **self.data}

    def load_state_dict(self, st: Any) -> None:
        st = dict(st)
        self.index = int(st.pop("index"))
        self.data = st


@torch.no_grad()
def _logprobs(model: Any, ids: torch.Tensor, att: torch.Tensor, lengths: list[int],
              groups: list[list[int]]) -> torch.Tensor:
    """log p(y_t) of every next token of ``ids`` (B, L) under ``model``, micro-batch by micro-batch (each cut
    to its longest row, ``lengths``; ``suite.rl.microbatch_logprobs``), (B, L-1) on ``ids``' device (the CPU
    here); 0 past a row's micro-batch width."""
    was = model.training
    model.eval()
    dev = _device(model)
    out = microbatch_logprobs(lambda x, am: model(input_ids=x.to(dev), attention_mask=am.to(dev).long()).logits,
                              ids, att, lengths, groups)
    model.train(was)
    return out


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def rl_stage(lm: CausalLM, items: list[tuple[str, dict]], kind: str, gcfg: GRPOConfig, cfg: Any,
             ctx: RunContext, name: str) -> int:
    """Stage-1 GRPO (verl ``ppo_epochs`` 1): ``full_rl_epochs`` passes over ``items`` in batches of
    ``full_rl_prompts`` prompts × ``rl_group`` rollouts; each batch is split in order into mini-batches
    of ``full_rl_mini_batch`` prompts, one AdamW update each (a fit step), so from the second update on
    the importance ratio exp(logp − old_logp) of the clipped surrogate differs from 1. Each update
    accumulates micro-batches of at most ``full_rl_micro_tokens`` tokens, each micro-batch's token-mean
    loss weighted by its share of the mini-batch's sequences (verl dp_actor with use_dynamic_bsz).
    Returns the number of updates."""
    ref = copy.deepcopy(lm.model).eval().requires_grad_(False)
    n = cfg.rl_group
    per_epoch, updates, total = rl_schedule(len(items), cfg)
    buf = RolloutBatch()
    point_sign = -1.0 if cfg.variant == "point-sign-flipped" else 1.0  # TEST-ONLY variant

    def rollout(b: int) -> dict[str, Any]:
        epoch, pos = divmod(b, per_epoch)  # a fresh shuffle of the prompts every epoch (verl's sampler)
        perm = torch.randperm(len(items), generator=ctx.generator(211 + epoch))
        picks = perm[pos * cfg.full_rl_prompts:(pos + 1) * cfg.full_rl_prompts]
        rows = [items[int(i)] for i in picks.repeat_interleave(n)]  # rollout.n, groups contiguous
        out, att, w, texts = sample(lm, [q for q, _ in rows], cfg.full_max_new, cfg.full_gen_batch)
        r = rewards(texts, att[:, w:].sum(1), rows, kind, cfg.full_max_new, point_sign)
        out, att = out.cpu(), att.cpu()
        lengths = [w + int(k) for k in att[:, w:].sum(1)]
        groups = micro_batches(lengths, cfg.full_rl_micro_tokens)
        return {"ids": out, "att": att, "w": w, "adv": grpo_advantage(r["score"], n).float(),
                "old": _logprobs(lm.model, out, att, lengths, groups),
                "ref": _logprobs(ref, out, att, lengths, groups),
                "score": r["score"].float()}

    def loss_fn(model: Any, step: int) -> torch.Tensor:
        b, j = divmod(int(step), updates)
        if buf.index != b:
            buf.data, buf.index = rollout(b), b
        d = buf.data
        size = cfg.full_rl_mini_batch * n
        rows = list(range(j * size, (j + 1) * size))  # verl splits the batch in order into mini-batches
        w, ids, att = int(d["w"]), d["ids"], d["att"]
        lens = [w + int(att[i, w:].sum()) for i in rows]
        dev = _device(model)

        def part(g: list[int]) -> Any:
            def f() -> torch.Tensor:
                idx = [rows[k] for k in g]
                L = max(lens[k] for k in g)  # right padding beyond the longest row of the micro-batch is cut
                x, am = ids[idx, :L].to(dev), att[idx, :L].to(dev)
                y = x[:, 1:]
                mask = am[:, 1:] & (torch.arange(L - 1, device=dev)[None] >= w - 1)
                loss, _ = grpo_loss(model(input_ids=x[:, :-1], attention_mask=am[:, :-1].long()).logits, y, mask,
                                    d["adv"][idx].to(dev), d["old"][idx, :L - 1].to(dev),
                                    d["ref"][idx, :L - 1].to(dev), gcfg)
                return loss * (len(g) / size)  # dp_actor: policy_loss × micro rows / mini-batch rows
            return f

        return accumulate_step(model, [part(g) for g in micro_batches(lens, cfg.full_rl_micro_tokens)])

    lm.model.train()
    tc = TrainConfig(steps=total, batch_size=cfg.full_rl_mini_batch, lr=cfg.full_rl_lr, optimizer="adamw",
                     weight_decay=cfg.full_rl_weight_decay, schedule="constant", grad_clip=1.0, log_every=1,
                     checkpoint_every=cfg.full_checkpoint_every)
    # the fit's data stream is the update index; the rollout batch being consumed travels in the checkpoint
    fit(lm.model, loss_fn, lambda step: step, tc, ctx=ctx, name=name, stateful={"rollout": buf})
    lm.model.eval()
    return total


@torch.no_grad()
def greedy_generations(lm: CausalLM, prompts: list[str], max_new: int, batch: int) -> list[str]:
    """Greedy chat-template generations (thinking mode where the template has it), decoded without special
    tokens: the IFEval protocol of lm-eval's task (``do_sample: false``). Prompts of similar length share a
    batch."""
    tok = lm.tokenizer  # its pad token was set once by load_causal_lm
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out = [""] * len(prompts)
    was = lm.model.training
    lm.model.eval()
    for lo in range(0, len(order), batch):
        idx = order[lo:lo + batch]
        enc = tok([chat(tok, prompts[i]) for i in idx], return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False).to(lm.device)
        gen = lm.model.generate(**enc, do_sample=False, max_new_tokens=max_new, pad_token_id=tok.pad_token_id)
        resp = gen[:, enc["input_ids"].shape[1]:].cpu()
        eos = resp == tok.eos_token_id
        resp = resp.masked_fill(eos.cumsum(1) > 0, tok.pad_token_id)  # nothing after the first eos
        for i, t in zip(idx, tok.batch_decode(resp, skip_special_tokens=True)):
            out[i] = t
    lm.model.train(was)
    return out


def ifeval_stage(lm: CausalLM, items: list[IF.Item], registry: Any, cfg: Any, ctx: RunContext,
                 arm: str) -> dict[str, float]:
    """IFEval accuracies of one model (``ifeval_<metric>_<arm>``); generations and verdicts are kept in
    ``<run dir>/ifeval/<arm>.jsonl``."""
    gens = greedy_generations(lm, [it.prompt for it in items], cfg.ifeval_max_new, cfg.ifeval_batch)
    answers = [IF.answer_of(g) for g in gens]
    agg, rows = IF.score(items, answers, registry)
    out = ctx.run_dir / "ifeval"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{arm}.jsonl", "w") as fh:
        for it, g, a, r in zip(items, gens, answers, rows):
            fh.write(json.dumps({"key": it.key, "prompt": it.prompt, "generation": g, "response": a, **r}) + "\n")
    m = {f"ifeval_{short}_{arm}": agg[full] for short, full in IFEVAL_METRICS.items()}
    m[f"ifeval_think_closed_{arm}"] = float(np.mean([IF.THINK_END in g for g in gens]))
    ctx.log("ifeval[%s]: %s", arm, {k: round(v, 4) for k, v in m.items()})
    return m


IFEVAL_METRICS = {"prompt_strict": "prompt_level_strict_acc", "inst_strict": "inst_level_strict_acc",
                  "prompt_loose": "prompt_level_loose_acc", "inst_loose": "inst_level_loose_acc"}


def _esft_arms(cfg: Any) -> dict[str, EntropySFT]:
    """Plain SFT and Entropy-SFT (§3.3), with the TEST-ONLY broken variants of the config."""
    esft = EntropySFT(cfg.token_ratio, cfg.entropy_coef)
    if cfg.variant == "delta-plus-entropy":
        esft = replace(esft, entropy_coef=-cfg.entropy_coef)
    elif cfg.variant == "esft-keep-lowest":
        esft = replace(esft, keep_lowest=True)
    return {"plain": EntropySFT(enabled=False), "esft": replace(esft, enabled=cfg.variant != "esft-off")}


def _model_dir(cfg: Any, ctx: RunContext) -> tuple[Path, str]:
    """The policy's ``save_pretrained`` folder under the data root (or an absolute path); without it, in a
    dry run or a rehearsal, a tiny random Qwen3 with a ``</think>`` token written as its fixture."""
    return locate_model(ctx, "light-if-lm", cfg.model_dir,
                        f"hf download Qwen/Qwen3-1.7B --local-dir <data root>/{cfg.model_dir}",
                        lambda d: save_tiny_random_lm(d, "qwen3", extra_tokens=("</think>",)), "tiny-random-qwen3")


# --------------------------------------------------------------------------- the run

def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    registry = IF.reference_registry(ctx.data_root, ctx.cache_dir)  # the IFEval checker, offline; fails before any work
    sft_path, rl_path, ref = locate_data(cfg, ctx)  # provenance from the locator, never typed here
    if_path, if_ref = IF.locate_input(cfg.ifeval_file, ctx)
    ref = DatasetRef.combine(ref, if_ref)
    model_dir, model_name = _model_dir(cfg, ctx)
    if ctx.dry_run:
        steps_sft, n_eval, max_new = 1, 2, 8
        cfg = copy.copy(cfg)
        cfg.full_sft_batch, cfg.full_max_new = 2, max_new
        cfg.full_rl_prompts, cfg.full_rl_mini_batch, cfg.full_rl_epochs = 2, 1, 1  # 2 updates of one batch
        cfg.ifeval_prompts, cfg.ifeval_max_new, cfg.ifeval_batch = 2, max_new, 2
    else:
        steps_sft, n_eval = cfg.full_sft_steps, cfg.full_eval_prompts
    pairs = read_cold_start(sft_path)
    all_items = read_rl(rl_path)
    bench = IF.read_input_data(if_path)
    bench = bench[:cfg.ifeval_prompts] if cfg.ifeval_prompts else bench
    m: dict[str, float] = {"ifeval_prompts": float(len(bench))}
    sft_models: dict[str, CausalLM] = {}
    for arm, e in _esft_arms(cfg).items():
        lm = load_causal_lm(model_dir, ctx.device)
        if arm == "plain":  # the paper's baseline: the base model itself (Qwen3, thinking mode)
            # verl's filter_overlong_prompts (data.max_prompt_length), then our held-out split
            items = filter_prompts(all_items, lm.tokenizer, cfg.full_max_prompt)
            rng = np.random.default_rng(ctx.seed)
            perm = rng.permutation(len(items))
            held = [items[i] for i in perm[:n_eval]]
            train_items = [items[i] for i in perm[n_eval:]] or held
            m["rl_prompts_kept"] = float(len(items))
            m.update(ifeval_stage(lm, bench, registry, cfg, ctx, "base"))
        data = sft_tensors(pairs, lm.tokenizer, cfg.full_max_tokens)
        m[f"train_loss_sft_{arm}"] = sft_stage(lm, data, e, cfg, steps_sft, ctx, f"full_sft_{arm}")
        m.update({f"{k}_sft_{arm}": v for k, v in evaluate(lm, held, cfg).items()})
        m.update(ifeval_stage(lm, bench, registry, cfg, ctx, f"sft_{arm}"))
        if arm == "esft":
            sft_models[arm] = lm
        del lm
    m["entropy_esft_over_plain"] = m["entropy_sft_esft"] / max(m["entropy_sft_plain"], 1e-12)
    m["all_sat_esft_minus_plain"] = m["all_sat_sft_esft"] - m["all_sat_sft_plain"]
    base = sft_models["esft"]
    for arm, (kind, tea) in {"binary": ("binary", False), "dense_tea": ("dense", True)}.items():
        lm = CausalLM(copy.deepcopy(base.model), base.tokenizer, base.device)
        gcfg = GRPOConfig(cfg.clip_ratio, cfg.clip_ratio, cfg.clip_c, cfg.kl_coef, 0.0, tea, cfg.tea_alpha,
                          cfg.tea_ub, cfg.tea_coef)
        m[f"rl_updates_{arm}"] = float(rl_stage(lm, train_items, kind, gcfg, cfg, ctx, f"full_rl_{arm}"))
        m.update({f"{k}_rl_{arm}": v for k, v in evaluate(lm, held, cfg).items()})
        m.update(ifeval_stage(lm, bench, registry, cfg, ctx, f"rl_{arm}"))
        del lm
    m["all_sat_dense_tea_minus_binary"] = m["all_sat_rl_dense_tea"] - m["all_sat_rl_binary"]
    # the full claims (README): Light-IF = Entropy-SFT cold start + dense-reward TEA-RL, vs its base model
    # and vs the binary-reward ablation, and the cold start alone vs plain SFT, on IFEval
    for short in IFEVAL_METRICS:
        m[f"ifeval_{short}_light_if_minus_base"] = m[f"ifeval_{short}_rl_dense_tea"] - m[f"ifeval_{short}_base"]
        m[f"ifeval_{short}_dense_tea_minus_binary"] = m[f"ifeval_{short}_rl_dense_tea"] - m[f"ifeval_{short}_rl_binary"]
        m[f"ifeval_{short}_esft_minus_plain"] = m[f"ifeval_{short}_sft_esft"] - m[f"ifeval_{short}_sft_plain"]
    return Outcome(metrics=m, dataset=ref, notes={"model_dir": str(cfg.model_dir), "model": model_name,
                                                  "sft_examples": len(pairs), "rl_prompts": len(all_items),
                                                  "ifeval_punkt": IF.ensure_punkt()})

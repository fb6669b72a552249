"""Full scale (spec §5): RDS+ over the Tulu-2 unfiltered pool with a Llama-2-7B base model, both read
from disk, and the selected training files written for fine-tuning.

Layout under the data root (``--data-root`` / ``$SUITE_DATA``):
- ``<pool_file>`` (default ``rds_plus/tulu_v2_unfiltered_data_dedup.jsonl``): one JSON object per line
  with a ``messages`` list of ``{"role", "content"}`` (the released ``tulu_v2_unfiltered_data_dedup.jsonl``,
  ~5.8M lines; or its 200k random subset for the "from 200k" rows);
- ``<query_dir>/<task>.jsonl`` (default ``rds_plus/queries/``): the target tasks' query examples in the
  same ``messages`` format, one file per task of ``full_tasks`` (the official ``alpacafarm``,
  ``gsm8k_shots``, ``bbh_shots``, ``tydiqa_shots``, ``codex``, ``squad``, ``mmlu_shots`` sets exported once
  from the official ``minimal_multitask/data.py``, README "Full scale");
- ``<model_dir>`` (default ``models/Llama-2-7b-hf``): a Hugging Face ``save_pretrained`` folder.

Pipeline (spec §3, §5, §7):
1. index: stream the pool in shards of ``full_shard_size`` lines (official: ``split -l 200000``), embed each
   item (Tulu chat format, <= ``full_max_seq_len`` tokens, final hidden states, padding-aware
   position-weighted mean, L2-normalised) and save every shard as fp16 (5.8M x 4096 x 2 B = 47 GB instead
   of 95 GB in fp32). The index is cached per base model, pool file and pooling under the cache dir
   (representations of different models are not comparable, §7) and resumes shard by shard;
2. queries: embed each task's query examples the same way, except the cut: as the official
   ``construct_test_sample`` does, the prompt and the response are tokenized separately and EACH cut at the
   task's ``full_query_max_len`` (512 or 2048 tokens, README table);
3. score: per task, max over its queries of the cosine similarity, shard by shard on the device;
4. select: top ``full_n_single`` per task, round-robin ``full_n_multi`` over all tasks, and random
   ``full_n_single`` / ``full_n_multi`` (the baseline at equal n); each written as a jsonl of pool lines
   under ``<run dir>/selections/``.
Fine-tuning (2 epochs, lr 2e-5, ...) and the open-instruct evaluation run on those files with the
official scripts (README "Full scale"; not part of this module).
``--dry-run`` runs the same code on a tiny random Llama and fixture files in the published formats.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.io import atomic_torch_save
from suite.models.locate import locate_model
from suite.spec import DatasetRef, Outcome

from . import method as M
from .experiment import mechanics

POOL_HOW = ("download tulu_v2_unfiltered_data_dedup.jsonl from the Hugging Face collection "
            "'large-scale-data-selection-for-instruction-tuning' (hamishivi) into <data root>/rds_plus/")
QUERY_HOW = ("export each target task's query set (official minimal_multitask/data.py DATASETS[task]) as "
             "messages-format jsonl to <data root>/rds_plus/queries/<task>.jsonl")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# --------------------------------------------------------------------------- formats

def tulu_text(messages: Sequence[dict], eos: str) -> str:
    """The Tulu chat format of spec §3 over the whole conversation (prompt and response):
    ``<|user|>\\n{prompt}\\n<|assistant|>\\n{response}{eos}\\n`` per turn, stripped."""
    out = []
    for msg in messages:
        role, text = msg["role"], str(msg["content"]).strip()
        if role == "system":
            out.append(f"<|system|>\n{text}\n")
        elif role == "user":
            out.append(f"<|user|>\n{text}\n")
        elif role == "assistant":
            out.append(f"<|assistant|>\n{text}{eos}\n")
        else:
            raise DataNotFoundError(f"unknown message role {role!r}: expected system, user or assistant")
    return "".join(out).strip()


def read_jsonl(path: Path, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, raw line) for the non-empty lines start <= i < stop."""
    with open(path) as fh:
        for i, line in enumerate(fh):
            if stop is not None and i >= stop:
                break
            if i >= start and line.strip():
                yield i, line


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _write_messages(path: Path, rows: Sequence[tuple[str, str]], extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i, (u, a) in enumerate(rows):
            obj = {"id": f"fixture_{i}", "messages": [{"role": "user", "content": u},
                                                      {"role": "assistant", "content": a}]}
            obj.update(extra or {})
            fh.write(json.dumps(obj) + "\n")


def write_pool_fixture(folder: Path, name: str) -> None:
    rows = [(f"What is {i} plus {i}?", str(2 * i)) for i in range(6)] + \
           [(f"Reverse the word abc{i}.", f"{i}cba") for i in range(6)] + [("Hello!", "Hi, how can I help?")] * 2
    _write_messages(folder / name, rows, {"dataset": "fixture"})


def write_query_fixture(folder: Path, tasks: Sequence[str]) -> None:
    for k, t in enumerate(tasks):
        _write_messages(folder / f"{t}.jsonl", [(f"Fixture query {k}.{j}: add {j} and {k}.", str(j + k))
                                                 for j in range(3)])


# --------------------------------------------------------------------------- embedding

def embed_texts(lm: Any, texts: Sequence[str], max_len: int, batch: int, pooling: M.Pooling) -> torch.Tensor:
    """Unit vectors (N, d) float32 on the model's device: final hidden states of each text (truncated to
    ``max_len`` tokens), pooled over its real tokens only (right padding, spec §7)."""
    out = []
    for s in range(0, len(texts), batch):
        ids = lm.tokenizer(list(texts[s:s + batch]), truncation=True, max_length=max_len)["input_ids"]
        out.append(embed_ids(lm, ids, batch, pooling))
    return torch.cat(out)


def query_parts(obj: dict, eos: str) -> tuple[str, str]:
    """(prompt, label) of one query line, the two strings the official ``construct_test_sample`` gets
    (minimal_multitask/data.py). A line with the official ``prompts`` / ``labels`` strings is used as is;
    a ``messages`` line ends with the response (the last ``assistant`` turn) and its earlier turns become the
    prompt in ``create_prompt_with_tulu_chat_format`` form (minimal_multitask/utils.py), which ends with
    ``<|assistant|>\n``."""
    if "prompts" in obj and "labels" in obj:
        return str(obj["prompts"]), str(obj["labels"])
    msgs = obj["messages"]
    if not msgs or msgs[-1]["role"] != "assistant":
        raise DataNotFoundError("a query line's messages must end with the assistant response")
    prompt = ""
    for msg in msgs[:-1]:
        role, text = msg["role"], str(msg["content"])
        if role == "system":
            prompt += f"<|system|>\n{text}\n"
        elif role == "user":
            prompt += f"<|user|>\n{text}\n"
        elif role == "assistant":
            prompt += f"<|assistant|>\n{text.strip()}{eos}\n"
        else:
            raise DataNotFoundError(f"unknown message role {role!r}: expected system, user or assistant")
    return prompt + "<|assistant|>\n", str(msgs[-1]["content"])


def query_ids(tok: Any, prompt: str, label: str, max_len: int) -> list[int]:
    """Token ids of one query as the official ``construct_test_sample`` builds them: the prompt (with the
    tokenizer's special tokens) and ``label + eos`` (without) are tokenized SEPARATELY, each truncated by the
    tokenizer to ``max_len`` tokens (the tokenizer's truncation side, right for Llama: the first tokens are
    kept), then concatenated, so a query holds up to 2 x ``max_len`` tokens."""
    p = tok(prompt, max_length=max_len, truncation=True)["input_ids"]
    lab = tok(label + (tok.eos_token or ""), max_length=max_len, truncation=True, add_special_tokens=False)
    return list(p) + list(lab["input_ids"])


def right_padded(tok: Any, ids: Sequence[Sequence[int]], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids (B, T), real-token mask (B, T)) of tokenized sequences, right-padded to the longest with the
    tokenizer's pad id (its EOS when it has none), passed here so the shared tokenizer is never changed."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [list(r) for r in ids]
    width = max(len(r) for r in rows)
    x = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long, device=device)
    lengths = torch.tensor([len(r) for r in rows], device=device)
    return x, torch.arange(width, device=device)[None] < lengths[:, None]


@torch.no_grad()
def embed_ids(lm: Any, ids: Sequence[Sequence[int]], batch: int, pooling: M.Pooling) -> torch.Tensor:
    """Unit vectors (N, d) float32 on the model's device of tokenized sequences, right-padded per batch and
    pooled over the real tokens only (spec §7)."""
    out = []
    for s in range(0, len(ids), batch):
        x, mask = right_padded(lm.tokenizer, ids[s:s + batch], lm.device)
        h = lm.model(input_ids=x, attention_mask=mask.long(), output_hidden_states=True).hidden_states[-1]
        out.append(M.pool_hidden(h.float(), mask, pooling))
    return torch.cat(out)


def embed_queries(lm: Any, path: Path, max_len: int, batch: int, pooling: M.Pooling) -> torch.Tensor:
    """One task's query embeddings (N, d): prompt and response each cut at the task's ``max_len``
    (official ``get_all_test_prompts`` default, README table), not the whole text at one limit."""
    eos = lm.tokenizer.eos_token or ""
    ids = [query_ids(lm.tokenizer, *query_parts(json.loads(line), eos), max_len) for _, line in read_jsonl(path)]
    if not ids:
        raise DataNotFoundError(f"{path} holds no query line")
    return embed_ids(lm, ids, batch, pooling)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:12]


def build_index(lm: Any, pool_path: Path, index_dir: Path, n_items: int, cfg: Any, ctx: RunContext,
                pooling: M.Pooling) -> list[Path]:
    """fp16 index shards ``shard_00000.pt`` ... of ``cfg.full_shard_size`` items each (resumable: a shard
    already on disk is kept)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    eos = lm.tokenizer.eos_token or ""
    for k, start in enumerate(ctx.progress(range(0, n_items, cfg.full_shard_size), desc="index shards")):
        path = index_dir / f"shard_{k:05d}.pt"
        shards.append(path)
        if path.exists():
            continue
        texts = [tulu_text(json.loads(line)["messages"], eos)
                 for _, line in read_jsonl(pool_path, start, start + cfg.full_shard_size)]
        emb = embed_texts(lm, texts, cfg.full_max_seq_len, cfg.full_batch, pooling)
        atomic_torch_save(emb.to(torch.float16).cpu(), path)
        ctx.log("rds_plus full: index shard %d (%d items) -> %s", k, len(texts), path)
    return shards


def score_shards(shards: Sequence[Path], query_embs: Sequence[torch.Tensor], aggregation: M.Aggregation,
                 device: torch.device, negate: bool = False) -> torch.Tensor:
    """(K, N) task scores over the sharded index (each shard loaded once, scored on ``device``)."""
    cols = []
    for path in shards:
        emb = torch.load(path, weights_only=True).to(device)
        cols.append(torch.stack([M.task_scores(q, emb, aggregation, negate=negate) for q in query_embs]).cpu())
    return torch.cat(cols, dim=1)


def write_selection(pool_path: Path, idx: torch.Tensor, out: Path) -> None:
    """The selected pool lines (in selection order) as a jsonl training file."""
    order = idx.tolist()
    want = set(order)
    lines: dict[int, str] = {i: line for i, line in read_jsonl(pool_path) if i in want}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for i in order:
            fh.write(lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
    os.replace(tmp, out)


# --------------------------------------------------------------------------- the run

def _model(cfg: Any, ctx: RunContext, scratch: Path) -> tuple[Any, str]:
    """The LM whose hidden states embed the data (a ``save_pretrained`` folder under the data root, or an
    absolute path); without it, in a dry run or a rehearsal, a tiny random Llama written as a fixture."""
    from suite.models.hf import load_causal_lm, save_tiny_random_lm

    folder, name = locate_model(ctx, "rds-lm", cfg.model_dir, "a save_pretrained folder of meta-llama/Llama-2-7b-hf",
                                lambda d: save_tiny_random_lm(d, "llama"), "tiny-random-llama")
    return load_causal_lm(folder, ctx.device, DTYPES[cfg.full_dtype]), name


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    pool_sub, pool_name = os.path.split(cfg.pool_file)
    pool_folder, pool_ref = locate(ctx, "tulu-v2-unfiltered-dedup", pool_sub, [pool_name], POOL_HOW,
                                   fixture=lambda d: write_pool_fixture(d, pool_name))
    q_folder, q_ref = locate(ctx, "rds-plus-query-sets", cfg.query_dir, [f"{t}.jsonl" for t in cfg.full_tasks],
                             QUERY_HOW, fixture=lambda d: write_query_fixture(d, cfg.full_tasks))
    ref = DatasetRef.combine(pool_ref, q_ref)
    pool_path = pool_folder / pool_name
    scratch = ctx.run_dir  # the runner gives a dry run a temporary folder
    lm, model_name = _model(cfg, ctx, scratch)
    pooling: M.Pooling = "reversed" if cfg.variant == "reversed" else "weighted_mean"
    n_items = count_lines(pool_path)
    shard_size = cfg.full_shard_size if not ctx.dry_run else min(cfg.full_shard_size, 5)  # dry run: >1 shard
    run_cfg = _ShardCfg(cfg, shard_size)
    m: dict[str, float] = {"pool_size": float(n_items), "n_tasks": float(len(cfg.full_tasks))}
    ctx.log("rds_plus full: model %s, pool %s (%d items), tasks %s", model_name, pool_path, n_items, cfg.full_tasks)

    # spec §7: one index per base model (and pool, pooling); reused by every target task
    index_dir = (scratch / "index" if ctx.dry_run else ctx.cache_dir / "rds_plus" / "index" /
                 _key(model_name, pool_path, n_items, cfg.full_max_seq_len, pooling, shard_size))
    t0 = time.perf_counter()
    shards = build_index(lm, pool_path, index_dir, n_items, run_cfg, ctx, pooling)
    m["index_s"] = time.perf_counter() - t0
    m["index_shards"] = float(len(shards))
    m["index_gb_fp16"] = sum(p.stat().st_size for p in shards) / 1e9

    # mechanics on the model's own hidden states of the first items (spec §6 smoke list, §7)
    eos = lm.tokenizer.eos_token or ""
    first = [tulu_text(json.loads(line)["messages"], eos) for _, line in read_jsonl(pool_path, 0, 4)]
    x, mask = right_padded(lm.tokenizer, lm.tokenizer(first, truncation=True, max_length=cfg.full_max_seq_len)
                           ["input_ids"], lm.device)
    with torch.no_grad():
        h = lm.model(input_ids=x, attention_mask=mask.long(), output_hidden_states=True).hidden_states[-1].float().cpu()
    m.update(mechanics(h, mask.cpu()))

    t0 = time.perf_counter()
    q_embs = []
    for t, q_len in zip(cfg.full_tasks, cfg.full_query_max_len):
        # the official construct_test_sample: prompt and response each cut at the task's limit
        q_embs.append(embed_queries(lm, q_folder / f"{t}.jsonl", q_len, cfg.full_batch, pooling))
        m[f"n_queries/{t}"] = float(len(q_embs[-1]))
    m["query_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score_shards(shards, q_embs, cfg.aggregation, ctx.device, negate=cfg.variant == "negated")
    m["score_s"] = time.perf_counter() - t0

    out_dir = scratch / "selections"
    n1, nk = min(cfg.full_n_single, n_items), min(cfg.full_n_multi, n_items)
    t0 = time.perf_counter()
    picks: dict[str, torch.Tensor] = {}
    for k, t in enumerate(cfg.full_tasks):
        picks[f"{t}_top{n1}"] = M.top_n(scores[k], n1)
        m[f"mean_top_score/{t}"] = float(scores[k][picks[f"{t}_top{n1}"]].mean())
    multi = M.round_robin(scores, nk, cfg.rr_skip)
    picks[f"multitask_rr_{nk}"] = multi
    m["select_s"] = time.perf_counter() - t0
    m["rr_duplicates"] = float(nk - multi.unique().numel())
    gen = ctx.generator(21)
    picks[f"random_{n1}"] = M.random_selection(n_items, n1, gen)
    picks[f"random_{nk}"] = M.random_selection(n_items, nk, gen)
    for name, idx in picks.items():
        write_selection(pool_path, idx, out_dir / f"{name}.jsonl")
    m["forward_passes"] = float(n_items + sum(len(q) for q in q_embs))  # C3: one pass per pool item
    ctx.log("rds_plus full: selections written to %s", out_dir)
    return Outcome(metrics=m, dataset=ref, notes={"model": model_name, "selections": str(out_dir),
                                                 "index": str(index_dir)})


class _ShardCfg:
    """``cfg`` with another shard size (the dry run cuts it to exercise several shards)."""

    def __init__(self, cfg: Any, shard_size: int) -> None:
        self._cfg, self.full_shard_size = cfg, shard_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cfg, name)

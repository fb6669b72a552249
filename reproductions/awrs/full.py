"""Full scale (spec §5), pattern-matching domain: Llama-3.1-8B-Instruct + regex constraints.

The constraint is a black box here, so AWRS runs in its sequential form (:func:`awrs_reference`,
one particle at a time, checks counted); LM logits are batched over particles (no KV cache).
Correct = full regex match; accuracy = Σ_i w̄_i · correct(s_i) over the weighted posterior.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from suite.context import RunContext
from suite.errors import CorruptDataError, DataNotFoundError
from suite.data.external import locate
from suite.models.locate import locate_model
from suite.spec import Outcome

from .method import awrs_reference, gumbel


class RegexChecker:
    """Counted partial-match checks of a regex (``regex`` package: ``partial=True`` = viable prefix)."""

    def __init__(self, pattern: str) -> None:
        import regex

        self.rx, self.calls = regex.compile(pattern), 0

    def prefix(self, text: str) -> bool:
        self.calls += 1
        return self.rx.fullmatch(text, partial=True) is not None

    def complete(self, text: str) -> bool:
        self.calls += 1
        return self.rx.fullmatch(text) is not None


HOW = "copy data/pattern_matching/patterns.csv of genlm/awrs-colm-2025 there"


def write_fixture(folder: Path) -> None:
    """A one-pattern ``patterns.csv`` in the repository's format (dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "patterns.csv").write_text("regex\n[a-c]+[0-9]{2,4}\n")


# Llama-3.1-Instruct's chat format (header / end-of-turn tokens), kept to what ``encode`` uses
_CHAT = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
         "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def write_model_fixture(folder: Path) -> None:
    """A tiny random Llama with a chat template and Llama-3's header / end-of-turn tokens, saved like an
    Instruct checkpoint (dry runs and rehearsals without the model; stand-in)."""
    from transformers import PreTrainedTokenizerFast

    from suite.models.hf import save_tiny_random_lm

    save_tiny_random_lm(folder, "llama", extra_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    tok = PreTrainedTokenizerFast.from_pretrained(folder, local_files_only=True)
    tok.chat_template = _CHAT
    tok.save_pretrained(folder)


def _model_dir(cfg: Any, ctx: RunContext) -> tuple[Path, str]:
    """The LM's ``save_pretrained`` folder under the data root (or an absolute path); without it, in a dry run
    or a rehearsal, a tiny random Llama written as its fixture."""
    return locate_model(ctx, "awrs-lm", cfg.model_dir,
                        f"hf download meta-llama/Llama-3.1-8B-Instruct --local-dir <data root>/{cfg.model_dir}",
                        write_model_fixture, "tiny-random-llama")


def read_patterns(path: Path, n: int) -> list[str]:
    if not path.is_file():
        raise DataNotFoundError(f"patterns not found at {path}; {HOW}")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "regex" not in rows[0]:
        raise CorruptDataError(f"{path} has no 'regex' column; use the repository's patterns.csv")
    return [r["regex"] for r in rows][:n]


def _smc_instance(next_logits: Callable[[list[list[int]]], torch.Tensor], strs: list[str], eos_pos: int,
                  pattern: str, particles: int, max_tokens: int, gen: torch.Generator,
                  proper: bool, ess: float = 0.5) -> tuple[float, int, int]:
    """One AWRS-SMC (or LCD when ``proper=False``) run; (accuracy, checks, tokens).

    ``next_logits(seqs)``: LM log-probs (n, |strs| + 1) after each generated sequence (EOS last)."""
    chk = RegexChecker(pattern)
    seqs: list[list[int]] = [[] for _ in range(particles)]
    texts, done = [""] * particles, [False] * particles
    logw = torch.zeros(particles, dtype=torch.float64)
    tokens = 0
    for _ in range(max_tokens):
        act = [i for i in range(particles) if not done[i] and math.isfinite(float(logw[i]))]
        if not act:
            break
        lg = next_logits([seqs[i] for i in act]).double()
        for j, i in enumerate(act):  # the constraint is a black box: AWRS is sequential per particle
            v = lg.shape[1] + 1
            tok, lw, _ = awrs_reference(lg[j], texts[i], strs, chk, gumbel((v - 1,), gen), gumbel((v - 1,), gen), proper)
            if tok is None:
                logw[i] = -math.inf
                continue
            tokens += 1
            logw[i] += lw if proper else 0.0
            if tok == eos_pos:
                done[i] = True
            else:
                seqs[i].append(tok)
                texts[i] += strs[tok]
        if proper and particles > 1 and torch.isfinite(logw).any():
            w = torch.softmax(logw, 0)
            if 1.0 / float((w ** 2).sum()) < ess * particles:
                idx = torch.multinomial(w.float(), particles, replacement=True, generator=gen).tolist()
                seqs, texts, done = [list(seqs[k]) for k in idx], [texts[k] for k in idx], [done[k] for k in idx]
                logw = torch.zeros(particles, dtype=torch.float64)
    fin = torch.tensor([d and chk.rx.fullmatch(t) is not None for d, t in zip(done, texts)])
    logw = torch.where(torch.tensor(done), logw, torch.full_like(logw, -math.inf))
    acc = float((torch.softmax(logw, 0) * fin).sum()) if torch.isfinite(logw).any() else 0.0
    return acc, chk.calls, tokens


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    gen = ctx.generator(7)
    # the pattern-matching benchmark (§5): its ref (paper, or a stand-in fixture in a dry run) comes from the loader
    pat_file = Path(cfg.patterns)
    folder, ref = locate(ctx, "awrs-pattern-matching", str(pat_file.parent), [pat_file.name], HOW,
                         fixture=write_fixture)
    patterns = read_patterns(folder / pat_file.name, cfg.n_patterns)
    from suite.models.hf import load_causal_lm

    model_dir, model_name = _model_dir(cfg, ctx)
    lm = load_causal_lm(model_dir, ctx.device)
    model, tok, dev = lm.model, lm.tokenizer, lm.device
    vocab_strs = [tok.decode([i]) for i in range(len(tok))]  # byte-boundary tokens: see README
    eos_id = tok.convert_tokens_to_ids("<|eot_id|>") if "<|eot_id|>" in tok.get_vocab() else tok.eos_token_id
    particles, max_tokens = cfg.full_particles, cfg.full_max_tokens
    if ctx.dry_run:  # builds the pipeline: one pattern, a few tokens
        particles, max_tokens, patterns = 2, 6, patterns[:1]

    def encode(s: str) -> list[int]:
        out = tok.apply_chat_template([{"role": "user", "content": s}], add_generation_prompt=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)
    order = [i for i in range(len(vocab_strs)) if i != eos_id] + [eos_id]  # EOS last (awrs_reference)
    strs = [vocab_strs[i] for i in order[:-1]]
    perm = torch.tensor(order)

    res: dict[str, list[float]] = {"awrs_smc": [], "lcd": []}
    calls = {k: 0 for k in res}
    toks = {k: 0 for k in res}
    wall = {k: 0.0 for k in res}
    for pat in ctx.progress(patterns, desc="patterns"):
        prompt = list(encode(f"Generate a string that fully matches the regular expression {pat}. "
                             f"Output only the string."))

        @torch.no_grad()
        def next_logits(seqs: list[list[int]]) -> torch.Tensor:
            batch = [prompt + [order[t] for t in s] for s in seqs]
            width = max(len(b) for b in batch)
            ids = torch.tensor([[0] * (width - len(b)) + b for b in batch], device=dev)
            mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=dev)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float().cpu()
            return torch.log_softmax(logits[:, : len(vocab_strs)], 1)[:, perm]

        for k, (m, proper) in {"awrs_smc": (particles, True), "lcd": (1, False)}.items():
            t0 = time.perf_counter()
            a, c, n = _smc_instance(next_logits, strs, len(strs), pat, m, max_tokens, gen, proper)
            wall[k] += time.perf_counter() - t0
            res[k].append(a)
            calls[k] += c
            toks[k] += n
    m = {}
    for k in res:
        m[f"full_{k}_accuracy"] = sum(res[k]) / len(res[k])
        m[f"full_{k}_calls_per_token"] = calls[k] / max(toks[k], 1)
        m[f"full_{k}_seconds_per_instance"] = wall[k] / len(patterns)
    m["full_vocab_size"] = float(len(vocab_strs))  # what full-vocabulary masking checks per token
    return Outcome(metrics=m, dataset=ref, notes={"model": model_name})

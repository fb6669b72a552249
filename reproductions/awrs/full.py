"""Full scale (spec §5), pattern-matching domain: Llama-3.1-8B-Instruct + regex constraints.

On the same prompts, in the same run, with one random stream per method: AWRS-SMC and the paper's baselines
base LM, LCD, sample-rerank and twisted SMC (spec §4, :mod:`.samplers`); full-vocabulary masking counted and
timed at each prompt (spec §4 runtime comparison); and, at the first prompt, the exactness of one AWRS call
and the unbiasedness of its weight on the real LM (spec §2 C1, C3).
The constraint is a black box here, so AWRS runs in its sequential form (:func:`awrs_reference`,
one particle at a time, checks counted); LM logits are batched over particles (no KV cache).
Correct = full regex match; accuracy = Σ_i w̄_i · correct(s_i) over the weighted posterior.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.errors import CorruptDataError, DataNotFoundError
from suite.data.external import locate
from suite.models.locate import locate_model
from suite.metrics.stats import chi2_gof
from suite.spec import Outcome

from .method import awrs_reference, gumbel, masking_reference
from .samplers import Method, methods, paired_bootstrap, run_instance


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


def local_exactness(logp: torch.Tensor, strs: list[str], pattern: str, draws: int,
                    gen: torch.Generator) -> dict[str, float]:
    """Spec §2 C1 and C3 on the real LM at one context (a prompt, nothing generated yet): ``draws`` AWRS
    calls against the exact ℓ(x) ∝ p(x) · 1[x valid] and Z_ℓ = Σ_valid p(x), the validity of every token
    read from the checker once."""
    chk = RegexChecker(pattern)
    valid = torch.tensor([chk.prefix(s) for s in strs] + [chk.complete("")])
    ell = logp.exp() * valid  # exact, unnormalised ℓ
    z = float(ell.sum())
    out = {"full_local_valid_mass": z}
    if z <= 0:  # no valid token at this context: nothing to test
        return {**out, "full_local_chi2_p_value": math.nan, "full_local_weight_z_score": math.nan}
    n = len(strs) + 1
    chk = RegexChecker(pattern)
    res = [awrs_reference(logp, "", strs, chk, gumbel((n,), gen), gumbel((n,), gen)) for _ in range(draws)]
    tok = torch.tensor([t for t, _, _ in res])
    w = torch.tensor([lw for _, lw, _ in res], dtype=torch.float64).exp()
    out["full_local_chi2_p_value"] = chi2_gof(tok, ell)
    out["full_local_weight_mean"] = float(w.mean())
    out["full_local_weight_z_score"] = abs(float(w.mean()) - z) / max(float(w.std()) / math.sqrt(draws), 1e-12)
    out["full_local_awrs_calls_per_draw"] = chk.calls / draws
    return out


def end_tokens(tok: Any, vocab_strs: list[str]) -> list[int]:
    """The ids that end a pattern-matching sequence, as the official task defines them
    (`experiments/tasks.py`, ``PatternMatching.get_eos_tokens``): every added (special) token, every token
    whose text holds a newline, and the tokenizer's EOS."""
    ids = set(tok.get_added_vocab().values()) | {i for i, s in enumerate(vocab_strs) if "\n" in s}
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return sorted(i for i in ids if i < len(vocab_strs))


def merged_end_logprobs(logp: torch.Tensor, keep: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """(B, V) next-token log-probabilities -> (B, len(keep) + 1): the tokens ``keep``, then one EOS slot holding
    the total probability of the end tokens ``ends`` (each ends the string, so for the sampler they are one
    event; ``awrs_reference`` takes EOS as the last index)."""
    return torch.cat([logp[:, keep], torch.logsumexp(logp[:, ends], 1, keepdim=True)], 1)


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
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
    # the end of turn ends too: Llama-3.1-Instruct's tokenizer EOS is <|eot_id|> (so the set is the official one
    # there); the tiny fixture holds <|eot_id|> as an ordinary token
    ends = sorted(set(end_tokens(tok, vocab_strs)) | {eos_id})
    ms = methods(cfg.full_particles, cfg.full_ess_threshold, cfg.full_rerank_samples, cfg.full_twisted_particles,
                 cfg.full_twisted_ess)
    max_tokens, local_draws, boot = cfg.full_max_tokens, cfg.full_local_draws, cfg.full_bootstrap
    if ctx.dry_run:  # builds the pipeline: one pattern, a few tokens, two particles per method
        ms = tuple(Method(m.name, m.proposal, min(m.particles, 2), m.ess, m.critic) for m in ms)
        max_tokens, local_draws, boot, patterns = 6, min(local_draws, 10), min(boot, 100), patterns[:1]

    def encode(s: str) -> list[int]:
        out = tok.apply_chat_template([{"role": "user", "content": s}], add_generation_prompt=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)
    # the tokens a string can hold, then one EOS slot for all end tokens (last: awrs_reference); a sequence
    # that ends is never extended, so the slot's token id (the chat template's end of turn) is never fed
    end_set = set(ends)
    order = [i for i in range(len(vocab_strs)) if i not in end_set] + [eos_id]
    strs = [vocab_strs[i] for i in order[:-1]]
    keep, end_ids = torch.tensor(order[:-1]), torch.tensor(ends)

    # one random stream per method (and for masking / the local test): a method's draws do not depend on
    # which other methods ran; every method sees the same prompts
    gens = {m.name: ctx.generator(7 + k) for k, m in enumerate(ms)}
    g_mask, g_local, g_boot = ctx.generator(101), ctx.generator(102), ctx.generator(103)
    acc: dict[str, list[float]] = {m.name: [] for m in ms}
    calls = {m.name: 0 for m in ms}
    toks = {m.name: 0 for m in ms}
    wall = {m.name: 0.0 for m in ms}
    spent = {m.name: 0.0 for m in ms}
    mask_calls, mask_s, local = 0, 0.0, {}
    for k, pat in enumerate(ctx.progress(patterns, desc="patterns")):
        prompt = list(encode(f"Generate a string that fully matches the regular expression {pat}. "
                             f"Output only the string."))

        @torch.no_grad()
        def next_logits(seqs: list[list[int]]) -> torch.Tensor:
            batch = [prompt + [order[t] for t in s] for s in seqs]
            width = max(len(b) for b in batch)
            ids = torch.tensor([[0] * (width - len(b)) + b for b in batch], device=dev)
            mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=dev)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float().cpu()
            return merged_end_logprobs(torch.log_softmax(logits[:, : len(vocab_strs)], 1), keep, end_ids)

        # full-vocabulary masking at the prompt (spec §4: timed for the runtime comparison), counted
        logp0 = next_logits([[]])[0].double()
        chk = RegexChecker(pat)
        t0 = time.perf_counter()
        masking_reference(logp0, "", strs, chk, g_mask)
        mask_s += time.perf_counter() - t0
        mask_calls += chk.calls
        if k == 0:
            local = local_exactness(logp0, strs, pat, local_draws, g_local)
        rx = RegexChecker(pat).rx
        correct = lambda text: rx.fullmatch(text) is not None  # noqa: E731 (correct = full regex match)
        for m in ms:
            t0 = time.perf_counter()
            r = run_instance(next_logits, strs, RegexChecker(pat), correct, m, max_tokens, gens[m.name])
            wall[m.name] += time.perf_counter() - t0
            acc[m.name].append(r.accuracy)
            calls[m.name] += r.calls
            toks[m.name] += r.tokens
            spent[m.name] += r.sampler_s
    out: dict[str, float] = {}
    for m in ms:
        out[f"full_{m.name}_accuracy"] = sum(acc[m.name]) / len(acc[m.name])
        out[f"full_{m.name}_calls_per_token"] = calls[m.name] / max(toks[m.name], 1)
        out[f"full_{m.name}_seconds_per_instance"] = wall[m.name] / len(patterns)
        out[f"full_{m.name}_sampler_seconds_per_token"] = spent[m.name] / max(toks[m.name], 1)
    # C4: AWRS-SMC against each baseline, paired over instances, 95 % bootstrap CI (spec §4)
    a = torch.tensor(acc["awrs_smc"], dtype=torch.float64)
    for m in ms:
        if m.name != "awrs_smc":
            d, lo, hi = paired_bootstrap(a, torch.tensor(acc[m.name], dtype=torch.float64), boot, g_boot)
            out.update({f"full_awrs_smc_minus_{m.name}_accuracy": d, f"full_awrs_smc_minus_{m.name}_ci_low": lo,
                        f"full_awrs_smc_minus_{m.name}_ci_high": hi})
    # C2: constraint checks and sampler time per token, AWRS-SMC vs full-vocabulary masking (both counted)
    out["full_masking_calls_per_token"] = mask_calls / len(patterns)
    out["full_masking_seconds_per_token"] = mask_s / len(patterns)
    out["full_awrs_calls_over_masking"] = out["full_awrs_smc_calls_per_token"] / out["full_masking_calls_per_token"]
    out["full_awrs_over_masking_seconds"] = (out["full_awrs_smc_sampler_seconds_per_token"]
                                             / max(out["full_masking_seconds_per_token"], 1e-12))
    out.update(local)
    out["full_vocab_size"] = float(len(vocab_strs))
    out["full_n_patterns"] = float(len(patterns))
    ctx.log("full: " + ", ".join(f"{k}={v:.4g}" for k, v in out.items()))
    return Outcome(metrics=out, dataset=ref, notes={"model": model_name})

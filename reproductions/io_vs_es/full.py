"""Full scale (spec §5): BIG-Bench Hard task JSONs read from disk and a real instruction-tuned LLM through
transformers (the paper's PaLM 2 / Gemini are not available: Llama-3.1-8B-Instruct by default, README).

The same protocol as the simulated CPU scales (experiment.py), written over text: a prompt is an
instruction, k exemplars (x, the model's own full response) and the query; greedy decoding (spec §3: T = 0);
every full pass over D_val is one unit of the budget m (method.Budget); generations are cached by prompt
(spec §7), so a repeated evaluation costs nothing and is not counted twice.

Arms per task: ``seed`` (zero-shot CoT instruction, no exemplars); ``io`` (APE: m/2 instructions proposed by
the optimizer LLM from gold demos, then m/2 paraphrases of the incumbent, APE's resampling; best on D_val);
``io_reuse`` (C2: I* plus k of IO's own correct validation responses, no extra evaluation); ``es_random`` and
``es_rs`` (seed instruction, pool = the seed prompt's correct validation responses, 1 evaluation; RS draws
m - 1 sets and keeps the best on D_val); ``es_rs_notrace`` (the same search, exemplars show only the final
answer); ``io_es`` (two-stage: IO with m1, pool from I*'s validation responses, RS with m - m1).
ProTeGi, PromptAgent, OPRO and the Nearest/Diversity selectors are not run at full (README).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from suite.data.external import locate
from suite.spec import Outcome

from . import method as M

BBH_TASKS = ("boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
             "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
             "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
             "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
             "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
             "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
             "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
             "web_of_lies", "word_sorting", "dyck_languages")
SEED_INSTRUCTION = "Let's think step by step."   # spec §3: zero-shot CoT seed
FULL_ARMS = ("seed", "io", "io_reuse", "es_random", "es_rs", "es_rs_notrace", "io_es")
# APE's two optimizer prompts (forward generation from demos; resampling of the incumbent), in our words
PROPOSE = ("Someone was given an instruction and then answered each of the inputs below by following it.\n\n"
           "{demos}\nWrite the instruction they were given.\nInstruction:")
PARAPHRASE = "Rewrite this instruction in different words, keeping its meaning.\nInstruction: {instr}\nRewritten:"


def _bbh_fixture(folder: Path) -> None:
    """Tiny files in BBH's published format (dry runs and rehearsals; provenance stand-in)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in BBH_TASKS:
        ex = [{"input": f"fixture question {i} of {t}", "target": "(A)" if i % 2 else "(B)"} for i in range(8)]
        (folder / f"{t}.json").write_text(json.dumps({"examples": ex}))


def _model_fixture(folder: Path) -> None:
    """A tiny random Llama with a character tokenizer, saved like a real checkpoint."""
    from suite.models.hf import save_tiny_random_lm

    save_tiny_random_lm(folder, "llama", max_len=8192)


def load_bbh(folder: Path, seed: int, val_frac: float = 0.5, tasks: tuple[str, ...] = BBH_TASKS,
             max_items: int = 0) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per task: a seeded split of the examples into disjoint validation and test halves (spec §5, VERIFY);
    ``max_items`` > 0 caps each half."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in tasks:
        ex = json.loads((folder / f"{t}.json").read_text())["examples"]
        perm = torch.randperm(len(ex), generator=g).tolist()
        n_val = int(len(ex) * val_frac)
        val, test = [ex[i] for i in perm[:n_val]], [ex[i] for i in perm[n_val:]]
        if max_items:
            val, test = val[:max_items], test[:max_items]
        out[t] = (val, test)
    return out


_CHOICE = re.compile(r"\([A-R]\)")


def extract_answer(text: str, target: str) -> str:
    """Spec §3: the final answer of a response, normalised like the target. Text after the last "answer is"
    (else the whole response); a multiple-choice target "(X)" takes the last "(X)" in it; others the first
    line, lower-cased, without a trailing full stop."""
    tail = re.split(r"answer is\s*:?", text, flags=re.IGNORECASE)[-1]
    if _CHOICE.fullmatch(target.strip()):
        found = _CHOICE.findall(tail) or _CHOICE.findall(text)
        return found[-1] if found else ""
    first = tail.strip().split("\n")[0].strip()
    return first.rstrip(".").strip().lower()


def is_correct(text: str, target: str) -> bool:
    want = target.strip() if _CHOICE.fullmatch(target.strip()) else target.strip().rstrip(".").lower()
    return extract_answer(text, target) == want


@dataclass
class Exemplar:
    x: str
    response: str       # the model's full response (with its reasoning) or, without trace, the answer only


def render(instr: str, exemplars: list[Exemplar], x: str) -> str:
    shots = "".join(f"Q: {e.x}\nA: {e.response}\n\n" for e in exemplars)
    return f"{instr}\n\n{shots}Q: {x}\nA:"


@dataclass
class TextLLM:
    """The target (and optimizer) LLM behind a response cache; ``calls`` counts generations actually run."""
    lm: Any
    batch: int
    max_new: int
    cache: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    def respond(self, prompts: list[str], temperature: float = 0.0, max_new: int | None = None) -> list[str]:
        todo = [p for p in dict.fromkeys(prompts) if temperature > 0 or p not in self.cache]
        out_sampled: list[str] = []
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            gen = self.lm.generate(chunk, max_new_tokens=max_new or self.max_new, temperature=temperature)
            self.calls += len(chunk)
            if temperature > 0:
                out_sampled += gen
            else:
                self.cache.update(zip(chunk, gen))
        if temperature > 0:
            return out_sampled
        return [self.cache[p] for p in prompts]


def evaluate(llm: TextLLM, instr: str, ex: list[Exemplar], items: list[dict], budget: M.Budget | None
             ) -> tuple[float, list[str]]:
    """One full pass over ``items`` (D_val: counted against the budget; D_test: not)."""
    if budget is not None:
        budget.spend()
    resp = llm.respond([render(instr, ex, it["input"]) for it in items])
    acc = sum(is_correct(r, it["target"]) for r, it in zip(resp, items)) / max(len(items), 1)
    return acc, resp


def build_pool(items: list[dict], responses: list[str], variant: str) -> list[Exemplar]:
    """Spec §3: keep (x, full response) whose extracted answer equals the label (gold used only here);
    teeth ``wrong-outputs`` keeps the wrong ones."""
    keep_wrong = variant == "wrong-outputs"
    return [Exemplar(it["input"], r) for it, r in zip(items, responses)
            if is_correct(r, it["target"]) != keep_wrong]


def _draw(pool: list[Exemplar], k: int, g: torch.Generator, trace: bool) -> list[Exemplar]:
    idx = torch.randperm(len(pool), generator=g)[:min(k, len(pool))].tolist()
    return [pool[i] if trace else Exemplar(pool[i].x, f"So the answer is {_answer_only(pool[i])}.") for i in idx]


def _answer_only(e: Exemplar) -> str:
    tail = re.split(r"answer is\s*:?", e.response, flags=re.IGNORECASE)[-1].strip()
    return tail.split("\n")[0].rstrip(".").strip()


def es_rs(llm: TextLLM, pool: list[Exemplar], k: int, instr: str, n_cand: int, val: list[dict], budget: M.Budget,
          g: torch.Generator, variant: str, trace: bool = True) -> list[Exemplar]:
    """ES random search: n_cand exemplar sets evaluated on D_val, the best kept (n_cand = 1: Random)."""
    if not pool:
        return []
    cands = [_draw(pool, k, g, trace) for _ in range(n_cand)]
    if n_cand == 1:
        return cands[0]
    scores = [evaluate(llm, instr, c, val, budget)[0] for c in cands]
    if variant == "ignores-score":
        return cands[int(torch.randint(0, len(cands), (1,), generator=g))]
    return cands[max(range(len(cands)), key=scores.__getitem__)]


def io_ape(llm: TextLLM, opt: TextLLM, val: list[dict], m: int, n_demo: int, g: torch.Generator, cfg: Any,
           variant: str) -> tuple[str, list[str], M.Budget]:
    """IO by APE: m/2 proposals from n_demo gold demos each (sampled from the optimizer), then paraphrases of
    the incumbent; every candidate costs one evaluation on D_val. Returns I*, its D_val responses, budget."""
    budget = M.Budget(m)
    n_prop = max(1, m // 2)
    hist: list[tuple[str, float, list[str]]] = []
    best: tuple[str, float, list[str]] | None = None
    for i in range(m):
        if i < n_prop:
            d = torch.randperm(len(val), generator=g)[:n_demo].tolist()
            demos = "".join(f"Input: {val[j]['input']}\nOutput: {val[j]['target']}\n\n" for j in d)
            prompt = PROPOSE.format(demos=demos)
        else:
            prompt = PARAPHRASE.format(instr=best[0])  # type: ignore[index]
        text = opt.respond([prompt], temperature=cfg.opt_temperature, max_new=cfg.instr_max_new)[0]
        cand = text.strip().split("\n")[0].strip() or SEED_INSTRUCTION
        acc, resp = evaluate(llm, cand, [], val, budget)
        hist.append((cand, acc, resp))
        if best is None or acc > best[1]:
            best = hist[-1]
    if variant == "ignores-score":  # TEETH: a random candidate, its score unused
        best = hist[int(torch.randint(0, len(hist), (1,), generator=g))]
    assert best is not None
    return best[0], best[2], budget


def run_task(llm: TextLLM, opt: TextLLM, val: list[dict], test: list[dict], cfg: Any, g: torch.Generator,
             variant: str) -> tuple[dict[str, float], dict[str, int], dict[str, float], dict[str, float]]:
    """All arms on one task: test accuracy, generations (target + optimizer), seconds per arm, checks."""
    acc: dict[str, float] = {}
    calls: dict[str, int] = {}
    sec: dict[str, float] = {}
    chk = {"budget_overrun": 0.0, "budget_underuse": 0.0, "pool_incorrect": 0.0}
    m, k = cfg.budget, cfg.k

    def timed(arm: str, t0: float, c0: int, instr: str, ex: list[Exemplar], extra: tuple[float, int] = (0.0, 0)):
        sec[arm] = time.perf_counter() - t0 + extra[0]
        calls[arm] = llm.calls + opt.calls - c0 + extra[1]
        acc[arm] = evaluate(llm, instr, ex, test, None)[0]   # test passes are not optimisation cost

    t0, c0 = time.perf_counter(), llm.calls + opt.calls
    timed("seed", t0, c0, SEED_INSTRUCTION, [])
    # IO alone, then C2 reuse of its validation responses (no extra evaluation)
    t0, c0 = time.perf_counter(), llm.calls + opt.calls
    instr, resp, b = io_ape(llm, opt, val, m, cfg.n_demo, g, cfg, variant)
    chk["budget_overrun"] = max(chk["budget_overrun"], b.used - m)
    chk["budget_underuse"] = max(chk["budget_underuse"], m - b.used)
    io_cost = (time.perf_counter() - t0, llm.calls + opt.calls - c0)
    timed("io", t0, c0, instr, [])
    t1, c1 = time.perf_counter(), llm.calls + opt.calls
    timed("io_reuse", t1, c1, instr, _draw(build_pool(val, resp, variant), k, g, True), io_cost)
    # ES with the seed instruction: the pool costs one evaluation
    t0, c0 = time.perf_counter(), llm.calls + opt.calls
    b = M.Budget(m)
    _, resp = evaluate(llm, SEED_INSTRUCTION, [], val, b)
    pool = build_pool(val, resp, variant)
    if variant == "correct":
        chk["pool_incorrect"] = float(sum(not is_correct(e.response, it["target"])
                                          for e in pool for it in val if it["input"] == e.x))
    pool_cost = (time.perf_counter() - t0, llm.calls + opt.calls - c0)
    t1, c1 = time.perf_counter(), llm.calls + opt.calls
    timed("es_random", t1, c1, SEED_INSTRUCTION, _draw(pool, k, g, True) if pool else [], pool_cost)
    for arm, trace in (("es_rs", variant != "no-trace"), ("es_rs_notrace", False)):
        t1, c1 = time.perf_counter(), llm.calls + opt.calls
        bb = M.Budget(m, used=1)   # the pool evaluation is part of m
        ex = es_rs(llm, pool, k, SEED_INSTRUCTION, m - 1, val, bb, g, variant, trace)
        chk["budget_overrun"] = max(chk["budget_overrun"], bb.used - m)
        timed(arm, t1, c1, SEED_INSTRUCTION, ex, pool_cost)
    # IO + ES, budget split m1 / m - m1 (spec §3 two-stage)
    t0, c0 = time.perf_counter(), llm.calls + opt.calls
    m1 = cfg.budget_io_share
    instr2, resp2, b1 = io_ape(llm, opt, val, m1, cfg.n_demo, g, cfg, variant)
    b2 = M.Budget(m - m1)
    ex = es_rs(llm, build_pool(val, resp2, variant), k, instr2, m - m1, val, b2, g, variant)
    chk["budget_overrun"] = max(chk["budget_overrun"], b1.used + b2.used - m)
    timed("io_es", t0, c0, instr2, ex)
    return acc, calls, sec, chk


def full_protocol(cfg: Any, ctx: Any) -> Outcome:
    folder, ref = locate(ctx, "bbh", cfg.bbh_dir, [f"{t}.json" for t in BBH_TASKS],
                         "clone https://github.com/suzgunmirac/BIG-Bench-Hard and copy bbh/*.json",
                         fixture=_bbh_fixture)
    model_dir, _ = locate(ctx, "llm", cfg.model_dir, ["config.json", "tokenizer_config.json"],
                          "a transformers checkpoint (e.g. Llama-3.1-8B-Instruct) saved with save_pretrained",
                          fixture=_model_fixture)
    tasks = BBH_TASKS[:cfg.max_tasks] if cfg.max_tasks else BBH_TASKS
    splits = load_bbh(folder, ctx.seed, tasks=tasks, max_items=cfg.max_items)
    overlap = 0.0
    for t, (val, test) in splits.items():          # spec §7: test strictly disjoint from validation
        overlap += len({e["input"] for e in val} & {e["input"] for e in test})
    from suite.models.hf import load_causal_lm

    lm = load_causal_lm(model_dir, ctx.device)
    llm = TextLLM(lm, cfg.gen_batch, cfg.max_new)
    if cfg.optimizer_dir:
        opt_dir, _ = locate(ctx, "optimizer-llm", cfg.optimizer_dir, ["config.json", "tokenizer_config.json"],
                            "a transformers checkpoint for the IO optimizer LLM (spec §5: a 70B instruct model)",
                            fixture=_model_fixture)
        opt = TextLLM(load_causal_lm(opt_dir, ctx.device), cfg.gen_batch, cfg.max_new)
    else:
        opt = llm
    if ctx.dry_run:                                # built; one generation to prove the path
        llm.respond([render(SEED_INSTRUCTION, [], splits[tasks[0]][0][0]["input"])], max_new=2)
        return Outcome(metrics={}, dataset=ref)
    g = torch.Generator().manual_seed(ctx.seed)
    acc = {a: [] for a in FULL_ARMS}
    calls = {a: 0 for a in FULL_ARMS}
    sec = {a: 0.0 for a in FULL_ARMS}
    checks = {"budget_overrun": 0.0, "budget_underuse": 0.0, "pool_incorrect": 0.0, "test_val_overlap": overlap}
    for t in ctx.progress(tasks, desc="bbh tasks"):
        val, test = splits[t]
        a, c, s, chk = run_task(llm, opt, val, test, cfg, g, cfg.variant)
        for arm in FULL_ARMS:
            acc[arm].append(a[arm])
            calls[arm] += c[arm]
            sec[arm] += s[arm]
        for key, v in chk.items():
            checks[key] = max(checks[key], v)
        ctx.log("io_vs_es full: %s %s", t, {arm: round(v, 3) for arm, v in a.items()})
    from .experiment import summarise

    out = summarise(FULL_ARMS, acc, calls, sec, len(tasks))
    out["n_tasks"] = float(len(tasks))
    out.update(checks)
    return Outcome(metrics=out, dataset=ref)

"""Full scale (spec §5): the analysis on an open LLM read from ``<data root>/<model_dir>`` (a Hugging Face
``save_pretrained`` folder of a Llama-3-8B-Instruct-class model with gated FFNs ``mlp.down_proj``).

Tasks (spec §5, each read in its published format from the data root):
- ``math``:      GSM8K ``gsm8k/test.jsonl`` (question -> worked solution), via the suite's GSM8K loader;
- ``code``:      HumanEval ``humaneval/HumanEval.jsonl.gz`` (prompt -> canonical solution);
- ``knowledge``: MMLU ``mmlu/test/*_test.csv`` (question, A-D, answer; prompt -> " <letter>");
- ``language``:  FLORES-200 ``flores200_dataset/devtest/<lang>.devtest``, one task per language in
                 ``full_languages`` (the sentence itself is the target);
- neutral corpus (§3.2 thresholds, §7): ``generic/corpus.txt``, one line of C4/FineWeb text per line.

Quality of task T under a mask: teacher-forced answer-token accuracy (``token``) and minus the mean
answer-token NLL (``neg_nll``) on the held-out half of T's examples (README "Deviations": greedy decoding
and answer checking are replaced by their teacher-forced counterparts). The sparsity reference is the
same architecture freshly initialised (``from_config``). The MiniLM analysis runs too.
``--dry-run`` builds it all on a tiny random Llama and fixtures in the published formats.
"""
from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from suite.context import RunContext
from suite.data import catalog, humaneval
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.models.hf import CausalLM, load_causal_lm, save_tiny_random_lm
from suite.spec import DatasetRef, Outcome

from . import experiment as E
from . import probes as P

MMLU_HOW = "copy the MMLU release's data/test/*_test.csv (hendrycks/test) into <data root>/mmlu/test/"
FLORES_HOW = "unpack flores200_dataset.tar.gz (facebookresearch/flores, FLORES-200) into <data root>/"
GENERIC_HOW = "write 10k lines of generic web text (C4 or FineWeb sample), one document per line, to generic/corpus.txt"
LETTERS = "ABCD"


# --------------------------------------------------------------------------- fixtures (dry runs)

def _write_mmlu(folder: Path) -> None:
    (folder / "test").mkdir(parents=True, exist_ok=True)
    with open(folder / "test" / "fixture_test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        for i in range(4):
            w.writerow([f"What is {i} + {i}?", str(2 * i), str(2 * i + 1), str(i), str(i + 3), "A"])


def _write_flores(folder: Path, langs: Sequence[str]) -> None:
    (folder / "devtest").mkdir(parents=True, exist_ok=True)
    for k, lang in enumerate(langs):
        (folder / "devtest" / f"{lang}.devtest").write_text("".join(f"fixture sentence {k} {i}\n" for i in range(4)))


def _write_generic(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text("".join(f"a generic line of web text number {i}.\n" for i in range(8)))


# --------------------------------------------------------------------------- readers

def read_tasks(cfg: Any, ctx: RunContext) -> tuple[dict[str, list[tuple[str, str]]], list[str], DatasetRef]:
    """task -> [(prompt, target)], the neutral lines, and the combined provenance from the locators."""
    tasks: dict[str, list[tuple[str, str]]] = {}
    refs = []
    if "math" in cfg.full_tasks:
        ds = catalog.load_dataset(ctx, "gsm8k")["test"]
        refs.append(ds.ref)
        tasks["math"] = [(f"Question: {q}\nAnswer: ", a) for q, a in zip(ds.x, ds.extra["answer"])]
    if "code" in cfg.full_tasks:
        folder, ref = locate(ctx, "humaneval", "humaneval", [humaneval.FILE], humaneval.HOW,
                             fixture=lambda d: humaneval.write_fixture(d / humaneval.FILE))
        refs.append(ref)
        tasks["code"] = [(r["prompt"], r["canonical_solution"]) for r in humaneval.read(folder / humaneval.FILE)]
    if "knowledge" in cfg.full_tasks:
        folder, ref = locate(ctx, "mmlu", "mmlu", ["test"], MMLU_HOW, fixture=_write_mmlu)
        refs.append(ref)
        rows = []
        for f in sorted((folder / "test").glob("*_test.csv")):
            with open(f, newline="", encoding="utf-8") as fh:
                rows += [r for r in csv.reader(fh) if len(r) == 6]
        if not rows:
            raise DataNotFoundError(f"no *_test.csv rows under {folder / 'test'}; {MMLU_HOW}")
        tasks["knowledge"] = [(r[0] + "".join(f"\n{LETTERS[i]}. {r[1 + i]}" for i in range(4)) + "\nAnswer:",
                               " " + r[5].strip()) for r in rows]
    if "language" in cfg.full_tasks:
        langs = list(cfg.full_languages)
        folder, ref = locate(ctx, "flores200", "flores200_dataset", [f"devtest/{lang}.devtest" for lang in langs],
                             FLORES_HOW, fixture=lambda d: _write_flores(d, langs))
        refs.append(ref)
        for lang in langs:
            lines = [x.strip() for x in (folder / "devtest" / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()]
            tasks[f"language:{lang}"] = [("", x) for x in lines if x]
    folder, ref = locate(ctx, "generic-corpus", "generic", ["corpus.txt"], GENERIC_HOW, fixture=_write_generic)
    refs.append(ref)
    neutral = [x.strip() for x in (folder / "corpus.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    return tasks, neutral, DatasetRef.combine(*refs)


def split_examples(tasks: dict[str, list[tuple[str, str]]], per_task: int, seed: int
                   ) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """Up to ``per_task`` examples per task, shuffled; half for f_i(T) (select), half for the ablation (eval)."""
    rng = random.Random(seed)
    sel, ev = [], []
    for k, (name, ex) in enumerate(tasks.items()):
        ex = list(ex)
        rng.shuffle(ex)
        ex = ex[:per_task]
        h = max(1, len(ex) // 2)
        sel += [(p, t, k) for p, t in ex[:h]]
        ev += [(p, t, k) for p, t in ex[h:]] or [(p, t, k) for p, t in ex[:h]]
    return sel, ev


@torch.no_grad()
def tokenize(tok: Any, rows: Sequence[tuple[str, str, int]], max_tokens: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask, target mask (the target's tokens) and task label."""
    seqs, tgts = [], []
    for p, t, _ in rows:  # data construction, once
        a = tok(p, add_special_tokens=False)["input_ids"] if p else []
        b = tok(t, add_special_tokens=False)["input_ids"]
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        ids = (bos + a + b)[:max_tokens]
        seqs.append(ids)
        tgts.append(([False] * (len(bos) + len(a)) + [True] * len(b))[:max_tokens])
    L = max(map(len, seqs))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    att = torch.zeros(len(seqs), L, dtype=torch.long)
    tgt = torch.zeros(len(seqs), L, dtype=torch.bool)
    for i, (s, m) in enumerate(zip(seqs, tgts)):
        ids[i, :len(s)], att[i, :len(s)], tgt[i, :len(m)] = torch.tensor(s), 1, torch.tensor(m)
    return {"ids": ids, "att": att, "tgt": tgt, "label": torch.tensor([r[2] for r in rows])}


def llm_downs(model: Any) -> list[torch.nn.Module]:
    """W_down of every decoder layer (Llama/Qwen/Mistral ``mlp.down_proj``; GPT-2 ``mlp.c_proj``)."""
    downs = [m for n, m in model.named_modules() if n.endswith("mlp.down_proj") or n.endswith("mlp.c_proj")]
    if not downs:
        raise DataNotFoundError("the model has no mlp.down_proj / mlp.c_proj modules; the analysis needs an FFN "
                                "that ends in a down-projection")
    return downs


class LLMSubject(E.Subject):
    prefix = "lm"
    quality_floor = {"token": 0.01, "neg_nll": 0.01}

    def __init__(self, lm: CausalLM, task_names: Sequence[str], sel: dict, ev: dict, neutral: dict, bs: int) -> None:
        downs = llm_downs(lm.model)
        super().__init__(downs, downs)
        self.lm, self.tasks, self.sel, self.ev, self.neu, self.bs = lm, tuple(task_names), sel, ev, neutral, bs
        self.seq_labels = sel["label"]

    def _forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, att = (x.to(self.lm.device) for x in batch)
        return self.lm.model(input_ids=ids, attention_mask=att).logits

    def batches(self, split: str) -> Iterator[tuple[Any, torch.Tensor]]:
        d = self.neu if split == "neutral" else self.sel
        for i in range(0, d["ids"].shape[0], self.bs):
            att = d["att"][i:i + self.bs]
            yield (d["ids"][i:i + self.bs], att), att.bool()

    @torch.no_grad()
    def quality(self) -> dict[str, torch.Tensor]:
        k, d = len(self.tasks), self.ev
        tok_acc, nll = [], []
        for i in range(0, d["ids"].shape[0], self.bs):
            ids, att, tgt = d["ids"][i:i + self.bs], d["att"][i:i + self.bs], d["tgt"][i:i + self.bs]
            logits = self._forward((ids, att))[:, :-1].float()
            y, g = ids[:, 1:].to(logits.device), tgt[:, 1:].to(logits.device)
            cnt = g.sum(1).clamp_min(1)
            tok_acc.append((((logits.argmax(-1) == y) & g).sum(1) / cnt).cpu())
            lp = F.cross_entropy(logits.transpose(1, 2), y, reduction="none") * g
            nll.append((-(lp.sum(1)) / cnt).cpu())
        lab = d["label"]
        n = torch.bincount(lab, minlength=k).clamp_min(1).float()
        return {name: torch.zeros(k).index_add_(0, lab, torch.cat(v)) / n
                for name, v in (("token", tok_acc), ("neg_nll", nll))}

    def probe_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sel["ids"][:2], self.sel["att"][:2]


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    from . import MINILM_DATA, analysis_settings, minilm_metrics

    tasks, neutral_lines, ref = read_tasks(cfg, ctx)  # provenance from the loaders/locators, never typed here
    if ctx.dry_run:  # a tiny random Llama, written to a folder that is gone once the model is loaded
        with tempfile.TemporaryDirectory(prefix="cfm-tiny-llm-") as root:
            lm = load_causal_lm(save_tiny_random_lm(Path(root) / "model", "llama"), ctx.device)
        model_dir: Path | str = "tiny-random-llama (dry run)"
    else:
        if ctx.data_root is None and not cfg.model_dir.startswith("/"):
            raise DataNotFoundError(f"full scale needs --data-root (or SUITE_DATA) holding {cfg.model_dir}/ "
                                    f"(a save_pretrained folder of the LLM)")
        model_dir = Path(cfg.model_dir) if cfg.model_dir.startswith("/") else Path(ctx.data_root) / cfg.model_dir
        lm = load_causal_lm(model_dir, ctx.device)
    sel_rows, ev_rows = split_examples(tasks, cfg.full_per_task, ctx.seed)
    rng = random.Random(ctx.seed)
    neutral_lines = list(neutral_lines)
    rng.shuffle(neutral_lines)
    neu = tokenize(lm.tokenizer, [("", x, 0) for x in neutral_lines[:cfg.full_neutral]], cfg.full_max_tokens)
    sel = tokenize(lm.tokenizer, sel_rows, cfg.full_max_tokens)
    ev = tokenize(lm.tokenizer, ev_rows, cfg.full_max_tokens)
    ctx.log("full: model %s, tasks %s, %d select / %d eval sequences, %d neutral lines", model_dir,
            {k: len(v) for k, v in tasks.items()}, len(sel_rows), len(ev_rows), neu["ids"].shape[0])
    an = analysis_settings(cfg)
    an.max_threshold_tokens = 2048
    # sparsity reference: the same architecture freshly initialised (TEETH untrained: analyse that instead)
    import transformers

    torch.manual_seed(ctx.seed)
    init_model = transformers.AutoModelForCausalLM.from_config(lm.model.config).to(ctx.device,
                                                                                   lm.model.dtype).eval()
    init = CausalLM(init_model, lm.tokenizer, lm.device)
    subject_lm = init if cfg.variant == "untrained" else lm
    sub = LLMSubject(subject_lm, list(tasks), sel, ev, neu, cfg.full_batch)
    ref_sub = LLMSubject(init, list(tasks), sel, ev, neu, cfg.full_batch)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        res, _ = E.analyse(sub, an, ctx.generator(3), ctx.log)
        init_sp = E.neutral_sparsity(ref_sub, an)
        out.update({f"lm_{k}": v for k, v in res.items()})
        out["lm_init_active_frac"] = init_sp["active_frac"]
        out["lm_sparsity_vs_init"] = out["lm_active_frac"] / max(init_sp["active_frac"], 1e-9)
        out["lm_ablation_index"] = out[f"lm_{cfg.full_quality}_selectivity_index"]
        out["lm_ablation_vs_random"] = out[f"lm_{cfg.full_quality}_vs_random"]
        out["lm_min_skill_token_acc"] = min(out[f"lm_token_base/{s}"] for s in tasks)
        out["lm_hook_exact_err"] = sub.hook_exact_err()
        w = sub.downs[0].weight
        out["lm_mask_exact_err"] = sub.mask_exact_err(
            E.M.random_units(1, len(sub.downs), w.shape[1], cfg.q, ctx.generator(5))[0])
    finally:
        sub.close()
        ref_sub.close()
    out["lm_analysis_s"] = time.perf_counter() - t0
    del init_model, init
    out["planted_recall"] = E.planted_recall(cfg.q, ctx.generator(6))
    if ctx.dry_run:  # the MiniLM pipeline is built (texts, weights), not run: it is the small-scale code path
        if cfg.minilm:
            P.load_texts(cfg.minilm_domains, cfg.minilm_select, cfg.minilm_eval, cfg.minilm_neutral,
                         cfg.minilm_chars, seed=ctx.seed)
            P.load_minilm()
        return Outcome(metrics={}, dataset=ref)
    an.max_threshold_tokens = E.Analysis().max_threshold_tokens
    mini = minilm_metrics(cfg, ctx, an) if cfg.minilm else {}
    out.update(mini)
    mini_ref = DatasetRef(MINILM_DATA, "stand-in")  # real text shipped with Python, not the paper's data
    return Outcome(metrics=out, dataset=ref, metric_datasets={k: mini_ref for k in mini},
                   notes={"model_dir": str(cfg.model_dir), "tasks": {k: len(v) for k, v in tasks.items()},
                          "minilm_weights": P.MODEL_NAME if cfg.minilm else None})

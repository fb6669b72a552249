"""Full scale (spec §5): LLaDA-8B-Instruct as the DLLM, a small instruct AR model as the auxiliary,
GSM8K test (1319 problems) read from ``<data root>/gsm8k/test.jsonl``.

``--dry-run`` builds the same pipeline on CPU and decodes two GSM8K fixture problems: the DLLM is a tiny
random checkpoint that ships its own modelling code (``remote_fixture``), loaded through the same
``AutoModel`` + ``trust_remote_code`` path and chat-template prompt as LLaDA; the auxiliary model is a
tiny random Llama loaded like the real one.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.context import RunContext
from suite.data import gsm8k
from suite.data.external import locate
from suite.errors import ConfigError, DataNotFoundError, SuiteError
from suite.models.hf import load_causal_lm, save_tiny_random_lm
from suite.spec import Outcome, curve_metrics

from .experiment import accuracy, spearman
from .method import DecodeConfig, Mix, Stats, broken_drafts, decode, inject, interp_weights, summarize


def standard_scores(outputs: dict[str, list[str]], answers: list[str], run_dir: Path | None) -> dict[str, float]:
    """Each arm's GSM8K accuracy as lm-evaluation-harness's ``gsm8k`` task scores it (``strict-match`` and
    ``flexible-extract``, :func:`suite.metrics.answers.gsm8k_harness`), beside the spec's §4 matcher that the
    claims read, so a full number can be set beside published lm-eval numbers. The answers are written to
    ``<run dir>/answers.jsonl`` (one line per arm and problem) for any other scorer (not by a dry run:
    ``run_dir=None``)."""
    import json

    from suite.metrics.answers import gsm8k_harness

    out: dict[str, float] = {}
    for arm, texts in outputs.items():
        scores = gsm8k_harness(texts, answers)
        out[f"lmeval_strict/{arm}"] = scores["strict-match"]
        out[f"lmeval_flexible/{arm}"] = scores["flexible-extract"]
    if run_dir is not None:
        with open(run_dir / "answers.jsonl", "w") as fh:
            for arm, texts in outputs.items():
                for i, (text, ans) in enumerate(zip(texts, answers)):
                    fh.write(json.dumps({"arm": arm, "problem": i, "output": text, "answer": ans}) + "\n")
    return out


class HFDLLM:
    """A Hugging Face masked-diffusion model (LLaDA: ``model(input_ids | inputs_embeds).logits``) as a
    DLLM callable over left-padded prompts; evaluates ``batch`` sequences per forward call."""

    def __init__(self, model: Any, prompt: torch.Tensor, pmask: torch.Tensor, batch: int,
                 device: torch.device) -> None:
        self.model, self.prompt, self.pmask, self.batch, self.device = model, prompt, pmask, batch, device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, rows: torch.Tensor, mix: Mix = None) -> Stats:
        outs = []
        for lo in range(0, len(rows), self.batch):
            r, xa = rows[lo:lo + self.batch], x[lo:lo + self.batch]
            ids = torch.cat([self.prompt[r], xa], 1).to(self.device)
            att = torch.cat([self.pmask[r], torch.ones_like(xa, dtype=torch.bool)], 1).long().to(self.device)
            if mix is None:
                logits = self.model(input_ids=ids, attention_mask=att).logits
            else:  # §3.2(b): interpolated input embeddings at masked answer positions
                emb = self.model.get_input_embeddings()
                e = emb(ids)
                d, w = mix[0][lo:lo + self.batch].to(self.device), mix[1][lo:lo + self.batch].to(self.device)
                p = self.prompt.shape[1]
                ea = e[:, p:]
                e = torch.cat([e[:, :p], ea + w[..., None].to(e.dtype) * (emb(d) - ea)], 1)
                logits = self.model(inputs_embeds=e, attention_mask=att).logits
            probs = logits[:, self.prompt.shape[1]:].float().softmax(-1)
            outs.append(tuple(t.cpu() for t in summarize(probs, xa.to(self.device))))
        return tuple(torch.cat(z) for z in zip(*outs))  # type: ignore[return-value]


def _chat(tok: Any, question: str) -> str:
    """Zero-shot CoT prompt through the model's chat template (plain text without one)."""
    msg = question + "\nLet's think step by step and end with '#### <number>'."
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": msg}], add_generation_prompt=True, tokenize=False)
    return msg + "\n"


def load_dllm(folder: Path, dev: Any, dtype: torch.dtype, trust_remote_code: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) of a DLLM folder that ships its own modelling code (LLaDA: AutoModel +
    ``trust_remote_code`` (config field, True for LLaDA), read from disk only)."""
    import transformers

    if not (folder / "config.json").is_file():
        raise DataNotFoundError(f"no LLaDA folder at {folder}; copy GSAI-ML/LLaDA-8B-Instruct there")
    try:
        model = transformers.AutoModel.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                       local_files_only=True, dtype=dtype).to(dev).eval()
        tok = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                         local_files_only=True)
    except OSError as e:
        raise SuiteError(f"cannot load the DLLM from {folder} ({str(e).splitlines()[0][:120]}); "
                         f"copy the full snapshot incl. modelling code") from e
    return model, tok


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    dev = ctx.device
    tmp = None
    if ctx.dry_run:
        tmp = tempfile.TemporaryDirectory(prefix="dci-dry-")
        root = Path(tmp.name)
        from .remote_fixture import write_remote_code_dllm

        write_remote_code_dllm(root / "dllm", seed=0)
        save_tiny_random_lm(root / "aux", "llama", max_len=1024, seed=1, eos="<eos>", pad="<pad>", unk="<unk>")
        dllm_model, tok = load_dllm(root / "dllm", dev, torch.float32, cfg.trust_remote_code)
        aux = load_causal_lm(root / "aux", dev)
        mask_id, n, block, n_prob = tok.mask_token_id, 16, 8, 2
    else:
        if ctx.data_root is None or not cfg.dllm_dir or not cfg.aux_dir:
            raise DataNotFoundError("full scale needs --data-root (or SUITE_DATA) holding "
                                    f"{cfg.dllm_dir or '<dllm_dir>'}/, {cfg.aux_dir or '<aux_dir>'}/ (HF folders) "
                                    f"and {cfg.gsm8k_dir}/test.jsonl")
        dllm_model, tok = load_dllm(Path(ctx.data_root) / cfg.dllm_dir, dev, torch.bfloat16, cfg.trust_remote_code)
        aux = load_causal_lm(Path(ctx.data_root) / cfg.aux_dir, dev)
        mask_id, n, block = cfg.mask_id, cfg.n, cfg.block_len
        n_prob = cfg.max_problems or None
    if cfg.variant == "untrained-dllm":
        raise ConfigError("variant=untrained-dllm is a small-scale teeth run; full scale loads the pretrained DLLM")
    # GSM8K test (§5); the ref (paper, or a stand-in fixture in a dry run without it) comes from the loader
    data_dir, ref = locate(ctx, "gsm8k-test", cfg.gsm8k_dir, ["test.jsonl"], gsm8k.HOW,
                           fixture=lambda f: gsm8k.write_fixture(f, n=2))
    if n % block:
        raise ConfigError(f"answer length n={n} is not a multiple of block_len={block}; change one")
    records = gsm8k.read_jsonl(data_dir / "test.jsonl")[:n_prob]
    golds = [gsm8k.final_answer(r["answer"]) for r in records]
    golds_s = [str(int(g)) if float(g).is_integer() else str(g) for g in golds]
    # prompts, left-padded with the DLLM tokenizer
    texts = [_chat(tok, r["question"]) for r in records]
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    prompt, pmask = enc["input_ids"], enc["attention_mask"].bool()
    dllm = HFDLLM(dllm_model, prompt, pmask, cfg.full_batch, dev)
    # §3.1 warm proposal: greedy drafts of the auxiliary model, re-tokenised by the DLLM tokenizer
    t0 = time.perf_counter()
    drafts = []
    for lo in range(0, len(records), cfg.full_batch):
        chunk = records[lo:lo + cfg.full_batch]
        drafts += aux.generate([_chat(aux.tokenizer, r["question"]) for r in chunk],
                               max_new_tokens=min(cfg.aux_max_new_tokens, n), temperature=0.0)
    aux_s = time.perf_counter() - t0
    ids = [tok(d, add_special_tokens=False)["input_ids"][:n] for d in drafts]
    draft = torch.full((len(ids), n), mask_id, dtype=torch.long)  # pad with [MASK], never EOS (§7)
    for i, row in enumerate(ids):  # ragged python lists -> tensor (once, not in the decode loop)
        draft[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    if cfg.variant in ("random-drafts", "gold-drafts"):  # TEST-ONLY teeth
        gold_ids = [tok(r["answer"], add_special_tokens=False)["input_ids"][:n] for r in records]
        gold = torch.full_like(draft, mask_id)
        for i, row in enumerate(gold_ids):
            gold[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        specials = torch.tensor(sorted(set(tok.all_special_ids) | {mask_id}))
        symbols = torch.tensor([v for v in range(len(tok)) if v not in set(specials.tolist())])
        draft = broken_drafts(cfg.variant, draft, gold, mask_id, symbols, ctx.generator(99))
    aux_tokens = float(np.mean([len(aux.tokenizer(d)["input_ids"]) for d in drafts]))
    empty = torch.full((len(records), n), mask_id, dtype=torch.long)
    no_prov = torch.zeros_like(empty, dtype=torch.bool)
    base = DecodeConfig(tau=cfg.tau, block_len=block, tau_remask=cfg.tau_remask, variant=cfg.variant)
    m: dict[str, float] = {"aux_acc": accuracy(drafts, golds_s), "aux_tokens": aux_tokens, "aux_wall_s": aux_s}
    outputs: dict[str, list[str]] = {"aux": list(drafts)}  # every arm's answers, scored twice below

    def row(arm: str, x0: torch.Tensor, prov: torch.Tensor, **kw: Any) -> tuple[float, float, float]:
        mix = kw.pop("mix", None)
        t = time.perf_counter()
        d = decode(dllm, x0, prov, mask_id, DecodeConfig(**{**base.__dict__, **kw}), mix=mix,
                   generator=ctx.generator(7))
        out = tok.batch_decode(d.tokens, skip_special_tokens=True)
        outputs[arm] = out
        return accuracy(out, golds_s), float(d.nfe.float().mean()), time.perf_counter() - t

    m["acc_b0"], m["nfe_b0"], m["wall_b0"] = row("b0", empty, no_prov, fixed_k=1)
    m["acc_b1"], m["nfe_b1"], m["wall_b1"] = row("b1", empty, no_prov)
    cur: dict[str, list[float]] = {k: [] for k in ("acc", "nfe", "acc_r", "nfe_r")}
    for rho in cfg.rhos:
        x0, pv = inject(draft, rho, mask_id, ctx.generator(100))
        a, f, _ = row(f"inject@rho={rho}", x0, pv)
        ar, fr, _ = row(f"injectR@rho={rho}", x0, pv, remask=True)
        for k, v in zip(cur, (a, f, ar, fr)):
            cur[k].append(v)
    for k, lab in zip(cur, ("acc_inject", "nfe_inject", "acc_injectR", "nfe_injectR")):
        m.update(curve_metrics(lab, "rho", cfg.rhos, cur[k]))
    x1, pv1 = inject(draft, 1.0, mask_id, ctx.generator(100))  # C2 control arm: random remask positions
    m["acc_injectRrand"], m["nfe_injectRrand"], _ = row("injectRrand", x1, pv1, remask=True, remask_rule="random")
    ia, inf_ = [], []
    for alpha in cfg.alphas:
        a, f, _ = row(f"interp@alpha={alpha}", empty, no_prov, mix=(draft, interp_weights(draft, alpha, mask_id)))
        ia.append(a)
        inf_.append(f)
    m.update(curve_metrics("acc_interp", "alpha", cfg.alphas, ia))
    m.update(curve_metrics("nfe_interp", "alpha", cfg.alphas, inf_))
    i1 = list(cfg.rhos).index(1.0)
    m["nfe_reduction_inject_rho1"] = 1.0 - cur["nfe"][i1] / m["nfe_b1"]
    m["nfe_reduction_injectR_rho1"] = 1.0 - cur["nfe_r"][i1] / m["nfe_b1"]
    m["acc_inject_minus_b1"] = cur["acc"][i1] - m["acc_b1"]
    m["acc_injectR_minus_b1"] = cur["acc_r"][i1] - m["acc_b1"]
    m["acc_injectR_minus_inject"] = cur["acc_r"][i1] - cur["acc"][i1]
    m["acc_injectR_minus_random"] = cur["acc_r"][i1] - m["acc_injectRrand"]
    m["spearman_nfe_rho"] = spearman(cfg.rhos, cur["nfe"])
    m["spearman_nfe_rho_remask"] = spearman(cfg.rhos, cur["nfe_r"])
    m.update(standard_scores(outputs, [r["answer"] for r in records], None if ctx.dry_run else ctx.run_dir))
    from .experiment import stub_checks

    m.update(stub_checks(cfg, ctx))
    if tmp is not None:
        tmp.cleanup()
    return Outcome(metrics=m, dataset=ref,
                   notes={"dllm": cfg.dllm_dir, "aux": cfg.aux_dir, "n": n, "block_len": block})

"""Full scale (spec §5): a pretrained Hugging Face causal LM (LLaMA-2-7B class) read from disk, expanded with
target-language tokens, each new-row initialiser applied to the input embeddings AND the (untied) LM head
(spec §7), step-0 perplexity on the old language, continued pretraining on the target language at equal budget
through ``suite.train.fit``, final target-language perplexity. Metric names match the small scale, so the same
claims read them.

Layout under ``<data root>/<full_dir>/``:
  model/                       a ``save_pretrained`` folder (config.json, weights, tokenizer files)
  corpora/<full_old_lang>.txt  old-language text, one document per line (held-out perplexity, C1)
  corpora/<full_lang>.txt      target-language text, one document per line (expansion, CW2V, CPT)

``--dry-run`` without the data builds the same pipeline on a tiny random Llama checkpoint + tiny corpora written
in this layout (``suite.data.external.locate`` fixture): tokenizer expansion, every initialiser, CW2V steps,
the bound, one forward/backward per expanded model; no continued pretraining.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.models.hf import save_tiny_random_lm
from suite.spec import Outcome
from suite.train import TrainConfig, fit

from . import method as M

HOW = ("put a Hugging Face save_pretrained folder of the base model (e.g. Llama-2-7b-hf) under "
       "<root>/{d}/model/ and one-document-per-line text under <root>/{d}/corpora/<lang>.txt "
       "(old language and target language)")


def _fixture(cfg: Any):
    def write(folder: Path) -> None:
        save_tiny_random_lm(folder / "model", family="llama", max_len=256, seed=0, eos="</s>", pad="<pad>",
                            unk="<unk>")
        (folder / "corpora").mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(0)
        syl = ["ka", "ma", "ra", "ti", "na", "sh", "vi", "du", "pa", "la", "he", "ko"]
        eng = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "is"]

        def lines(words: list[str], n: int) -> str:
            ids = torch.randint(len(words), (n, 12), generator=g).tolist()
            return "\n".join(" ".join(words[i] for i in row) for row in ids) + "\n"
        hi_words = ["".join(syl[j] for j in torch.randint(len(syl), (3,), generator=g).tolist()) for _ in range(20)]
        (folder / "corpora" / f"{cfg.full_old_lang}.txt").write_text(lines(eng, 40))
        (folder / "corpora" / f"{cfg.full_lang}.txt").write_text(lines(hi_words, 40))
    return write


def _read_lines(path: Path, n: int) -> list[str]:
    out: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(line.rstrip("\n"))
            if len(out) >= n:
                break
    return out


def _blocks(tok: Any, lines: list[str], seq_len: int) -> torch.Tensor:
    """Documents tokenised, joined with EOS, cut into (N, seq_len) blocks (standard CLM packing)."""
    ids = tok(lines, add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    flat = torch.tensor([t for doc in ids for t in (*doc, eos)], dtype=torch.long)
    n = flat.numel() // seq_len
    return flat[:n * seq_len].view(n, seq_len)


def new_words(tok: Any, lines: list[str], T: int) -> list[str]:
    """Tokenizer expansion (spec §5, simplified): the T most frequent whitespace words of the target corpus that
    the base tokenizer splits into >= 2 pieces (the paper trains a SentencePiece model; see README)."""
    counts = Counter(w for line in lines for w in line.split())
    vocab = tok.get_vocab()
    cand = [w for w, _ in counts.most_common() if w not in vocab]
    pieces = tok(cand, add_special_tokens=False)["input_ids"] if cand else []
    return [w for w, p in zip(cand, pieces) if len(p) >= 2][:T]


@torch.no_grad()
def _ppl(model: Any, blocks: torch.Tensor, batch: int, dev: torch.device) -> float:
    model.eval()
    tot, n = 0.0, 0
    for s in range(0, blocks.shape[0], batch):
        b = blocks[s:s + batch].to(dev)
        tot += float(model(input_ids=b, labels=b).loss) * b.shape[0]
        n += b.shape[0]
    return math.exp(tot / max(n, 1))


def _init(method: str, E: torch.Tensor, T: int, cfg: Any, g: torch.Generator, text: torch.Tensor, V: int,
          variant: str, out: dict[str, float], steps: int) -> torch.Tensor:
    if method == "random":
        return M.init_random(E, T, g, cfg.init_sigma)
    if method == "random-large":
        return M.init_random(E, T, g, 5 * float(E.norm(dim=1).mean()) / E.shape[1] ** 0.5)
    if method == "zero":
        return torch.zeros(T, E.shape[1], device=E.device)
    if method == "mean":
        return M.init_mean(E, T)
    if method == "multivariate":
        return M.init_multivariate(E, T, g, variant=variant)
    if method == "hull":
        return M.init_hull(E, T, g, variant)
    if method == "cw2v":
        rows, losses = M.cw2v(E, torch.arange(V, V + T), text, steps, cfg.cw2v_window, cfg.cw2v_negatives,
                              cfg.cw2v_lr, g, variant)
        k = max(len(losses) // 10, 1)
        out["cw2v_loss_drop"] = sum(losses[:k]) / k - sum(losses[-k:]) / k
        return rows
    raise ValueError(method)


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    folder, ref = locate(ctx, "vocab_init full (HF causal LM + corpora)", cfg.full_dir,
                         ["model/config.json", f"corpora/{cfg.full_old_lang}.txt", f"corpora/{cfg.full_lang}.txt"],
                         HOW.format(d=cfg.full_dir), fixture=_fixture(cfg))
    import transformers  # after locate: without data the error is the one-line layout message

    dev = torch.device(ctx.device)
    dry = ctx.dry_run
    mdir = folder / "model"
    tok = transformers.AutoTokenizer.from_pretrained(mdir, local_files_only=True)
    old_lines = _read_lines(folder / "corpora" / f"{cfg.full_old_lang}.txt", cfg.full_eval_docs)
    new_lines = _read_lines(folder / "corpora" / f"{cfg.full_lang}.txt", cfg.full_max_docs)
    n_ev = max(1, min(cfg.full_eval_docs, len(new_lines) // 10))
    new_ev, new_tr = new_lines[:n_ev], new_lines[n_ev:]
    A_te_old = _blocks(tok, old_lines, cfg.full_seq_len)
    V = len(tok)
    words = new_words(tok, new_tr, cfg.full_new_tokens)
    tok.add_tokens(words)
    T = len(tok) - V
    out: dict[str, float] = {"full_vocab_old": float(V), "full_new_tokens": float(T)}
    A_te = _blocks(tok, old_lines, cfg.full_seq_len)
    # spec §7: appended tokens must not change tokenisation of old-language text
    out["old_tokenization_changed"] = float(A_te.shape != A_te_old.shape or not torch.equal(A_te, A_te_old))
    B_tr, B_te = _blocks(tok, new_tr, cfg.full_seq_len), _blocks(tok, new_ev, cfg.full_seq_len)
    dtype = torch.float32  # fp32 master weights; fit autocasts to bf16 on CUDA

    def load() -> Any:
        m = transformers.AutoModelForCausalLM.from_pretrained(mdir, local_files_only=True, dtype=dtype)
        return m.to(dev)

    base = load()
    emb, head = base.get_input_embeddings().weight, base.get_output_embeddings().weight
    tied = head.data_ptr() == emb.data_ptr()
    E_in, E_out = emb.detach()[:V].float().clone(), head.detach()[:V].float().clone()
    out["ppl_A_base"] = _ppl(base, A_te, cfg.full_batch, dev)
    with torch.no_grad():  # last-layer (post-norm) hidden states of held-out old text + random directions
        H = base(input_ids=A_te[:4].to(dev), output_hidden_states=True).hidden_states[-1].reshape(-1, E_out.shape[1])
    H = torch.cat([H.float(), torch.randn(cfg.n_hidden, E_out.shape[1], generator=ctx.generator(15)).to(dev)])
    del base
    cw2v_steps = 2 if dry else cfg.cw2v_steps
    worst_hull = -math.inf
    for method in list(cfg.methods) + ["random-large"]:
        g = ctx.generator(100 + len(method))
        r_in = _init(method, E_in, T, cfg, g, B_tr, V, cfg.variant, out, cw2v_steps)
        r_out = r_in if tied else _init(method, E_out, T, cfg, g, B_tr, V, cfg.variant, {}, cw2v_steps)
        exc = M.hull_bound_excess(E_out, r_out, H)  # C1 on the output rows (spec §7)
        out[f"bound_excess_{method}"] = exc
        if method in ("mean", "hull", "cw2v"):
            worst_hull = max(worst_hull, exc)
        m = load()
        m.resize_token_embeddings(V + T, mean_resizing=False)
        with torch.no_grad():
            m.get_input_embeddings().weight[V:] = r_in.to(m.get_input_embeddings().weight.dtype)
            if not tied:
                m.get_output_embeddings().weight[V:] = r_out.to(m.get_output_embeddings().weight.dtype)
        if dry:  # build only: one forward/backward through the expanded model
            m(input_ids=B_tr[:2].to(dev), labels=B_tr[:2].to(dev)).loss.backward()
            del m
            continue
        pa = _ppl(m, A_te, cfg.full_batch, dev)
        out[f"ppl_A_step0_{method}"] = pa
        out[f"ppl_A_change_{method}"] = pa / out["ppl_A_base"] - 1
        out[f"ppl_B_step0_{method}"] = _ppl(m, B_te, cfg.full_batch, dev)
        if method != "random-large":
            # continued pretraining (CLM) at equal budget; the paper tunes LLaMA with LoRA + trainable
            # embeddings, we train the embedding matrices only (README: deviation)
            for p in m.parameters():
                p.requires_grad_(False)
            m.get_input_embeddings().weight.requires_grad_(True)
            m.get_output_embeddings().weight.requires_grad_(True)
            tc = TrainConfig(steps=cfg.full_cpt_steps, batch_size=cfg.full_batch, lr=cfg.full_lr, optimizer="adamw",
                             schedule="cosine", warmup_steps=min(100, cfg.full_cpt_steps // 10), grad_clip=1.0,
                             log_every=max(cfg.full_cpt_steps // 10, 1))
            torch.manual_seed(ctx.seed * 31 + 2)
            t0 = time.perf_counter()
            fit(m, lambda mm, b: mm(input_ids=b[0], labels=b[0]).loss, (B_tr,), tc, ctx=ctx, name=f"cpt-{method}")
            out[f"cpt_seconds_{method}"] = time.perf_counter() - t0
            out[f"cpt_steps_{method}"] = float(cfg.full_cpt_steps)
            out[f"ppl_B_{method}"] = _ppl(m, B_te, cfg.full_batch, dev)
        del m
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    out["bound_excess_hull_methods"] = worst_hull
    if not dry:
        hulls = [abs(out[f"ppl_A_change_{k}"]) for k in ("mean", "hull", "cw2v") if k in cfg.methods]
        if hulls:
            out["ppl_A_change_hull_max"] = max(hulls)
        best = min(out[f"ppl_B_{k}"] for k in cfg.methods)
        if "cw2v" in cfg.methods:
            out["cw2v_vs_best"] = out["ppl_B_cw2v"] / best - 1
            out["cw2v_vs_random"] = out["ppl_B_cw2v"] / out["ppl_B_random"] - 1
        if "multivariate" in cfg.methods:
            out["multivariate_vs_random"] = out["ppl_B_multivariate"] / out["ppl_B_random"] - 1
    return Outcome(metrics=out, dataset=ref)

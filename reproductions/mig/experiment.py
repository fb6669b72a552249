"""One run of the CPU protocol (spec §6): the procedural instruction pool, MIG and the baselines at
equal budget k, a tiny causal LM trained on each subset for the same steps, family-balanced exact
match; plus the smoke-scale mechanism checks on the same pool."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from suite.context import RunContext
from suite.data.instructions import Pool, eval_set, make_pool
from suite.sft import SFTConfig, exact_match, train_sft

from . import method as M

ARMS = ("mig", "random", "quality", "instag")
COLS = ("em", "family_entropy", "corrupt_rate", "tag_entropy", "mean_quality", "select_s", "sft_steps", "sft_s")


def label_embeddings(labels: Sequence[str], source: str) -> torch.Tensor:
    """Normalised label embeddings: MiniLM (spec §6, needs the [embed] extra) or the trigram stand-in."""
    if source == "minilm":
        from suite.data.embed import embed
        return torch.nn.functional.normalize(embed(list(labels)).float(), dim=-1)
    return M.trigram_embeddings(labels)


def label_space(tags: Sequence[Sequence[str]], scores: torch.Tensor, emb_fn: Callable[[list[str]], torch.Tensor],
                cfg: Any, device: torch.device) -> dict[str, Any]:
    """Labels (sorted, as the official graph), W, P, v and u = v P (spec §3)."""
    labels = sorted({t for ts in tags for t in ts})
    index = {t: j for j, t in enumerate(labels)}
    rows = torch.tensor([i for i, ts in enumerate(tags) for _ in ts], dtype=torch.long, device=device)
    cols = torch.tensor([index[t] for ts in tags for t in ts], dtype=torch.long, device=device)
    emb = emb_fn(labels).to(device)
    w = M.label_graph(emb, cfg.theta)
    p = M.propagation_matrix(w, cfg.beta)
    v = M.sample_vectors(rows, cols, scores.to(device).clamp(min=0), len(labels), cfg.norm)
    tagmat = torch.zeros(len(tags), len(labels), dtype=torch.bool, device=device)
    tagmat[rows, cols] = True
    u = v @ p
    del v  # (N, L) dense: at full scale 939K x 4.5K floats, keep one copy
    return {"labels": labels, "w": w, "p": p, "u": u, "tags": tagmat}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def select_all(cfg: Any, space: dict[str, Any], scores: torch.Tensor, ctx: RunContext,
               variant: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Every arm's k indices (CPU LongTensors) and its selection seconds."""
    n, k = space["u"].shape[0], cfg.k
    sel: dict[str, torch.Tensor] = {}
    secs: dict[str, float] = {}
    runs = {
        "mig": lambda: M.mig_select(space["u"], k, phi_type=cfg.phi_type, a=cfg.phi_a, b=cfg.phi_b,
                                    alpha=cfg.phi_alpha, batch_size=cfg.batch_size, gain=cfg.gain, variant=variant),
        "random": lambda: M.random_select(n, k, ctx.generator(1)),
        "quality": lambda: M.quality_select(scores.to(ctx.device), k),
        "instag": lambda: M.instag_select(space["tags"], k),
    }
    for arm in cfg.arms:
        _sync(ctx.device)
        t0 = time.perf_counter()
        idx = runs[arm]()
        _sync(ctx.device)
        secs[arm] = time.perf_counter() - t0
        sel[arm] = idx.cpu()
    return sel, secs


def subset_stats(idx: torch.Tensor, tagmat: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """Label-histogram entropy (bits), labels covered and mean quality of a subset."""
    counts = tagmat[idx.to(tagmat.device)].sum(0).cpu()
    return {"tag_entropy": M.entropy_bits(counts), "labels_covered": float((counts > 0).sum()),
            "mean_quality": float(scores[idx].float().mean())}


def cpu_protocol(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    """Spec §6 small: select k with every arm, SFT the tiny LM on each, exact match on 40 x 10."""
    pool = make_pool(cfg.n_pool, seed=ctx.seed, n_families=cfg.n_families, zipf=cfg.zipf,
                     corrupt_frac=cfg.corrupt_frac)
    ctx.log("mig: pool of %d items, %d families", len(pool), cfg.n_families)
    space = label_space(pool.tags, pool.quality, lambda ls: label_embeddings(ls, cfg.labels), cfg, ctx.device)
    out: dict[str, float] = {"n_labels": float(len(space["labels"])), "label_mean_degree": M.mean_degree(space["w"])}
    out.update(checks(cfg, space, pool, variant))
    sel, secs = select_all(cfg, space, pool.quality, ctx, variant)
    test = eval_set(list(range(cfg.n_families)), per_family=cfg.eval_per_family, seed=ctx.seed)
    sft = SFTConfig(dim=cfg.sft_dim, depth=cfg.sft_depth, heads=cfg.sft_heads, steps=cfg.sft_steps,
                    batch=cfg.sft_batch, lr=cfg.sft_lr, warmup=min(20, cfg.sft_steps))
    for arm, idx in sel.items():
        sub: Pool = pool.subset(idx)
        fam_counts = torch.bincount(sub.family, minlength=cfg.n_families)
        st = subset_stats(idx, space["tags"], pool.quality)
        row = {"family_entropy": M.entropy_bits(fam_counts), "families_covered": float((fam_counts > 0).sum()),
               "corrupt_rate": float((~sub.correct).float().mean()), "select_s": secs[arm], **st}
        if cfg.sft_steps > 0:
            model, cost = train_sft(sub.instructions, sub.answers, sft, device=ctx.device, seed=ctx.seed,
                                    ctx=ctx, name=f"sft-{arm}")
            row["em"] = float(exact_match(model, test.instructions, test.answers, device=ctx.device))
            row["sft_steps"], row["sft_s"] = cost["steps"], cost["seconds"]
        ctx.log("mig: arm %s %s", arm, {k: round(v, 4) for k, v in row.items()})
        out.update({f"{arm}_{k}": v for k, v in row.items()})
    if "mig_em" in out:
        for base in ("random", "quality", "instag"):
            if f"{base}_em" in out:
                out[f"em_gain_vs_{base}"] = out["mig_em"] - out[f"{base}_em"]
    return out


def checks(cfg: Any, space: dict[str, Any], pool: Pool, variant: str) -> dict[str, float]:
    """Spec §6 smoke checks on the run's own pool and label space."""
    u, p = space["u"], space["p"]
    kw = dict(phi_type=cfg.phi_type, a=cfg.phi_a, b=cfg.phi_b, alpha=cfg.phi_alpha, variant=variant)
    out: dict[str, float] = {"prop_colsum_err": float((p.sum(0) - 1).abs().max())}
    # (1) phi linear (b = 1): greedy == top-k by sum_l u_il
    k = min(cfg.k, u.shape[0] - 1)
    lin = M.mig_select(u, k, phi_type="pow", a=cfg.phi_a, b=1.0, alpha=cfg.phi_alpha, variant=variant)
    top = torch.topk(u.sum(1), k).indices
    out["linear_topk_mismatch"] = float(k - len(set(lin.tolist()) & set(top.tolist())))
    # (2) gradient gain vs exact marginal gain on a toy of cfg.toy_n samples after toy_steps greedy picks
    toy = u[: cfg.toy_n]
    s0 = M.mig_select(toy, cfg.toy_steps, **kw)
    x = toy[s0].sum(0)
    rest = torch.ones(toy.shape[0], dtype=torch.bool, device=u.device)
    rest[s0] = False
    kind = "linear" if variant == "linear-phi" else cfg.phi_type
    for name, a in (("gain_spearman", cfg.toy_a), ("gain_spearman_official_a", cfg.phi_a)):
        grad = M.gradient_gains(toy[rest], M.phi_prime(x, kind, a, cfg.phi_b, cfg.phi_alpha))
        exact = M.exact_gains(toy[rest], x, kind, a, cfg.phi_b, cfg.phi_alpha)
        out[name] = M.spearman(grad, exact)
    # diagnostic: overlap of greedy-by-gradient and greedy-by-exact-gain selections of check_k items
    kk = min(cfg.check_k, u.shape[0])
    by_exact = M.mig_select(u, kk, gain="exact", **kw)
    by_grad = M.mig_select(u, kk, **kw)
    out["grad_exact_overlap"] = len(set(by_exact.tolist()) & set(by_grad.tolist())) / kk
    # (3) deterministic; (4) batched and unbatched gains / selections agree
    kk = min(cfg.check_k, u.shape[0])
    a1 = M.mig_select(u, kk, batch_size=0, **kw)
    a2 = M.mig_select(u, kk, batch_size=0, **kw)
    ab = M.mig_select(u, kk, batch_size=cfg.check_batch, **kw)
    out["deterministic_mismatch"] = float((a1 != a2).sum())
    out["batched_mismatch"] = float((a1 != ab).sum())
    g = M.phi_prime(u[a1[: kk // 2]].sum(0), cfg.phi_type, cfg.phi_a, cfg.phi_b, cfg.phi_alpha)
    out["batched_gain_err"] = float((M.gradient_gains(u, g, cfg.check_batch) - M.gradient_gains(u, g)).abs().max()
                                    / M.gradient_gains(u, g).abs().max().clamp(min=1e-12))
    # (5) the vectorised #InsTag sampler equals the literal sequential pass loop
    m = min(cfg.check_instag_n, u.shape[0])
    tags = space["tags"][:m]
    ref = M.instag_select_reference([set(torch.nonzero(r).flatten().tolist()) for r in tags.cpu()], min(cfg.k, m))
    vec = M.instag_select(tags, min(cfg.k, m)).cpu().tolist()
    out["instag_mismatch"] = float(sum(x != y for x, y in zip(ref, vec)) + abs(len(ref) - len(vec)))
    return out

"""One run of the CPU protocol (spec §6): the procedural instruction pool with junk families and a
near-duplicate outlier cluster, embeddings of the instructions (the first user turn, spec §3), seeded
k-means, and three arms at equal budget B and equal final training steps — Random, kMQ (non-iterative)
and the Iterative refinement (R rounds of B/R, the oracle checker as the reward substitute) — each
training the same tiny causal LM, scored by exact match on a balanced test set over the good families.
Plus the spec §6 smoke checks on toy inputs."""
from __future__ import annotations

import time
from typing import Any

import torch

from suite.context import RunContext
from suite.data.instructions import JUNK, Pool, eval_set, make_pool
from suite.metrics.stats import chi2_gof
import torch.nn.functional as F

from suite.sft import SFTConfig, encode_items, greedy_decode, train_sft

from . import method as M

ARMS = ("iterative", "kmq", "random")
COLS = ("acc", "nll", "junk_share", "corrupt_rate", "select_s", "queries", "sft_steps", "sft_s")


def embed_instructions(texts: list[str], source: str) -> torch.Tensor:
    """MiniLM (spec §6, needs the [embed] extra) or the hashed stand-in (smoke, core install)."""
    if source == "minilm":
        from suite.data.embed import embed
        return torch.nn.functional.normalize(embed(texts).float(), dim=-1)
    return M.hash_embeddings(texts)


def oracle_rm(preds: list[str], gold: list[str], generator: torch.Generator, sigma: float) -> torch.Tensor:
    """Reward substitute (spec §6): RM(x, y) = 1[y correct for x] + N(0, sigma^2)."""
    hit = torch.tensor([p == g for p, g in zip(preds, gold)], dtype=torch.float64)
    return hit + sigma * torch.randn(len(preds), generator=generator, dtype=torch.float64)


class _Timer:
    def __init__(self) -> None:
        self.s = 0.0

    def __enter__(self) -> "_Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *a: Any) -> None:
        self.s += time.perf_counter() - self.t0


def _sft(cfg: Any, steps: int) -> SFTConfig:
    return SFTConfig(dim=cfg.sft_dim, depth=cfg.sft_depth, heads=cfg.sft_heads, steps=steps, batch=cfg.sft_batch,
                     lr=cfg.sft_lr, warmup=min(10, steps))


def _acc(model: Any, test: Pool, ctx: RunContext) -> float:
    preds = greedy_decode(model, test.instructions, max(len(a) for a in test.answers) + 1, device=ctx.device)
    return float(torch.tensor([p == a for p, a in zip(preds, test.answers)], dtype=torch.float).mean())


@torch.no_grad()
def answer_nll(model: Any, test: Pool, ctx: RunContext) -> float:
    """Teacher-forced cross-entropy (nats per answer token, eos included) of the gold test answers: a
    less noisy read-out than exact match when the tiny LM solves few items (README)."""
    was = model.training
    model.eval()
    tok, msk = encode_items(test.instructions, test.answers, model.max_len)
    tok, msk = tok.to(ctx.device), msk.to(ctx.device)
    logits = model(tok[:, :-1])
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1), reduction="none")
    w = msk[:, 1:].reshape(-1).float()
    model.train(was)
    return float((ce * w).sum() / w.sum())


def iterative(cfg: Any, pool: Pool, cluster: torch.Tensor, ctx: RunContext, test: Pool | None, variant: str
              ) -> tuple[dict[str, float], torch.Tensor]:
    """Spec §3 loop. Round 0: kM-Random with B/R (B/(R K) per cluster); round r: decode the selected
    items with M_{r-1}, s_i = RM(gold) - RM(y_hat), softmax cluster weights, Multinomial(b_r, w), add
    random unselected items; M_r is trained from scratch on all of S (the scripts retrain, spec §7).
    Returns the metrics and the selected pool indices (CPU)."""
    gen = ctx.generator(11)
    rm_gen = ctx.generator(12)
    n, k, R = len(pool), cfg.k, cfg.rounds
    selected = torch.zeros(n, dtype=torch.bool, device=cluster.device)
    sel_t, sft_steps, sft_s, queries = _Timer(), 0.0, 0.0, 0
    junk = (pool.kind == JUNK).to(cluster.device)
    out: dict[str, float] = {}
    model = None
    for r in range(R):
        target = cfg.budget * (r + 1) // R - int(selected.sum())  # b_r: cumulative target B (r+1)/R (README)
        if r == 0:
            with sel_t:
                new = M.kmrandom_select(cluster, k, target, gen)
        else:
            sidx = torch.nonzero(selected).flatten().cpu()
            sub = pool.subset(sidx)
            with sel_t:  # generation + scoring are part of the selection cost
                preds = greedy_decode(model, sub.instructions, cfg.max_new, device=ctx.device)
                queries += len(preds)
                rm_gold = oracle_rm(sub.answers, sub.gold, rm_gen, cfg.rm_noise)  # the pool's answer, checked
                rm_hat = oracle_rm(preds, sub.gold, rm_gen, cfg.rm_noise)
                s = M.reward_difference(rm_gold, rm_hat, variant).to(cluster.device)
                w, sc = M.cluster_weights(s, cluster[sidx.to(cluster.device)], k, cfg.temperature)
                new, st = M.add_round(cluster, selected, w, target, gen, redistribute=cfg.redistribute)
            out[f"iter_shortfall_r{r}"] = st["shortfall"]
            out[f"iter_weight_junk_r{r}"] = float(w[_junk_clusters(cluster, junk, k)].sum())
            out[f"iter_alloc_sum_err_r{r}"] = abs(st["allocated"] - target)
        new_dev = new.to(cluster.device)
        out[f"iter_dup_r{r}"] = float(selected[new_dev].sum())  # items selected twice (must be 0)
        selected[new_dev] = True
        out[f"iter_new_r{r}"] = float(new.numel())
        out[f"iter_junk_share_r{r}"] = float(junk[new_dev].float().mean()) if new.numel() else 0.0
        steps = cfg.sft_steps if r == R - 1 else cfg.round_steps
        sidx = torch.nonzero(selected).flatten().cpu()
        if steps > 0:
            sub = pool.subset(sidx)
            model, cost = train_sft(sub.instructions, sub.answers, _sft(cfg, steps), device=ctx.device,
                                    seed=ctx.seed + r, ctx=ctx, name=f"sft-iter-r{r}")
            sft_steps += cost["steps"]
            sft_s += cost["seconds"]
    sidx = torch.nonzero(selected).flatten().cpu()
    sub = pool.subset(sidx)
    out.update({"iterative_select_s": sel_t.s, "iterative_queries": float(queries), "iterative_sft_steps": sft_steps,
                "iterative_sft_s": sft_s, "iterative_size": float(sidx.numel()),
                "iterative_junk_share": float((sub.kind == JUNK).float().mean()),
                "iterative_corrupt_rate": float((~sub.correct).float().mean())})
    if test is not None and model is not None and cfg.sft_steps > 0:
        out["iterative_acc"] = _acc(model, test, ctx)
        out["iterative_nll"] = answer_nll(model, test, ctx)
    shares = [out[f"iter_junk_share_r{r}"] for r in range(R)]
    out["junk_share_first"], out["junk_share_last"] = shares[0], shares[-1]
    out["junk_share_max_rise"] = max([b - a for a, b in zip(shares, shares[1:])] or [0.0])
    out["iter_dup_total"] = sum(out[f"iter_dup_r{r}"] for r in range(R))
    return out, sidx


def _junk_clusters(cluster: torch.Tensor, junk: torch.Tensor, k: int) -> torch.Tensor:
    """Clusters whose majority is junk-family items."""
    j = torch.zeros(k, device=cluster.device).index_add_(0, cluster, junk.float())
    c = torch.bincount(cluster, minlength=k).float()
    return j > 0.5 * c.clamp(min=1)


def one_shot(cfg: Any, pool: Pool, arm: str, idx: torch.Tensor, secs: float, ctx: RunContext, test: Pool | None
             ) -> dict[str, float]:
    sub = pool.subset(idx)
    row = {"select_s": secs, "queries": 0.0, "size": float(idx.numel()),
           "junk_share": float((sub.kind == JUNK).float().mean()),
           "corrupt_rate": float((~sub.correct).float().mean())}
    if test is not None and cfg.sft_steps > 0:
        model, cost = train_sft(sub.instructions, sub.answers, _sft(cfg, cfg.sft_steps), device=ctx.device,
                                seed=ctx.seed + cfg.rounds - 1, ctx=ctx, name=f"sft-{arm}")
        row.update(acc=_acc(model, test, ctx), nll=answer_nll(model, test, ctx), sft_steps=cost["steps"],
                   sft_s=cost["seconds"])
    return {f"{arm}_{k}": v for k, v in row.items()}


def cpu_protocol(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    pool = make_pool(cfg.n_pool, seed=ctx.seed, n_families=cfg.n_families, zipf=cfg.zipf,
                     corrupt_frac=cfg.corrupt_frac, junk_families=cfg.junk_families,
                     near_duplicates=cfg.near_duplicates, quality=(4.0, cfg.q_std, 2.0, cfg.q_std))
    t0 = time.perf_counter()
    x = embed_instructions(pool.instructions, cfg.embed).to(ctx.device)  # first user turn only (spec §3)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cluster, _, inertia = M.kmeans(x, cfg.k, niter=cfg.niter, nredo=cfg.nredo, generator=ctx.generator(3))
    kmeans_s = time.perf_counter() - t0
    if variant == "shuffled-clusters":  # teeth: k-means labels applied to the wrong items (an index mix-up)
        cluster = cluster[torch.randperm(len(pool), generator=ctx.generator(4)).to(cluster.device)]
    ctx.log("diverse_selection: pool %d, K=%d, embed %.1fs, kmeans %.1fs", len(pool), cfg.k, embed_s, kmeans_s)
    out: dict[str, float] = {"embed_s": embed_s, "kmeans_s": kmeans_s, "kmeans_inertia": inertia,
                             "pool_junk_share": float((pool.kind == JUNK).float().mean())}
    good = [f for f in range(cfg.n_families) if f not in pool.junk]
    test = eval_set(good, per_family=cfg.eval_per_family, seed=ctx.seed)
    q = pool.quality.to(ctx.device)
    # shared clustering cost is charged to both cluster-based arms
    t0 = time.perf_counter()
    kmq = M.kmq_select(cluster, cfg.k, cfg.budget, q, ctx.generator(21), variant=variant)
    kmq_s = time.perf_counter() - t0 + embed_s + kmeans_s
    it, _ = iterative(cfg, pool, cluster, ctx, test, variant)
    it["iterative_select_s"] += embed_s + kmeans_s
    out.update(it)
    size = int(it["iterative_size"])  # random at equal budget: as many items as the iterative subset
    t0 = time.perf_counter()
    rnd = M.random_select(len(pool), size, ctx.generator(31))
    rnd_s = time.perf_counter() - t0
    out.update(one_shot(cfg, pool, "kmq", kmq, kmq_s, ctx, test))
    out.update(one_shot(cfg, pool, "random", rnd, rnd_s, ctx, test))
    out["junk_ratio_vs_random"] = out["junk_share_last"] / max(out["random_junk_share"], 1e-9)
    out["kmq_corrupt_ratio_vs_random"] = out["kmq_corrupt_rate"] / max(out["random_corrupt_rate"], 1e-9)
    if "random_acc" in out:
        out["acc_gain_iter_vs_random"] = out["iterative_acc"] - out["random_acc"]
        out["acc_gain_kmq_vs_random"] = out["kmq_acc"] - out["random_acc"]
        out["acc_gain_iter_vs_kmq"] = out["iterative_acc"] - out["kmq_acc"]
        out["nll_drop_iter_vs_random"] = out["random_nll"] - out["iterative_nll"]
        out["nll_drop_kmq_vs_random"] = out["random_nll"] - out["kmq_nll"]
        out["nll_drop_iter_vs_kmq"] = out["kmq_nll"] - out["iterative_nll"]
    for arm in ARMS:
        ctx.log("diverse_selection: %s %s", arm, {c: round(out.get(f"{arm}_{c}", float("nan")), 4) for c in COLS})
    out.update(checks(cfg, ctx, variant))
    return out


def checks(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    """Spec §6 smoke checks on toy inputs."""
    g = ctx.generator(41)
    out: dict[str, float] = {}
    # (1) softmax cluster weights: w = exp(S_c) / sum exp(S_c) over scored clusters
    k = 6
    s = torch.randn(40, generator=g, dtype=torch.float64)
    cl = torch.randint(0, k - 1, (40,), generator=g)  # cluster k-1 unscored
    w, sc = M.cluster_weights(s, cl, k, 1.0)
    ref = torch.stack([s[cl == c].mean() if (cl == c).any() else torch.tensor(float("-inf"), dtype=torch.float64)
                       for c in range(k)])
    out["softmax_err"] = float((w - torch.exp(ref) / torch.exp(ref).sum()).abs().max()) + abs(float(w.sum()) - 1)
    # (2) multinomial allocation sums to the round budget
    out["alloc_sum_err"] = float(abs(int(M.allocate(w, 133, g).sum()) - 133))
    # (3)+(4) exhausted clusters: one cluster of 3 items gets all the weight
    cluster = torch.cat([torch.zeros(3, dtype=torch.long), torch.ones(50, dtype=torch.long),
                         torch.full((50,), 2, dtype=torch.long)])
    sel = torch.zeros(103, dtype=torch.bool)
    sel[torch.tensor([3, 4, 53])] = True
    wt = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    idx, st = M.add_round(cluster, sel, wt, 20, g, redistribute=False)
    out["exhausted_shortfall_recorded"] = float(st["shortfall"] == 17 and idx.numel() == 3)
    idx2, st2 = M.add_round(cluster, sel, wt, 20, g, redistribute=True)
    out["exhausted_redistributed"] = float(idx2.numel() == 20 and st2["unfilled"] == 0)
    out["toy_duplicates"] = float(sel[idx].sum() + sel[idx2].sum() + (idx2.numel() - idx2.unique().numel()))
    # (5) kMQ sampler matches p ∝ exp(q): check_draws copies of one 8-item cluster, budget 1 each, drawn
    # by the vectorised sampler itself; chi-square of the picks against softmax(q)
    q = torch.linspace(1.0, 5.0, 8)
    n = cfg.check_draws
    cl = torch.arange(n).repeat_interleave(8)
    picks = M.kmq_select(cl, n, n, q.repeat(n), g, variant=variant) % 8
    out["kmq_chi2_p"] = chi2_gof(picks, torch.softmax(q.double(), 0))
    # (6) k-means is seeded: two runs with the same seed give the same assignment
    x = torch.nn.functional.normalize(torch.randn(200, 16, generator=torch.Generator().manual_seed(5)), dim=-1)
    a1 = M.kmeans(x, 8, niter=20, nredo=2, generator=ctx.generator(7))[0]
    a2 = M.kmeans(x, 8, niter=20, nredo=2, generator=ctx.generator(7))[0]
    out["kmeans_seed_mismatch"] = float((a1 != a2).sum())
    return out

"""One protocol, every selector (issue 18): one procedural instruction pool, one budget k, every
selector of the track choosing from the same pool in the same job, the same tiny causal LM trained
from scratch on each subset for the same steps, exact match and answer NLL on a family-balanced test
set over the good (non-junk) families.

Each selector is the reproduction's own code, called with its own preset at ``cfg.selector_scale``
(the pool's sizes and the budget replaced by the bench's):

- ``mig`` (reproductions/mig): label graph over the pool's tags, greedy gradient-gain maximisation.
- ``kmq``, ``iterative`` (reproductions/diverse_selection): k-means of the instruction embeddings,
  kMQ sampling with p ∝ exp(quality); the iterative loop re-weights clusters each round from the
  trained model's reward differences (its intermediate models are part of its selection cost).
- ``rds_plus`` (reproductions/rds_plus): position-weighted mean pooling of a base LM's hidden states
  (the tiny LM pretrained on the pool's texts), max cosine to dev queries of every good family,
  round-robin across the families.
- ``treesynth`` (reproductions/treesynth): its rebalancing (method.rebalance) of the existing pool
  through the partition by task family, the pool's one attribute dimension (a depth-1 tree: no
  generator builds a tree over this pool).
- ``instag`` (#InsTag's tag-coverage sampler, reproductions/mig), ``quality`` top-k, ``random``.

Cost columns: wall seconds of the selection (embedding, clustering, encoder pretraining and the
iterative loop's intermediate models included) and how many texts it embedded or decoded.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from reproductions.diverse_selection import experiment as DSE
from reproductions.diverse_selection import method as DSM
from reproductions.mig import experiment as MIGE
from reproductions.mig import method as MIGM
from reproductions.rds_plus import experiment as RDSE
from reproductions.rds_plus import method as RDSM
from reproductions.treesynth import method as TSM
from suite import config, registry
from suite.context import RunContext
from suite.data.instructions import DUPLICATE, JUNK, Pool, eval_set, make_pool
from suite.sft import SFTConfig, exact_match, hidden_states, train_sft

SELECTORS = ("mig", "kmq", "iterative", "rds_plus", "treesynth", "instag", "quality", "random")
COLS = ("em", "nll", "family_entropy", "families_covered", "junk_share", "dup_share", "corrupt_rate", "size", "repeats",
        "select_s", "embedded", "sft_s")


def build_pool(cfg: Any, seed: int) -> Pool:
    return make_pool(cfg.n_pool, seed=seed, n_families=cfg.n_families, zipf=cfg.zipf,
                     corrupt_frac=cfg.corrupt_frac, junk_families=cfg.junk_families,
                     near_duplicates=cfg.near_duplicates, quality=(4.0, cfg.q_std, 2.0, cfg.q_std))


def selector_configs(cfg: Any) -> dict[str, Any]:
    """Each paper's own preset at ``cfg.selector_scale``, describing this pool and this budget."""
    pool = {"n_families": cfg.n_families, "zipf": cfg.zipf, "corrupt_frac": cfg.corrupt_frac}
    return {
        "mig": config.resolve(registry.get("mig"), cfg.selector_scale,
                              {**pool, "n_pool": cfg.n_pool, "k": cfg.k}),
        # sft_steps=0: the loop's last model is not trained there; the bench trains every final model
        "diverse_selection": config.resolve(registry.get("diverse_selection"), cfg.selector_scale,
                                            {**pool, "n_pool": cfg.n_pool, "junk_families": cfg.junk_families,
                                             "near_duplicates": cfg.near_duplicates, "q_std": cfg.q_std,
                                             "budget": cfg.k, "sft_steps": 0}),
        "rds_plus": config.resolve(registry.get("rds_plus"), cfg.selector_scale,
                                   {**pool, "pool_size": cfg.n_pool, "n_select": cfg.k, "distractor_frac": 0.0,
                                    "sub_frac": 0.5}),  # its pool-scaling arm is not run here
    }


def subset_row(pool: Pool, idx: torch.Tensor, n_families: int) -> dict[str, float]:
    """What a selection holds, before any training."""
    sub = pool.subset(idx)
    fam = torch.bincount(sub.family.clamp(min=0), minlength=n_families)
    return {"size": float(idx.numel()), "family_entropy": MIGM.entropy_bits(fam),
            "families_covered": float((fam > 0).sum()),
            "junk_share": float((sub.kind == JUNK).float().mean()),
            "dup_share": float((sub.kind == DUPLICATE).float().mean()),
            "corrupt_rate": float((~sub.correct).float().mean())}


class Selections:
    """Runs each selector once on one pool and keeps (indices, seconds, texts embedded or decoded)."""

    def __init__(self, cfg: Any, pool: Pool, ctx: RunContext) -> None:
        self.cfg, self.pool, self.ctx = cfg, pool, ctx
        self.sc = selector_configs(cfg)
        self.good = [f for f in range(cfg.n_families) if f not in pool.junk]
        self._emb: tuple[torch.Tensor, float] | None = None
        self._clusters: tuple[torch.Tensor, float] | None = None

    # shared pieces: charged to every selector that uses them
    def instruction_embeddings(self) -> tuple[torch.Tensor, float]:
        if self._emb is None:
            t0 = time.perf_counter()
            x = DSE.embed_instructions(self.pool.instructions, self.sc["diverse_selection"].embed)
            self._emb = (x.to(self.ctx.device), time.perf_counter() - t0)
        return self._emb

    def clusters(self) -> tuple[torch.Tensor, float]:
        if self._clusters is None:
            x, s = self.instruction_embeddings()
            dc = self.sc["diverse_selection"]
            t0 = time.perf_counter()
            cluster, _, _ = DSM.kmeans(x, dc.k, niter=dc.niter, nredo=dc.nredo, generator=self.ctx.generator(3))
            self._clusters = (cluster, s + time.perf_counter() - t0)
        return self._clusters

    def run(self, name: str) -> tuple[torch.Tensor, float, float]:
        """(indices, seconds, texts embedded or decoded); the seconds include shared pieces it used
        (the instruction embeddings and k-means are charged to kmq and iterative alike)."""
        fn: Callable[[], tuple[torch.Tensor, float, float]] = getattr(self, f"_{name}")
        if name in ("kmq", "iterative"):
            self.clusters()  # computed once outside the timer, its seconds added to each user
        t0 = time.perf_counter()
        idx, embedded, shared_s = fn()
        return idx.cpu(), time.perf_counter() - t0 + shared_s, embedded

    def _random(self) -> tuple[torch.Tensor, float, float]:
        return MIGM.random_select(len(self.pool), self.cfg.k, self.ctx.generator(1)), 0.0, 0.0

    def _quality(self) -> tuple[torch.Tensor, float, float]:
        return MIGM.quality_select(self.pool.quality.to(self.ctx.device), self.cfg.k), 0.0, 0.0

    def _instag(self) -> tuple[torch.Tensor, float, float]:
        labels = {t: j for j, t in enumerate(sorted({t for ts in self.pool.tags for t in ts}))}
        tags = torch.zeros(len(self.pool), len(labels), dtype=torch.bool)
        rows = [i for i, ts in enumerate(self.pool.tags) for _ in ts]
        tags[rows, [labels[t] for ts in self.pool.tags for t in ts]] = True
        return MIGM.instag_select(tags.to(self.ctx.device), self.cfg.k), 0.0, 0.0

    def _mig(self) -> tuple[torch.Tensor, float, float]:
        mc = self.sc["mig"]
        space = MIGE.label_space(self.pool.tags, self.pool.quality, lambda ls: MIGE.label_embeddings(ls, mc.labels),
                                 mc, self.ctx.device)
        idx = MIGM.mig_select(space["u"], self.cfg.k, phi_type=mc.phi_type, a=mc.phi_a, b=mc.phi_b,
                              alpha=mc.phi_alpha, batch_size=mc.batch_size, gain=mc.gain)
        return idx, float(len(space["labels"])), 0.0

    def _kmq(self) -> tuple[torch.Tensor, float, float]:
        cluster, shared_s = self.clusters()
        dc = self.sc["diverse_selection"]
        idx = DSM.kmq_select(cluster, dc.k, self.cfg.k, self.pool.quality.to(self.ctx.device), self.ctx.generator(21))
        return idx, float(len(self.pool)), shared_s

    def _iterative(self) -> tuple[torch.Tensor, float, float]:
        cluster, shared_s = self.clusters()
        stats, idx = DSE.iterative(self.sc["diverse_selection"], self.pool, cluster, self.ctx, None, "correct")
        return idx, float(len(self.pool) + stats["iterative_queries"]), shared_s

    def _treesynth(self) -> tuple[torch.Tensor, float, float]:
        owner = self.pool.family.clamp(min=0)
        return TSM.rebalance(owner, self.cfg.n_families, self.cfg.k, self.ctx.generator(41)), 0.0, 0.0

    def _rds_plus(self) -> tuple[torch.Tensor, float, float]:
        rc = self.sc["rds_plus"]
        texts = self.pool.texts()
        queries = eval_set(self.good, per_family=rc.queries_per_task, seed=self.ctx.seed * 10 + 1)
        enc, _ = train_sft(texts, None, RDSE.encoder_config(rc), device=self.ctx.device, seed=self.ctx.seed,
                           ctx=self.ctx, name="rds-encoder")
        h, mask = hidden_states(enc, texts, device=self.ctx.device)
        hq, maskq = hidden_states(enc, queries.texts(), device=self.ctx.device)
        pe, qe = RDSM.pool_hidden(h, mask), RDSM.pool_hidden(hq, maskq)
        per_task = [qe[queries.family.to(qe.device) == f] for f in self.good]
        idx = RDSM.select(per_task, pe, self.cfg.k, rc.aggregation, rc.rr_skip)
        return idx, float(len(texts) + len(queries)), 0.0


def protocol(cfg: Any, ctx: RunContext) -> dict[str, float]:
    pool = build_pool(cfg, ctx.seed)
    sel = Selections(cfg, pool, ctx)
    test = eval_set(sel.good, per_family=cfg.eval_per_family, seed=ctx.seed)
    sft = SFTConfig(dim=cfg.sft_dim, depth=cfg.sft_depth, heads=cfg.sft_heads, steps=cfg.sft_steps,
                    batch=cfg.sft_batch, lr=cfg.sft_lr, warmup=min(20, cfg.sft_steps))
    ctx.log("selection_bench: pool %d (%d junk families), k=%d, selectors %s", len(pool), len(pool.junk), cfg.k,
            cfg.selectors)
    out: dict[str, float] = {"pool_junk_share": float((pool.kind == JUNK).float().mean()),
                             "pool_corrupt_rate": float((~pool.correct).float().mean())}
    for name in cfg.selectors:
        idx, secs, embedded = sel.run(name)
        row = subset_row(pool, idx, cfg.n_families)
        row.update(select_s=secs, embedded=embedded,
                   over_budget=float(idx.numel() - cfg.k), repeats=float(idx.numel() - idx.unique().numel()))
        if cfg.sft_steps > 0:
            sub = pool.subset(idx)
            model, cost = train_sft(sub.instructions, sub.answers, sft, device=ctx.device, seed=ctx.seed, ctx=ctx,
                                    name=f"sft-{name}")
            row["em"] = float(exact_match(model, test.instructions, test.answers, device=ctx.device))
            row["nll"] = DSE.answer_nll(model, test, ctx)
            row["sft_steps"], row["sft_s"] = cost["steps"], cost["seconds"]
        ctx.log("selection_bench: %s %s", name, {k: round(v, 4) for k, v in row.items()})
        out.update({f"{name}_{k}": v for k, v in row.items()})
    out["max_over_budget"] = max(out[f"{n}_over_budget"] for n in cfg.selectors)
    if cfg.sft_steps > 0:
        steps = [out[f"{n}_sft_steps"] for n in cfg.selectors]
        out["sft_steps_spread"] = max(steps) - min(steps)
    return out

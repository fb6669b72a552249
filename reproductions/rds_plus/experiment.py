"""The CPU protocol (spec §6): a procedural instruction pool, three target families with 16 query
examples each, every selector choosing n items round-robin over the three tasks, and a copy of the
base LM (``sft_init="encoder"``, spec §3) fine-tuned on each selection (equal n, equal steps) and scored
by exact match on held-out items of the target families.

Arms (spec §6 "Compare"): ``rds_plus`` (position-weighted mean of the encoder's final hidden states),
``mean`` (plain mean pooling), ``last`` (last token), ``minilm`` (all-MiniLM-L6-v2 sentence embedding,
only with ``cfg.minilm``), ``random``, and ``rds_plus_sub`` (RDS+ restricted to a random subsample of
the pool, same n: the pool-scaling comparison of spec §6 (2), claim C2).
The encoder is the shared tiny causal LM pretrained on the pool's unlabeled texts (``loss_on="all"``):
the "base model" whose representations RDS+ reads (spec §3 "Model").
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch

from suite.context import RunContext
from suite.data.instructions import eval_set, make_pool
from suite.sft import SFTConfig, exact_match, hidden_states, train_sft

from . import method as M

ARMS = ("rds_plus", "mean", "last", "minilm", "random", "rds_plus_sub")
POOLING = {"rds_plus": "weighted_mean", "mean": "mean", "last": "last"}
COLS = ("precision", "em", "encode_s", "select_s", "sft_steps", "sft_s")


def encoder_config(cfg: Any) -> SFTConfig:
    return SFTConfig(dim=cfg.enc_dim, depth=cfg.enc_depth, heads=cfg.enc_heads, max_len=cfg.max_len,
                     steps=cfg.enc_steps, batch=cfg.enc_batch, lr=cfg.enc_lr, warmup=min(20, cfg.enc_steps),
                     loss_on="all")


def sft_config(cfg: Any) -> SFTConfig:
    return SFTConfig(dim=cfg.sft_dim, depth=cfg.sft_depth, heads=cfg.sft_heads, max_len=cfg.max_len,
                     steps=cfg.sft_steps, batch=cfg.sft_batch, lr=cfg.sft_lr, warmup=min(20, cfg.sft_steps))


def mechanics(h: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Check metrics on the run's own hidden states (spec §6 smoke list)."""
    w = M.position_weights(mask, "weighted_mean")
    length = mask.sum(1)
    sums_err = float((w.sum(1) - 1).abs().max())
    # w_t / t constant over a row's real tokens (weights proportional to position)
    t = mask.float().cumsum(1)
    ratio = torch.where(mask, w / t.clamp(min=1), torch.nan)
    prop_err = float((ratio.nan_to_num(0).amax(1) - torch.where(mask, ratio, torch.inf).amin(1)).abs().max())
    e = M.pool_hidden(h, mask)
    norm_err = float((e.norm(dim=1) - 1).abs().max())
    k = min(16, h.shape[0])
    single = torch.stack([M.weighted_mean_single(h[i, :int(length[i])]) for i in range(k)])
    pad_err = float((M.pool_hidden(h[:k], mask[:k], normalize=False) - single).abs().max())
    one = M.pool_hidden(h[:k, :1], torch.ones(k, 1, dtype=torch.bool), normalize=False)
    l1_err = float((one - h[:k, 0]).abs().max())
    return {"check_weight_sum_err": sums_err, "check_weight_prop_err": prop_err, "check_unit_norm_err": norm_err,
            "check_padded_vs_single_err": pad_err, "check_len1_err": l1_err}


def run_small(cfg: Any, ctx: RunContext) -> tuple[dict[str, float], Any]:
    m: dict[str, float] = {}
    pool = make_pool(cfg.pool_size, seed=ctx.seed, n_families=cfg.n_families, zipf=cfg.zipf,
                     corrupt_frac=cfg.corrupt_frac, distractor_frac=cfg.distractor_frac)
    targets = list(cfg.targets)
    # the target tasks' query examples (spec §6: 16 per family) and a disjoint-stream test set
    queries = eval_set(targets, per_family=cfg.queries_per_task, seed=ctx.seed * 10 + 1)
    test = eval_set(targets, per_family=cfg.test_per_family, seed=ctx.seed * 10 + 2)
    texts = pool.texts()
    qtexts = queries.texts()
    qfam = queries.family
    tmask = torch.isin(pool.family, torch.tensor(targets))
    m["pool_target_frac"] = float(tmask.float().mean())
    m["pool_size"] = float(len(pool))
    for f in targets:
        m[f"pool_count/{pool.family_names[f]}"] = float((pool.family == f).sum())

    # the base model: the tiny causal LM pretrained on the pool's unlabeled texts (spec §6 "Encoder")
    enc, enc_cost = train_sft(texts, None, encoder_config(cfg), device=ctx.device, seed=ctx.seed, ctx=ctx,
                              name="encoder")
    m["encoder_steps"], m["encoder_s"] = enc_cost["steps"], enc_cost["seconds"]
    if ctx.dry_run:
        return m, pool.ref

    # one forward pass per pool item (spec §2 C3): the index, shared by the three pooling arms
    t0 = time.perf_counter()
    h, mask = hidden_states(enc, texts, device=ctx.device)
    hq, maskq = hidden_states(enc, qtexts, device=ctx.device)
    forward_s = time.perf_counter() - t0
    m.update(mechanics(h, mask))

    sub = M.random_selection(len(pool), int(round(cfg.sub_frac * len(pool))), ctx.generator(11))
    sub = torch.sort(sub).values
    selections: dict[str, torch.Tensor] = {}
    cost: dict[str, tuple[float, float]] = {}
    negate = cfg.variant == "negated"

    def choose(pool_emb: torch.Tensor, q_emb: torch.Tensor, neg: bool) -> torch.Tensor:
        per_task = [q_emb[qfam == f] for f in targets]
        return M.select(per_task, pool_emb, cfg.n_select, cfg.aggregation, cfg.rr_skip, negate=neg)

    arms = [a for a in cfg.arms if a != "minilm" or cfg.minilm]
    for arm in arms:
        if arm in POOLING or arm == "rds_plus_sub":
            pooling = POOLING.get(arm, "weighted_mean")
            if arm in ("rds_plus", "rds_plus_sub") and cfg.variant == "reversed":
                pooling = "reversed"  # TEETH: weights (L - t + 1) instead of t
            t0 = time.perf_counter()
            pe, qe = M.pool_hidden(h, mask, pooling), M.pool_hidden(hq, maskq, pooling)
            enc_s = forward_s + time.perf_counter() - t0
            neg = negate and arm in ("rds_plus", "rds_plus_sub")  # TEETH: the method under test, not the baselines
            t0 = time.perf_counter()
            idx = choose(pe, qe, neg) if arm != "rds_plus_sub" else sub[choose(pe[sub], qe, neg)]
            cost[arm] = (enc_s, time.perf_counter() - t0)
        elif arm == "minilm":
            from suite.data import embed as E  # [embed] extra: never imported at smoke

            t0 = time.perf_counter()
            pe, qe = E.embed(texts, cache=False), E.embed(qtexts, cache=False)
            enc_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            idx = choose(pe, qe, False)
            cost[arm] = (enc_s, time.perf_counter() - t0)
        else:  # random at equal budget
            t0 = time.perf_counter()
            idx = M.random_selection(len(pool), cfg.n_select, ctx.generator(12))
            cost[arm] = (0.0, time.perf_counter() - t0)
        selections[arm] = idx
        m[f"n_unique/{arm}"] = float(idx.unique().numel())

    scfg = sft_config(cfg)
    for arm, idx in selections.items():
        il = idx.tolist()
        m[f"precision/{arm}"] = float(tmask[idx].float().mean())
        for f in targets:
            m[f"selected/{arm}/{pool.family_names[f]}"] = float((pool.family[idx] == f).sum())
        # spec §3: fine-tune the base model whose representations selected the data (a copy per arm)
        init = copy.deepcopy(enc) if cfg.sft_init == "encoder" else None
        model, c = train_sft([pool.instructions[i] for i in il], [pool.answers[i] for i in il], scfg,
                             device=ctx.device, seed=ctx.seed + 1, init=init, ctx=ctx, name=f"sft-{arm}")
        hits = exact_match(model, test.instructions, test.gold, device=ctx.device, per_item=True)
        m[f"em/{arm}"] = float(hits.float().mean())
        for f in targets:
            m[f"em/{arm}/{pool.family_names[f]}"] = float(hits[test.family == f].float().mean())
        m[f"encode_s/{arm}"], m[f"select_s/{arm}"] = cost[arm]
        m[f"sft_steps/{arm}"], m[f"sft_s/{arm}"] = c["steps"], c["seconds"]
        ctx.log("rds_plus: %s precision %.3f em %.3f", arm, m[f"precision/{arm}"], m[f"em/{arm}"])

    # derived quantities of the claims (method vs baseline, same run)
    m["precision_gain_vs_random"] = m["precision/rds_plus"] - m["precision/random"]
    m["em_gain_vs_random"] = m["em/rds_plus"] - m["em/random"]
    if "rds_plus_sub" in selections:
        m["em_gain_full_vs_sub"] = m["em/rds_plus"] - m["em/rds_plus_sub"]
        m["precision_gain_full_vs_sub"] = m["precision/rds_plus"] - m["precision/rds_plus_sub"]
    if "minilm" in selections:
        m["em_gain_vs_minilm"] = m["em/rds_plus"] - m["em/minilm"]
        m["precision_gain_vs_minilm"] = m["precision/rds_plus"] - m["precision/minilm"]
    for b in ("mean", "last"):
        if b in selections:
            m[f"precision_gain_vs_{b}"] = m["precision/rds_plus"] - m[f"precision/{b}"]
            m[f"em_gain_vs_{b}"] = m["em/rds_plus"] - m[f"em/{b}"]
    m["rr_duplicates"] = float(sum(cfg.n_select - m[f"n_unique/{a}"] for a in selections))
    return m, pool.ref

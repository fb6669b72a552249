"""One run's metrics: mechanism checks on constructed inputs, the pointer task (train at lambda_train, dial
at lambda_eval without retraining, spec §6), recruitment on a domain stream (spec §6), and at full scale
the WikiText LM sweep (spec §5)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from suite.context import RunContext
from suite.spec import curve_metrics
from suite.train import TrainConfig, fit

from . import method as M
from .recruit import Recruiter, bic_threshold, decide, decide_bits, make_domains, n_params, sample_streams
from .tasks import PointerTask, fixed_blocks, sentence_blocks


def lam_key(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------ mechanism checks (spec §6 smoke)

def mechanism_metrics(cfg: Any, variant: str) -> dict[str, float]:
    """Checks on constructed inputs with known answers; they run the real code paths."""
    g = torch.Generator().manual_seed(12345)
    out: dict[str, float] = {}
    b, h, t, dh, k = 3, 2, 12, 8, 3
    q, kk, v = (torch.randn(b, h, t, dh, generator=g, dtype=torch.float64) for _ in range(3))
    blk = torch.randint(k, (b, t), generator=g)
    target = blk.clone()
    outside = M.outside_mask(blk, target)
    # (1) dial at 0 (tau0 = 1) is standard causal softmax attention, exactly
    ours, _ = M.localist_attention(q, kk, v, outside, 0.0, cfg.margin, 1.0, True, variant)
    ref = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
    out["dial0_max_abs_diff"] = float((ours - ref).abs().max())
    # (2) hard block mask (lambda = 1, M = inf): off-block mass exactly 0 (spec §6: < 1e-6)
    _, a_hard = M.localist_attention(q, kk, v, outside, 1.0, math.inf, cfg.tau0, False, variant)
    out["hardmask_offblock_constructed"] = float((a_hard * outside[:, None]).sum(-1).max())
    # (3) C2 bound: off-block mass <= (n_off/n_in) exp(-(lam M - logit gap)), for every lam on a grid
    scores = q @ kk.transpose(-1, -2) / math.sqrt(dh)
    worst = -math.inf
    for lam in (0.25, 0.5, 0.75, 1.0):
        _, a = M.localist_attention(q, kk, v, outside, lam, cfg.margin, cfg.tau0, False, variant)
        off = (a * outside[:, None]).sum(-1)
        bound = M.offblock_bound(scores, outside[:, None], lam, cfg.margin, cfg.tau0)
        worst = max(worst, float((off - bound).max()))
    out["offblock_bound_excess"] = worst
    # (4) penalty gradient: autograd vs the closed form; penalty of a map inside its block is sqrt(eps) terms
    alpha = torch.softmax(torch.randn(b, h, t, t, generator=g, dtype=torch.float64), -1).requires_grad_(True)
    r = M.group_penalty(alpha, blk, target, k, cfg.penalty_eps)
    r.sum().backward()
    closed = M.group_penalty_grad(alpha.detach(), blk, target, k, cfg.penalty_eps)
    out["penalty_grad_err"] = float((alpha.grad - closed).abs().max())
    inside_map = (~outside[:, None]).double().expand(b, h, t, t)
    inside_map = inside_map / inside_map.sum(-1, keepdim=True)
    r_in = M.group_penalty(inside_map, blk, target, k, 0.0)
    out["penalty_inside_map"] = float(r_in.abs().max())
    # (5) metrics on constructed maps: uniform over n -> log2 n bits, one-hot -> 0, known fidelity
    n = 16
    uni = torch.full((n,), 1.0 / n, dtype=torch.float64)
    one = F.one_hot(torch.tensor(5), n).double()
    ins = torch.arange(n) < 4
    errs = [abs(float(M.entropy_bits(uni)) - math.log2(n)), abs(float(M.entropy_bits(one))),
            abs(float(M.fidelity(uni, ins)) - 4 / n), abs(float(M.fidelity(one, ins))),
            abs(float(M.hit_rate(one[None], ins[None])) - 0.0), abs(float(M.hit_rate(uni[None], ins[None])) - 1.0)]
    out["metric_formula_err"] = max(errs)
    # (6) recruitment criterion on constructed numbers: just below / above (p/2) ln n; nats == bits
    wrong = 0
    for p, nn_ in ((15, 1000), (240, 1000), (255, 20000)):
        thr = bic_threshold(p, nn_)
        for delta, want in ((0.0, False), (thr * 0.999, False), (thr * 1.001, True), (10 * thr, True)):
            wrong += decide(delta, p, nn_, variant) != want
            wrong += decide_bits(delta, p, nn_) != want
    out["bic_decision_errors"] = float(wrong)
    return out


# ------------------------------------------------------------------ pointer task (spec §6)

def train_pointer(cfg: Any, task: PointerTask, lam: float, gamma: float, ctx: RunContext, name: str,
                  variant: str) -> M.LocalistLM:
    base = ctx.seed * 7919 + 17

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return task.sample(cfg.batch_size, torch.Generator().manual_seed(base * 100_003 + step))

    def loss_fn(m: M.LocalistLM, bt: tuple[torch.Tensor, ...]) -> torch.Tensor:
        tokens, blk, ans = bt
        logits, alphas = m(tokens, blk, blk, lam, cfg.margin, cfg.tau0, variant, last_only=True)
        loss, _ = M.localist_loss(F.cross_entropy(logits, ans), alphas, blk, blk, task.n_blocks, lam, gamma,
                                  cfg.penalty_eps, variant)
        return loss

    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, optimizer="adamw",
                     weight_decay=cfg.weight_decay, schedule="constant", warmup_steps=min(50, cfg.steps // 10),
                     grad_clip=1.0, log_every=max(cfg.steps // 5, 1), checkpoint_every=cfg.checkpoint_every)
    torch.manual_seed(ctx.seed * 31 + int(lam * 1000) + (0 if gamma else 7))
    model = M.LocalistLM(task.vocab, task.seq_len, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio,
                         n_anchors=task.n_blocks if cfg.anchor_codes == "orthogonal" else 0,
                         anchor_seed=ctx.seed)
    if ctx.dry_run:  # build everything, one forward/backward on two sequences
        tokens, blk, ans = batch(0)
        loss_fn(model, (tokens[:2], blk[:2], ans[:2])).backward()
    else:
        fit(model, loss_fn, batch, tc, ctx=ctx, name=name)
    return model


@torch.no_grad()
def eval_pointer(model: M.LocalistLM, data: tuple[torch.Tensor, ...], lam: float, margin: float, cfg: Any,
                 variant: str, chunk: int = 250) -> dict[str, float]:
    model.eval()
    tokens, blk, ans = data
    sums: dict[str, float] = {}
    n = tokens.shape[0]
    dev = next(model.parameters()).device  # the split stays on the host; each chunk goes to the model
    for s in range(0, n, chunk):
        tb, bb, ab = (t[s:s + chunk].to(dev) for t in (tokens, blk, ans))
        logits, alphas = model(tb, bb, bb, lam, margin, cfg.tau0, variant, last_only=True)
        st = M.attention_stats(alphas, bb, bb, query_pos=tb.shape[1] - 1)
        st["acc"] = float((logits.argmax(-1) == ab).float().mean())
        st["nll"] = float(F.cross_entropy(logits, ab))
        st["penalty"] = float(torch.stack([M.group_penalty(a, bb, bb, int(bb.max()) + 1, cfg.penalty_eps).mean()
                                           for a in alphas]).mean())
        w = tb.shape[0] / n
        for key, val in st.items():
            sums[key] = sums.get(key, 0.0) + w * val
    model.train()
    return sums


def pointer_metrics(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    task = PointerTask(cfg.n_blocks, cfg.n_pairs, cfg.n_keys, cfg.n_values)
    data = task.sample(cfg.n_eval, ctx.generator(4242))
    runs: list[tuple[str, float, float]] = [(f"lt{lam_key(l)}", l, cfg.gamma) for l in cfg.lambda_train]
    if cfg.penalty_ablation:
        runs.append(("nopen", cfg.dial_lambda, 0.0))
    grid: dict[tuple[str, float], dict[str, float]] = {}
    models = {}
    for name, lam, gamma in runs:
        models[name] = train_pointer(cfg, task, lam, gamma, ctx, name, variant)
        if ctx.dry_run:
            continue
        evals = cfg.lambda_eval if name == f"lt{lam_key(cfg.dial_lambda)}" else (lam,)
        for le in sorted(set(evals) | {lam}):
            grid[(name, le)] = eval_pointer(models[name], data, le, cfg.margin, cfg, variant)
    if ctx.dry_run:
        return {}
    out: dict[str, float] = {}
    for (name, le), st in grid.items():
        for key, val in st.items():
            out[f"{key}/{name}/{lam_key(le)}"] = val
    # the dial: one model (trained at dial_lambda) evaluated along lambda_eval without retraining (C1)
    dial = f"lt{lam_key(cfg.dial_lambda)}"
    xs = sorted(cfg.lambda_eval)
    ent = [grid[(dial, x)]["entropy"] for x in xs]
    fid = [grid[(dial, x)]["fidelity"] for x in xs]
    out.update(curve_metrics("dial_entropy", "lambda_eval", [lam_key(x) for x in xs], ent))
    out.update(curve_metrics("dial_fidelity", "lambda_eval", [lam_key(x) for x in xs], fid))
    out.update(curve_metrics("dial_acc", "lambda_eval", [lam_key(x) for x in xs],
                             [grid[(dial, x)]["acc"] for x in xs]))
    out.update(curve_metrics("dial_nll", "lambda_eval", [lam_key(x) for x in xs],
                             [grid[(dial, x)]["nll"] for x in xs]))
    out["dial_entropy_drop"] = ent[0] - ent[-1]
    out["dial_fidelity_gain"] = fid[-1] - fid[0]
    steps = [max(ent[i + 1] - ent[i], fid[i] - fid[i + 1]) for i in range(len(xs) - 1)]
    out["dial_monotone_violation"] = max(0.0, max(steps)) if steps else 0.0
    out["dial_entropy_at_0"], out["dial_entropy_at_1"] = ent[0], ent[-1]
    # the diagonal: each model at its own training lambda (the companion paper's sweep)
    lts = sorted(cfg.lambda_train)
    if 0.0 in lts and 1.0 in lts:
        loc, dist = grid[("lt1", 1.0)], grid[("lt0", 0.0)]
        out["fidelity_localist"] = loc["fidelity"]
        out["query_fidelity_localist"] = loc["query_fidelity"]
        out["acc_localist"], out["acc_distributed"] = loc["acc"], dist["acc"]
        out["acc_gain_localist"] = loc["acc"] - dist["acc"]
        out["entropy_localist"], out["entropy_distributed"] = loc["entropy"], dist["entropy"]
        # hard block masking baseline (spec §4): the localist model with M = inf
        hard = eval_pointer(models["lt1"], data, 1.0, math.inf, cfg, variant)
        out["hardmask_offblock"] = 1.0 - hard["fidelity"]
        out["hardmask_acc"] = hard["acc"]
    # the group-sparsity penalty vs the same lambda_train without it (same seed and data order)
    if cfg.penalty_ablation:
        le = cfg.dial_lambda
        pen, nopen = grid[(dial, le)], grid[("nopen", le)]
        out["penalty_fidelity_gain"] = pen["fidelity"] - nopen["fidelity"]
        out["penalty_entropy_drop"] = nopen["entropy"] - pen["entropy"]
        out["penalty_R_ratio"] = pen["penalty"] / max(nopen["penalty"], 1e-12)
    return out


# ------------------------------------------------------------------ recruitment (spec §6 / §5)

def recruitment_stream(cfg: Any, ctx: RunContext, variant: str,
                       text: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Blocks for the first ``rec_known`` domains fitted on warm-up data; then the stream: every domain in
    turn (``rec_batches`` batches each, the known ones first), then the first domain again. Counts
    recruitments on known domains (false) and the delay to the first recruitment on each new domain."""
    gen = ctx.generator(777)
    if text is None:
        n_dom = cfg.rec_domains
        trans = make_domains(n_dom, cfg.rec_vocab, cfg.rec_concentration, cfg.rec_domain_seed)
        need = cfg.rec_init_tokens + (cfg.rec_batches + 1) * cfg.rec_batch_tokens

        streams = list(sample_streams(trans, torch.arange(n_dom), need, gen))
        vocab = cfg.rec_vocab
    else:
        n_dom, vocab, streams = len(text), 256, text
    rec = Recruiter(vocab, cfg.rec_kind, cfg.rec_prior, variant)
    for d in range(cfg.rec_known):
        rec.add_block(streams[d][:cfg.rec_init_tokens])
    order = [d for d in range(n_dom) for _ in range(cfg.rec_batches)] + [0] * cfg.rec_batches
    pos = {d: cfg.rec_init_tokens if d < cfg.rec_known else 0 for d in range(n_dom)}
    false_rec, novel_batches, first_seen = 0, 0, {}
    delays: list[float] = []
    recruited_for: set[int] = set()
    deltas_known, deltas_new = [], []
    for d in order:
        s = streams[d]
        start = pos[d] % max(1, len(s) - cfg.rec_batch_tokens)
        x = s[start:start + cfg.rec_batch_tokens]
        pos[d] = start + cfg.rec_batch_tokens
        first_seen.setdefault(d, 0)
        first_seen[d] += 1
        res = rec.step(x)
        novel = d >= cfg.rec_known and d not in recruited_for
        (deltas_new if novel else deltas_known).append(res["delta"] / res["threshold"])
        if res["recruited"]:
            if novel:
                recruited_for.add(d)
                delays.append(float(first_seen[d]))
            else:
                false_rec += 1
        if novel:
            novel_batches += 1
    n_new = n_dom - cfg.rec_known
    missed = n_new - len(recruited_for)
    known_batches = len(order) - novel_batches
    return {
        "rec_false_recruits": float(false_rec),
        "rec_false_recruit_rate": false_rec / max(1, known_batches),
        "rec_new_detected": float(len(recruited_for)),
        "rec_new_missed": float(missed),
        # batches of a new domain seen before its block was recruited (rec_batches + 1 when never)
        "rec_delay_max": max(delays + [float(cfg.rec_batches + 1)] * missed) if n_new else 0.0,
        "rec_final_blocks": float(len(rec.blocks)),
        "rec_blocks_minus_domains": float(len(rec.blocks) - n_dom),
        "rec_p_block": float(n_params(vocab, cfg.rec_kind)),
        "rec_delta_over_threshold_known_max": max(deltas_known) if deltas_known else 0.0,
        "rec_delta_over_threshold_new_min": min(deltas_new) if deltas_new else 0.0,
    }


# ------------------------------------------------------------------ WikiText LM sweep (spec §5)

def text_blocks(cfg: Any, windows: torch.Tensor) -> torch.Tensor:
    return sentence_blocks(windows) if cfg.text_blocks == "sentence" else fixed_blocks(windows, cfg.block_size)


def wikitext_metrics(cfg: Any, streams: dict[str, torch.Tensor], ctx: RunContext, variant: str) -> dict[str, float]:
    dev = torch.device(ctx.device)
    T = cfg.context
    train, test = streams["train"], streams["test"]
    n_win = max(1, min(cfg.eval_tokens, len(test) - 1) // T)
    test_w = test[: n_win * T + 1]
    ev_x = test_w[:-1].view(n_win, T)
    ev_y = test_w[1:].view(n_win, T)
    base = ctx.seed * 1_000_003 + 99

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(base + step)
        starts = torch.randint(0, max(1, len(train) - T - 1), (cfg.lm_batch_size,), generator=g)
        idx = starts[:, None] + torch.arange(T + 1)
        w = train[idx.clamp(max=len(train) - 1)]
        return w[:, :-1], w[:, 1:]

    out: dict[str, float] = {}
    table: dict[tuple[float, float], dict[str, float]] = {}
    for lam in cfg.lm_lambda_train:
        model = M.LocalistLM(256, T, cfg.lm_dim, cfg.lm_depth, cfg.lm_heads, cfg.lm_mlp_ratio)

        def loss_fn(m: M.LocalistLM, bt: tuple[torch.Tensor, torch.Tensor], lam: float = lam) -> torch.Tensor:
            x, y = bt
            blk = text_blocks(cfg, x)
            logits, alphas = m(x, blk, blk, lam, cfg.margin, cfg.tau0, variant)
            nll = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
            loss, _ = M.localist_loss(nll, alphas, blk, blk, int(blk.max()) + 1, lam, cfg.gamma, cfg.penalty_eps,
                                      variant)
            return loss

        tc = TrainConfig(steps=cfg.lm_steps, batch_size=cfg.lm_batch_size, lr=cfg.lm_lr, optimizer="adamw",
                         weight_decay=0.1, schedule="linear_warmup_cosine", warmup_steps=min(500, cfg.lm_steps // 10),
                         grad_clip=1.0, log_every=max(cfg.lm_steps // 20, 1), checkpoint_every=cfg.checkpoint_every)
        if ctx.dry_run:
            x, y = batch(0)
            loss_fn(model, (x[:2], y[:2])).backward()
            continue
        fit(model, loss_fn, batch, tc, ctx=ctx, name=f"wt-lt{lam_key(lam)}", device=dev)
        evals = cfg.lm_lambda_eval if lam == cfg.lm_dial_lambda else (lam,)
        model.eval()
        for le in sorted(set(evals) | {lam}):
            acc_sum: dict[str, float] = {}
            with torch.no_grad():
                for s in range(0, n_win, cfg.lm_eval_chunk):
                    x, y = ev_x[s:s + cfg.lm_eval_chunk].to(dev), ev_y[s:s + cfg.lm_eval_chunk].to(dev)
                    blk = text_blocks(cfg, x)
                    logits, alphas = model(x, blk, blk, le, cfg.margin, cfg.tau0, variant)
                    st = M.attention_stats(alphas, blk, blk)
                    st["nll"] = float(F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)))
                    st["acc"] = float((logits.argmax(-1) == y).float().mean())
                    wgt = x.shape[0] / n_win
                    for key, val in st.items():
                        acc_sum[key] = acc_sum.get(key, 0.0) + wgt * val
            acc_sum["ppl"] = math.exp(acc_sum["nll"])
            table[(lam, le)] = acc_sum
            for key, val in acc_sum.items():
                out[f"wt_{key}/lt{lam_key(lam)}/{lam_key(le)}"] = val
    if ctx.dry_run:
        return {}
    xs = sorted(cfg.lm_lambda_eval)
    ent = [table[(cfg.lm_dial_lambda, x)]["entropy"] for x in xs]
    fid = [table[(cfg.lm_dial_lambda, x)]["fidelity"] for x in xs]
    out["wt_dial_entropy_drop"] = ent[0] - ent[-1]
    out["wt_dial_fidelity_gain"] = fid[-1] - fid[0]
    lts = sorted(cfg.lm_lambda_train)
    ppl = {l: table[(l, l)]["ppl"] for l in lts}
    out.update(curve_metrics("wt_ppl", "lambda", [lam_key(l) for l in lts], [ppl[l] for l in lts]))
    out.update(curve_metrics("wt_entropy", "lambda", [lam_key(l) for l in lts], [table[(l, l)]["entropy"] for l in lts]))
    mid = [ppl[l] for l in lts if 0.0 < l < 1.0]
    if mid and 0.0 in ppl and 1.0 in ppl:
        out["wt_ppl_best_intermediate"] = min(mid)
        out["wt_ppl_intermediate_gain"] = min(ppl[0.0], ppl[1.0]) - min(mid)
        out["wt_entropy_localist"] = table[(1.0, 1.0)]["entropy"]
        out["wt_entropy_distributed"] = table[(0.0, 0.0)]["entropy"]
        out["wt_entropy_drop_diagonal"] = out["wt_entropy_distributed"] - out["wt_entropy_localist"]
    return out

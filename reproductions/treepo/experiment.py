"""CPU protocol (spec §6): scripted-stub mechanics checks, SFT warm-up of a tiny causal transformer on
50 %-correct demonstrations, then RL arms trained from the same warm-up with the same PPO update and
the same number of leaves per prompt: TreePO (tree rollout + tree advantage) vs GRPO (independent
samples + group-normalised advantage); optional root-only advantage ablation (C3)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from suite import distributed as D
from suite.context import RunContext
from suite.errors import UnknownNameError
from suite.models.tokenizer import Tokenizer, pad_sequences
from suite.models.transformer import TransformerLM
from suite.rl import accumulate_step, micro_batches, microbatch_logprobs, token_logprobs
from suite.train import TrainConfig, fit

from . import task as T
from .method import (FINISHED, LMSampler, Path, Rollout, TreeConfig, group_baseline, node_token_sum,
                     overlong_penalty, ppo_loss, tree_advantage, tree_is_valid, tree_rollout, whiten)

# arm -> (rollout, advantage): the method, the paper's baseline, and the C3 ablation
ARMS = {"treepo": ("tree", "tree"), "grpo": ("independent", "grpo"), "treepo_root": ("tree", "root")}


@dataclass
class RLSetup:
    pad_id: int
    tree: TreeConfig
    prompts_per_step: int
    updates: int
    minibatches: int
    lr: float
    weight_decay: float
    grad_clip: float
    clip_low: float
    clip_high: float
    clip_c: float
    overlong_buffer: int
    filter_uniform: bool
    eval_every: int
    eval_samples: int
    variant: str = "paper"
    # DAPO dynamic sampling (recipe/dapo/dapo_ray_trainer.py): prompts per generation batch (official
    # gen_batch_size = 3 · train_prompt_bsz) and at most this many generation batches per update
    # (algorithm.filter_groups.max_num_gen_batches; <= 0: no limit)
    gen_prompts: int = 0  # 0: = prompts_per_step
    max_gen_batches: int = 1
    # verl use_dynamic_bsz: at most this many padded tokens per forward/backward of the update and of the
    # old-log-prob pass (actor.ppo_max_token_len_per_gpu, log_prob_max_token_len_per_gpu); 0: one pass per
    # mini-batch (smoke and small, whose mini-batches are small)
    micro_tokens: int = 0


# --------------------------------------------------------------------------- encoding

def encode_prompts(tok: Tokenizer, probs: list[T.Problem]) -> list[list[int]]:
    return [tok.encode(p.prompt, bos=True) for p in probs]


def rewards(tok: Tokenizer, ro: Rollout, probs: list[T.Problem], setup: RLSetup) -> tuple[np.ndarray, np.ndarray]:
    """(correct, reward): correct = FINISHED (box + EOS) with the right boxed answer; reward adds the
    DAPO overlong penalty (§3)."""
    correct = np.array([float(p.status == FINISHED and T.boxed_answer(tok.decode(p.response)) == probs[p.prompt].answer)
                        for p in ro.leaves])
    lens = np.array([len(p.response) for p in ro.leaves])
    return correct, correct + overlong_penalty(lens, setup.tree.max_response, setup.overlong_buffer)


def batch_tensors(pad_id: int, prompts: list[list[int]], ro: Rollout) -> tuple[torch.Tensor, ...]:
    """Right-padded (prompt + response) tokens, key mask and the response mask aligned to the
    (T−1) next-token positions of :func:`suite.rl.token_logprobs` (logits[:, :-1] against tokens[:, 1:])."""
    seqs = [prompts[p.prompt] + p.response for p in ro.leaves]
    plen = torch.tensor([len(prompts[p.prompt]) for p in ro.leaves])
    lens = torch.tensor([len(s) for s in seqs])
    L = int(lens.max())
    toks = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    cols = torch.arange(L)[None]
    km = cols < lens[:, None]
    toks[km] = torch.tensor([t for s in seqs for t in s])
    c = torch.arange(L - 1)[None]
    rm = (c >= plen[:, None] - 1) & (c < lens[:, None] - 1)
    return toks, km, rm


def advantages(kind: str, ro: Rollout, r: np.ndarray, rm: torch.Tensor, variant: str) -> torch.Tensor:
    """Per-token advantages (B, T−1). ``tree``: depth-averaged tree baseline then batch whitening;
    ``root``: root-only (= REINFORCE++ baseline) then whitening; ``grpo``: (r − mean)/std per prompt."""
    if kind == "grpo":
        a = group_baseline(np.array([p.prompt for p in ro.leaves]), r, std_norm=True)
        return torch.tensor(a, dtype=torch.float32)[:, None] * rm.float()
    a = tree_advantage([p.index for p in ro.leaves], r, root_only=kind == "root")
    if variant == "flip-adv":  # TEST-ONLY broken variant: ascend the wrong way
        a = -a
    return whiten(torch.tensor(a, dtype=torch.float32)[:, None].expand_as(rm), rm)


# --------------------------------------------------------------------------- micro-batched update

def _groups(km: torch.Tensor, budget: int) -> tuple[list[int], list[list[int]]]:
    """Each row's length (its tokens start at column 0, right padding) and the micro-batches of at most
    ``budget`` padded tokens (``suite.rl.micro_batches``)."""
    lens = km.sum(1).tolist()
    return lens, micro_batches(lens, budget)


@torch.no_grad()
def batch_logprobs(model: torch.nn.Module, toks: torch.Tensor, km: torch.Tensor, budget: int) -> torch.Tensor:
    """log p of every next token, (B, T−1), as the old log-probs of the update. ``budget`` > 0: micro-batch by
    micro-batch, each cut to its longest row (right padding, so exact for a causal model; verl
    log_prob_max_token_len_per_gpu); 0 past a row's micro-batch width, where its response mask is 0."""
    if budget <= 0:
        return token_logprobs(model(toks, km)[:, :-1], toks[:, 1:])
    return microbatch_logprobs(model, toks, km, *_groups(km, budget))


def minibatch_loss(m: torch.nn.Module, b: tuple[torch.Tensor, ...], setup: RLSetup, world: int = 1) -> torch.Tensor:
    """The PPO loss of one mini-batch ``b`` = (tokens, key mask, response mask, old log-probs, advantages), this
    rank's rows of it. ``setup.micro_tokens`` > 0: verl's dynamic micro-batching: the rows split into micro-batches
    of at most that many padded tokens, each cut to its longest row, run forward and backward one at a time with
    their gradients accumulated in one fit step (``suite.rl.accumulate_step``). Each micro-batch's token sum is
    divided by the token count of the whole mini-batch (over the ranks), so the accumulated gradient is the one-pass
    token-mean gradient (verl weights each micro-batch's token mean by its share of rows instead, equal only when
    the rows hold as many tokens). Every rank runs as many micro-batches, the most any rank needs (the others add
    a masked row), since each forward of a sharded model is a collective."""
    t, k, rm, old, adv = b
    clip = (setup.clip_low, setup.clip_high, setup.clip_c)
    if setup.micro_tokens <= 0:
        logp = token_logprobs(m(t, k)[:, :-1], t[:, 1:])
        return ppo_loss(logp, old, adv, rm, *clip, across_ranks=world > 1)
    lens, groups = _groups(k, setup.micro_tokens)
    n_tok = rm.float().sum()
    if world > 1:
        groups += [[]] * (max(D.gather(len(groups))) - len(groups))
        n_tok = D.all_sum(n_tok)

    def part(g: list[int]) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            rows, L = (g, max(lens[i] for i in g)) if g else ([0], t.shape[1])
            keep = rm[rows, :L - 1] if g else torch.zeros_like(rm[:1])  # a masked row: no gradient signal
            logp = token_logprobs(m(t[rows, :L], k[rows, :L])[:, :-1], t[rows, 1:L])
            return ppo_loss(logp, old[rows, :L - 1], adv[rows, :L - 1], keep, *clip, across_ranks=world > 1,
                            tokens=n_tok)
        return loss

    return accumulate_step(m, [part(g) for g in groups])


# --------------------------------------------------------------------------- scripted stub (smoke §6)

class StubSampler:
    """Scripted policy: follows ``script`` from the current response length, with probability
    ``noise`` writes a random digit instead (so branches differ) and with a prompt-dependent
    probability ends early with EOS (prompts whose first digit is odd die fast -> fallback)."""

    def __init__(self, tok: Tokenizer, rng: np.random.Generator, script: str = "1+1=2;2*3=6;[6]",
                 noise: float = 0.1, p_die: tuple[float, float] = (0.02, 0.7)) -> None:
        self.tok, self.rng, self.noise, self.p_die = tok, rng, noise, p_die
        self.script = tok.encode(script) + [tok.eos_id]
        self.digits = tok.encode("0123456789")

    def __call__(self, prefixes: list[list[int]], n: int) -> tuple[list[list[int]], np.ndarray]:
        out = []
        for pre in prefixes:  # stub only: never on a hot path
            first = self.tok.itos[pre[1]]
            p_die = self.p_die[int(first) % 2] if first.isdigit() else self.p_die[0]
            resp_len = len(pre) - 1 - (pre.index(self.tok.stoi["="]))
            seg: list[int] = []
            for j in range(n):
                k = resp_len + j
                t = self.script[min(k, len(self.script) - 1)]
                u = self.rng.random()
                if u < p_die and k > 0:
                    t = self.tok.eos_id
                elif u < p_die + self.noise and t != self.tok.eos_id:
                    t = int(self.rng.choice(self.digits))
                seg.append(t)
                if t == self.tok.eos_id:
                    break
            out.append(seg)
        return out, self.rng.random(len(prefixes))


def counted_tokens(ro: Rollout, variant: str = "paper") -> int:
    """Decoded tokens of a rollout as a prefix-cached engine decodes them (spec §7). ``recount`` is the
    TEST-ONLY broken variant of the §7 pitfall: it sums the reconstructed leaf lengths, so every shared
    prefix is counted once per leaf (for independent samples both counts agree)."""
    if variant == "recount":
        return sum(len(p.response) for p in ro.leaves)
    return ro.tokens_decoded


def mechanics(tok: Tokenizer, tree: TreeConfig, n_prompts: int, seed: int, variant: str = "paper") -> dict[str, float]:
    """Spec §6 smoke: W leaves per prompt incl. fallback, a valid tree, decoded tokens == Σ node
    segment lengths, tree tokens < independent tokens; the advantage hand example and the flat-tree
    REINFORCE++ identity."""
    probs = T.generate(n_prompts, seed + 11)
    prompts = encode_prompts(tok, probs)
    boxed = lambda ids: T.has_box(tok.decode(ids))  # noqa: E731
    ro = tree_rollout(prompts, StubSampler(tok, np.random.default_rng(seed)), tree, tok.eos_id, boxed,
                      np.random.default_rng(seed + 1))
    indep_cfg = replace(tree, repetition_stop=False, fallback=False)
    ind = tree_rollout(prompts, StubSampler(tok, np.random.default_rng(seed)), indep_cfg, tok.eos_id, boxed,
                       np.random.default_rng(seed + 1), first_div=tree.width)
    counted = counted_tokens(ro, variant)
    counts = np.bincount([p.prompt for p in ro.leaves], minlength=n_prompts)
    m = {"stub_leaves_exact_W": float((counts == tree.width).mean()),
         "stub_tree_valid": float(tree_is_valid(ro, tree.width)),
         "stub_fallback_prompts": float(ro.fallbacks),
         "stub_tokens_match_nodes": float(counted == node_token_sum(ro)),
         "stub_tree_tokens": float(counted), "stub_indep_tokens": float(ind.tokens_decoded),
         "stub_tree_over_indep_tokens": counted / max(ind.tokens_decoded, 1)}
    # advantage checks (§6)
    hand = tree_advantage([(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)], np.array([1.0, 0, 0, 0]))
    m["adv_hand_example_err"] = float(np.abs(hand - np.array([0.625, -0.375, -0.125, -0.125])).max())
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(6), 8)
    r = rng.integers(0, 2, size=g.size).astype(float)
    flat = tree_advantage([(int(a), i) for i, a in enumerate(g)], r)
    m["adv_flat_vs_rpp_err"] = float(np.abs(flat - group_baseline(g, r, std_norm=False)).max())
    return m


# --------------------------------------------------------------------------- SFT warm-up

def sft_warmup(model: TransformerLM, tok: Tokenizer, probs: list[T.Problem], steps: int, batch: int, lr: float,
               ctx: RunContext, seed: int) -> float:
    """Next-token loss on the response of 50 %-correct demonstrations (spec §6 warm-up)."""
    rng = np.random.default_rng(seed)
    resp = [p.solution if rng.random() < 0.5 else T.corrupt(p, rng) for p in probs]
    seqs = [tok.encode(p.prompt, bos=True) + tok.encode(s, eos=True) for p, s in zip(probs, resp)]
    plen = torch.tensor([len(tok.encode(p.prompt, bos=True)) for p in probs])
    toks, km = pad_sequences(seqs, tok.pad_id)
    lens, L = km.sum(1), toks.shape[1]
    c = torch.arange(L - 1)[None]
    rm = (c >= plen[:, None] - 1) & (c < lens[:, None] - 1)

    def loss_fn(m: TransformerLM, b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t, k, r = b
        lp = token_logprobs(m(t, k)[:, :-1], t[:, 1:])
        return -(lp * r).sum() / r.sum()

    tc = TrainConfig(steps=steps, batch_size=batch, lr=lr, optimizer="adamw", weight_decay=0.01,
                     schedule="linear_warmup_cosine", warmup_steps=max(1, steps // 20), log_every=max(1, steps // 5))
    return fit(model, loss_fn, (toks, km, rm), tc, ctx=ctx, name="sft").final_loss


# --------------------------------------------------------------------------- evaluation

def evaluate(model: TransformerLM, tok: Tokenizer, probs: list[T.Problem], setup: RLSetup,
             gen: torch.Generator) -> float:
    """avg@k accuracy at temperature 1 (§4): ``eval_samples`` independent samples per problem."""
    k = setup.eval_samples
    cfg = replace(setup.tree, width=k, first_div_min=1, first_div_max=k, repetition_stop=False, fallback=False)
    ro = tree_rollout(encode_prompts(tok, probs), LMSampler(model, tok.eos_id, tok.pad_id, 1.0, gen), cfg,
                      tok.eos_id, lambda ids: T.has_box(tok.decode(ids)), np.random.default_rng(0), first_div=k)
    return float(rewards(tok, ro, probs, setup)[0].mean())


# --------------------------------------------------------------------------- RL

@dataclass
class Env:
    """What the RL loop needs from a task and a policy family (tiny LM here, HF model in ``full.py``):
    prompt encoding, outcome rewards, a segment sampler and the held-out evaluation."""

    encode: Callable[[list[Any]], list[list[int]]]
    reward: Callable[[Rollout, list[Any]], tuple[np.ndarray, np.ndarray]]
    sampler: Callable[[torch.nn.Module, torch.Generator], Any]
    evaluate: Callable[[torch.nn.Module], float]
    eos: int
    boxed: Callable[[list[int]], bool]
    # several ranks: how the trained policy is wrapped (None: DDP; full.py: FSDP over the decoder layers, as verl)
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None


# --------------------------------------------------------------------------- data parallel (several ranks)

def rank_generator(ctx: RunContext, offset: int) -> torch.Generator:
    """``ctx.generator(offset)`` on rank 0 (so one process draws exactly what it always drew); on rank r > 0 a
    stream of its own, so that ranks sampling different prompts do not reuse the same random numbers."""
    if D.rank() == 0:
        return ctx.generator(offset)
    seed = np.random.SeedSequence([ctx.seed, offset, D.rank()]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(seed) & (2 ** 63 - 1))


def rank_rng(seed: int) -> np.random.Generator:
    """``np.random.default_rng(seed)`` on rank 0, a stream of its own on rank r > 0."""
    return np.random.default_rng(seed if D.rank() == 0 else [seed, D.rank()])


def sharded_rollout(probs: list[Any], encode: Callable[[list[Any]], list[list[int]]],
                    rollout: Callable[[list[list[int]]], Rollout],
                    reward: Callable[[Rollout, list[Any]], tuple[np.ndarray, np.ndarray]]
                    ) -> tuple[list[list[int]], Rollout, np.ndarray, np.ndarray]:
    """One generation batch data-parallel over the ranks (verl: the rollout batch split over the workers): rank r
    rolls out and scores ``probs[r::world]``; the leaves, (correct, reward) and token counts are gathered so that every
    rank holds the whole batch with the prompts in ``probs`` order and each prompt's leaves in its rollout order, as
    one process's :func:`tree_rollout` orders them. The identity of a one-process rollout at world 1."""
    mine = list(D.shard(list(range(len(probs)))))
    local = [probs[i] for i in mine]
    prompts = encode(local)
    ro = rollout(prompts)
    correct, r = reward(ro, local)
    parts = D.gather((mine, prompts, ro.leaves, correct, r, ro.tokens_decoded, ro.segments_decoded, ro.fallbacks))
    all_prompts: list[list[int]] = [[] for _ in probs]
    per_prompt: list[list[tuple[Path, float, float]]] = [[] for _ in probs]
    for ids, pr, leaves, c, rr, *_ in parts:
        for j, i in enumerate(ids):
            all_prompts[i] = pr[j]
        for p, cj, rj in zip(leaves, c, rr):
            i = ids[p.prompt]  # the leaf's prompt in the whole batch; its index string is re-rooted there
            per_prompt[i].append((replace(p, prompt=i, index=(i,) + p.index[1:]), cj, rj))
    rows = [x for group in per_prompt for x in group]
    leaves_all = [x[0] for x in rows]
    tokens, segments, fallbacks = (sum(part[k] for part in parts) for k in (5, 6, 7))
    return (all_prompts, Rollout(leaves_all, tokens, segments, fallbacks),
            np.array([x[1] for x in rows], dtype=np.float64), np.array([x[2] for x in rows], dtype=np.float64))


def rank_rows(rows: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a mini-batch (``rows[rank::world]``); a rank left without any gets the first row, which
    the caller masks out (every rank must run the forward and backward of every step: FSDP/DDP collectives)."""
    mine = D.shard(rows)
    return mine if len(mine) else rows[:1]


def sync_weights(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy the trained (DDP- or FSDP-wrapped) policy's full weights into the rollout copy on every rank (verl's
    actor -> rollout weight sync). A collective under FSDP: every rank calls it at the same points."""
    params = {k.removeprefix("module."): v for k, v in src.named_parameters()}
    with torch.no_grad():
        for name, p in dst.named_parameters():
            q = params[name]
            p.copy_(q.full_tensor() if hasattr(q, "full_tensor") else q)


def toy_env(tok: Tokenizer, test: list[T.Problem], setup: RLSetup, ctx: RunContext) -> Env:
    return Env(encode=lambda ps: encode_prompts(tok, ps), reward=lambda ro, ps: rewards(tok, ro, ps, setup),
               sampler=lambda m, g: LMSampler(m, tok.eos_id, tok.pad_id, 1.0, g, ctx.device),
               evaluate=lambda m: evaluate(m, tok, test, setup, ctx.generator(7)), eos=tok.eos_id,
               boxed=lambda ids: T.has_box(tok.decode(ids)))


def train_arm(arm: str, base: torch.nn.Module, train: list[Any], env: Env, setup: RLSetup,
              ctx: RunContext) -> dict[str, Any]:
    """PPO updates of one arm through ``suite.train.fit``: the data stream draws a fresh rollout batch
    every ``minibatches`` optimiser steps (one "update" = one rollout batch), old log-probs are taken
    at rollout time. ``base(tokens, key_mask)`` must return logits."""
    if arm not in ARMS:
        raise UnknownNameError(f"arm {arm!r} unknown; use one of {tuple(ARMS)}")
    rollout_kind, adv_kind = ARMS[arm]
    tree = setup.tree
    model = copy.deepcopy(base)
    world = D.world_size()
    roll = model  # one process: the policy rolls out and trains (unchanged)
    if world > 1:  # verl's hybrid engine: the policy trains sharded, a full copy on every rank rolls out
        roll = copy.deepcopy(base)
        model = (env.wrap or (lambda m: D.wrap(m, "ddp")))(model)
    off = sum(map(ord, arm))
    # a rank's sampling streams are its own (rank 0's are those of one process); the prompt draws below are shared
    gen, rng = rank_generator(ctx, 100 + off), rank_rng(ctx.seed * 7 + off)
    sampler = env.sampler(roll, gen)
    state: dict[str, Any] = {"batches": [], "tokens": 0, "segments": 0, "leaves": 0, "train_acc": [],
                             "gen_batches": [], "kept_prompts": [], "gave_up": 0,
                             "curve": [(0, 0, env.evaluate(roll))]}

    def rollout(prompts: list[list[int]]) -> Rollout:
        if rollout_kind == "tree":
            return tree_rollout(prompts, sampler, tree, env.eos, env.boxed, rng)
        # independent sampling: d0 = W, no branching, decode to EOS / cap
        return tree_rollout(prompts, sampler, replace(tree, repetition_stop=False, fallback=False), env.eos,
                            env.boxed, rng, first_div=tree.width)

    def generate(probs: list[Any]) -> tuple[list[list[int]], Rollout, np.ndarray, np.ndarray]:
        """One generation batch: rollout (sharded over the ranks), token accounting, (correct, reward) per leaf."""
        if world == 1:
            prompts = env.encode(probs)
            ro = rollout(prompts)
            correct, r = env.reward(ro, probs)
        else:
            prompts, ro, correct, r = sharded_rollout(probs, env.encode, rollout, env.reward)
        state["tokens"] += counted_tokens(ro, setup.variant)
        state["segments"] += ro.segments_decoded
        state["leaves"] += len(ro.leaves)
        state["train_acc"].append(float(correct.mean()))
        return prompts, ro, correct, r

    def rollout_batch() -> list[tuple[torch.Tensor, ...]]:
        """DAPO dynamic sampling (recipe/dapo/dapo_ray_trainer.py fit): generate batches of ``gen_prompts``
        prompts, keep the prompts whose leaves' correctness is not uniform (std > 0, or a single leaf), until
        ``prompts_per_step`` are kept (the surplus of the last batch is dropped) or ``max_gen_batches`` batches
        were generated (official: a ValueError; here the update uses what was kept, counted in ``gave_up``).
        Advantages (tree baseline + batch whitening, or GRPO) are computed on the kept batch only, as the
        official compute_advantage runs after the filter. Without the filter: one generation batch, all kept."""
        u = len(state["gen_batches"])
        n_gen = setup.gen_prompts or setup.prompts_per_step
        prompts: list[list[int]] = []
        leaves: list[Path] = []
        corr: list[np.ndarray] = []
        rew: list[np.ndarray] = []
        kept_prompts, g = 0, 0
        while True:
            # same prompts for every arm at the same (update, generation batch)
            prng = np.random.default_rng([ctx.seed * 13 + 5, u, g])
            g += 1
            probs = [train[i] for i in prng.integers(len(train), size=n_gen)]
            pr, ro, correct, r = generate(probs)
            pid = np.array([p.prompt for p in ro.leaves])
            if setup.filter_uniform:
                lo = np.full(len(probs), np.inf)
                hi = np.full(len(probs), -np.inf)
                np.minimum.at(lo, pid, correct)
                np.maximum.at(hi, pid, correct)
                single = np.bincount(pid, minlength=len(probs)) == 1
                ok = np.flatnonzero((hi > lo) | single)[:setup.prompts_per_step - kept_prompts]
            else:
                ok = np.arange(len(probs))
            new_id = {int(j): kept_prompts + k for k, j in enumerate(ok)}
            sel = [i for i, p in enumerate(ro.leaves) if p.prompt in new_id]
            prompts += [pr[j] for j in ok]
            leaves += [replace(ro.leaves[i], prompt=new_id[ro.leaves[i].prompt],
                               index=(new_id[ro.leaves[i].prompt],) + ro.leaves[i].index[1:]) for i in sel]
            corr.append(correct[sel])
            rew.append(r[sel])
            kept_prompts += len(ok)
            if not setup.filter_uniform or kept_prompts >= setup.prompts_per_step:
                break
            if 0 < setup.max_gen_batches <= g:
                state["gave_up"] += 1
                break
        state["gen_batches"].append(g)
        state["kept_prompts"].append(kept_prompts)
        if not leaves:  # nothing kept: a zero-mask row of the last generation batch, no gradient signal
            t, k, m = (x[:1].to(ctx.device) for x in batch_tensors(setup.pad_id, pr, ro))
            z = torch.zeros(m.shape, device=ctx.device)
            return [(t, k, torch.zeros_like(m), z, z)] * setup.minibatches
        kept = Rollout(leaves, 0, 0, 0)
        r = np.concatenate(rew)
        toks, km, rm = batch_tensors(setup.pad_id, prompts, kept)
        toks, km, rm = toks.to(ctx.device), km.to(ctx.device), rm.to(ctx.device)
        adv = advantages(adv_kind, kept, r, rm.cpu(), setup.variant).to(ctx.device)
        if world == 1:
            old = batch_logprobs(model, toks, km, setup.micro_tokens)
            idx = torch.randperm(len(leaves), generator=gen).to(toks.device)
            empty = (toks[:1], km[:1], torch.zeros_like(rm[:1]), old[:1], adv[:1])  # no gradient signal
            chunks = [(toks[c], km[c], rm[c], old[c], adv[c]) for c in idx.chunk(setup.minibatches)]
            return chunks + [empty] * (setup.minibatches - len(chunks))
        # several ranks: rank 0's mini-batch split on every rank; each rank keeps its rows of every mini-batch and
        # takes their old log-probs with the rollout copy (the same weights as the policy now)
        idx = D.broadcast(torch.randperm(len(leaves), generator=gen)).to(toks.device)
        out = []
        for c in idx.chunk(setup.minibatches):
            rows = rank_rows(c)
            keep = rm[rows] if len(D.shard(c)) else torch.zeros_like(rm[rows])
            old = batch_logprobs(roll, toks[rows], km[rows], setup.micro_tokens)
            out.append((toks[rows], km[rows], keep, old, adv[rows]))
        z = torch.zeros(rm[:1].shape, device=toks.device)
        return out + [(toks[:1], km[:1], torch.zeros_like(rm[:1]), z, z)] * (setup.minibatches - len(out))

    def data(step: int) -> tuple[torch.Tensor, ...]:
        if step % setup.minibatches == 0:
            if world > 1:
                sync_weights(model, roll)
            state["batches"] = rollout_batch()
        return state["batches"][step % setup.minibatches]

    def loss_fn(m: torch.nn.Module, b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return minibatch_loss(m, b, setup, world)

    def on_step(st: Any) -> None:
        u = st.step // setup.minibatches
        if st.step % setup.minibatches == 0 and (u % setup.eval_every == 0 or u == setup.updates):
            if world > 1:
                sync_weights(model, roll)
            state["curve"].append((u, state["tokens"], env.evaluate(roll)))

    tc = TrainConfig(steps=setup.updates * setup.minibatches, batch_size=1, lr=setup.lr, optimizer="adamw",
                     weight_decay=setup.weight_decay, grad_clip=setup.grad_clip, schedule="constant",
                     warmup_steps=min(10, setup.updates), log_every=max(1, setup.updates * setup.minibatches // 5))
    res = fit(model, loss_fn, data, tc, ctx=ctx, name=f"rl_{arm}", on_step=on_step)
    upd, tokc, acc = map(np.array, zip(*state["curve"]))
    return {"model": roll, "updates": upd, "tokens_cum": tokc, "acc": acc, "tokens": state["tokens"],
            "segments": state["segments"], "leaves": state["leaves"], "train_acc": state["train_acc"],
            "gen_batches": state["gen_batches"], "kept_prompts": state["kept_prompts"], "gave_up": state["gave_up"],
            "wall_s": res.wall_s}


def summarize(runs: dict[str, dict[str, Any]], setup: RLSetup) -> dict[str, float]:
    """Metrics of every arm plus the comparisons the claims read."""
    m: dict[str, float] = {}
    for arm, r in runs.items():
        m[f"acc_{arm}"] = float(r["acc"][-1])
        m[f"acc_init_{arm}"] = float(r["acc"][0])
        m[f"tokens_{arm}"] = float(r["tokens"])
        m[f"tokens_per_update_{arm}"] = r["tokens"] / setup.updates
        m[f"trajectories_per_update_{arm}"] = r["leaves"] / setup.updates
        m[f"segments_per_update_{arm}"] = r["segments"] / setup.updates
        m[f"train_acc_last10_{arm}"] = float(np.mean(r["train_acc"][-10:]))
        m[f"rl_wall_s_{arm}"] = float(r["wall_s"])
        m[f"gen_batches_per_update_{arm}"] = float(np.mean(r["gen_batches"]))  # official train/num_gen_batches
        m[f"kept_prompts_per_update_{arm}"] = float(np.mean(r["kept_prompts"]))
        m[f"gave_up_updates_{arm}"] = float(r["gave_up"])
        for u, t, a in zip(r["updates"], r["tokens_cum"], r["acc"]):
            m[f"acc_{arm}@update={int(u)}"] = float(a)
            m[f"tokens_{arm}@update={int(u)}"] = float(t)
    if "treepo" in runs and "grpo" in runs:
        t, g = runs["treepo"], runs["grpo"]
        m["tokens_treepo_over_grpo"] = m["tokens_treepo"] / m["tokens_grpo"]
        m["sampling_saving"] = 1.0 - m["tokens_treepo_over_grpo"]
        m["acc_treepo_minus_grpo"] = m["acc_treepo"] - m["acc_grpo"]
        # accuracy of GRPO at TreePO's final token budget (linear interpolation of its curve)
        m["acc_grpo_at_treepo_tokens"] = float(np.interp(t["tokens_cum"][-1], g["tokens_cum"], g["acc"]))
        m["acc_treepo_minus_grpo_at_equal_tokens"] = m["acc_treepo"] - m["acc_grpo_at_treepo_tokens"]
    if "treepo_root" in runs and "treepo" in runs:
        m["acc_treepo_minus_root_only"] = m["acc_treepo"] - m["acc_treepo_root"]
    return m


def make_model(tok: Tokenizer, dim: int, depth: int, heads: int, max_len: int, seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(tok.vocab_size, max_len, dim, depth, heads, causal=True)


"""TreePO (Li et al. 2025, arXiv 2508.17445): segment-wise tree rollouts (spec §3 "Rollout"), the
tree REINFORCE++-baseline advantage (§3 "Advantage") and the PPO dual-clip token-mean loss (§3
"Policy update"). Policy-agnostic: a :class:`SegmentSampler` extends a batch of token prefixes by up
to ``Ls`` tokens (the tiny TransformerLM here, a Hugging Face model in ``full.py``).

Token accounting (spec §7): ``tokens_decoded`` counts the tokens actually sampled per segment (what
a prefix/KV-cached engine decodes); prompts and shared prefixes are never re-counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from suite import distributed as D
from suite.errors import ConfigError, UnknownNameError
from suite.models import decoding
from suite.rl import dual_clip_surrogate, group_advantage

# leaf status (spec §3 classification)
ACTIVE, FINISHED, EARLY_STOP, REPETITION, TRUNCATED, MAX_DEPTH = range(6)
STATUS = ("active", "finished", "early_stop", "repetition", "truncated", "max_depth")
ALLOCATIONS = ("fixed_avg", "entropy")


class SegmentSampler(Protocol):
    def __call__(self, prefixes: list[list[int]], n: int) -> tuple[list[list[int]], np.ndarray]:
        """New tokens (<= n per row, cut after EOS) and each row's mean next-token entropy."""


@dataclass
class TreeConfig:
    """Scaled-down defaults of spec §6 (repo: Ls 512, D 14, W 16, d0 ~ U{2..8})."""

    seg_len: int = 4                 # Ls
    max_depth: int = 8               # D
    width: int = 8                   # W target leaves per prompt
    step_div: int = 2                # tree_fixed_step_div
    first_div_min: int = 2
    first_div_max: int = 4          # d0 ~ U{first_div_min..first_div_max}
    max_response: int = 32          # response token cap (D * Ls)
    allocation: str = "fixed_avg"    # 'fixed_avg' (repo default) | 'entropy' (branch where uncertain)
    repetition_stop: bool = True     # finish a path whose last `rep_segments` segments are identical
    rep_segments: int = 2
    fallback: bool = True            # respawn from cut leaves when a prompt runs out of active paths

    def __post_init__(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise UnknownNameError(f"allocation={self.allocation!r} unknown; use one of {ALLOCATIONS}")
        if not 1 <= self.first_div_min <= self.first_div_max <= self.width:
            raise ConfigError(f"need 1 <= first_div_min <= first_div_max <= width, got "
                              f"{self.first_div_min}, {self.first_div_max}, {self.width}")


@dataclass
class Path:
    prompt: int
    index: tuple[int, ...]                      # (root, c1, c2, ...): one component per segment
    segs: list[list[int]] = field(default_factory=list)
    status: int = ACTIVE
    entropy: float = 0.0

    @property
    def response(self) -> list[int]:
        return [t for s in self.segs for t in s]


@dataclass
class Rollout:
    leaves: list[Path]
    tokens_decoded: int              # Σ over tree nodes of the segment length (with prefix caching)
    segments_decoded: int
    fallbacks: int                   # prompts where the fallback respawned paths

    def index_strings(self) -> list[str]:
        return ["#".join(map(str, p.index)) for p in self.leaves]


def _classify(p: Path, cfg: TreeConfig, eos: int, boxed: Callable[[list[int]], bool]) -> int:
    """§3 classification, policy ``boxed_and_eos_first``."""
    resp = p.response
    if cfg.repetition_stop and len(p.segs) >= cfg.rep_segments and \
            all(len(s) == cfg.seg_len and s == p.segs[-1] for s in p.segs[-cfg.rep_segments:]) and eos not in resp:
        return REPETITION
    if resp and resp[-1] == eos:
        return FINISHED if boxed(resp[:-1]) else EARLY_STOP
    if len(resp) >= cfg.max_response:
        return TRUNCATED
    if len(p.segs) >= cfg.max_depth:
        return MAX_DEPTH
    return ACTIVE


def _split(total: int, paths: list[Path], allocation: str) -> list[int]:
    """Children per active path: ``fixed_avg`` = even split with the remainder to the last path;
    ``entropy`` = one each, the rest by largest remainder on the last segment's mean entropy."""
    n = len(paths)
    if allocation == "fixed_avg":
        k = [total // n] * n
        k[-1] += total - sum(k)
        return k
    w = np.array([max(p.entropy, 1e-6) for p in paths])
    extra = total - n
    share = extra * w / w.sum()
    k = np.floor(share).astype(int)
    rest = extra - int(k.sum())
    k[np.argsort(-(share - k), kind="stable")[:rest]] += 1
    return (k + 1).tolist()


def tree_rollout(prompts: list[list[int]], sampler: SegmentSampler, cfg: TreeConfig, eos: int,
                 boxed: Callable[[list[int]], bool], rng: np.random.Generator,
                 first_div: int | None = None) -> Rollout:
    """Spec §3 rollout loop for a batch of prompts. ``first_div`` fixes d0 (independent sampling is
    ``first_div = W`` with repetition stop off: no branching ever happens)."""
    W = cfg.width
    active: list[Path] = []
    children: dict[tuple[int, ...], int] = {}     # next free child id per node (fallback respawns)
    for r in range(len(prompts)):
        d0 = first_div or int(rng.integers(cfg.first_div_min, cfg.first_div_max + 1))
        active += [Path(r, (r, i)) for i in range(d0)]
        children[(r,)] = d0
    finished: list[list[Path]] = [[] for _ in prompts]
    tokens = segments = fallbacks = 0
    while active:
        # one "step": extend every active path by <= Ls tokens (one batched sampler call)
        new, ent = sampler([prompts[p.prompt] + p.response for p in active], cfg.seg_len)
        for p, s, e in zip(active, new, ent):
            p.segs.append(list(s))
            p.entropy = float(e)
        tokens += sum(len(s) for s in new)
        segments += len(new)
        still: list[list[Path]] = [[] for _ in prompts]
        n_fin_step = np.zeros(len(prompts), dtype=int)
        for p in active:
            p.status = _classify(p, cfg, eos, boxed)
            if p.status == ACTIVE:
                still[p.prompt].append(p)
            else:
                finished[p.prompt].append(p)
                n_fin_step[p.prompt] += 1
        active = []
        for r in range(len(prompts)):
            act = still[r]
            if act:  # branching budget (§3): children copy the full parent prefix
                remaining = max(W - len(finished[r]), 0)
                total = min(remaining, cfg.step_div * len(act) + cfg.step_div * int(n_fin_step[r]))
                total = max(total, len(act))
                for p, k in zip(act, _split(total, act, cfg.allocation)):
                    children[p.index] = k
                    active += [Path(r, p.index + (j,), [list(s) for s in p.segs]) for j in range(k)]
            elif cfg.fallback and len(finished[r]) < W:
                active += _fallback(finished[r], W - len(finished[r]), children, rng)
                fallbacks += 1
    leaves = [p for f in finished for p in f]
    return Rollout(leaves, tokens, segments, fallbacks)


def _fallback(done: list[Path], need: int, children: dict[tuple[int, ...], int],
              rng: np.random.Generator) -> list[Path]:
    """§3 fallback: FINISHED/EARLY_STOP leaves in random order (any leaf if there is none), each cut
    at a random segment boundary, respawn 2 children from the cut point until W is reached."""
    pool = [p for p in done if p.status in (FINISHED, EARLY_STOP)] or list(done)
    order = [pool[i] for i in rng.permutation(len(pool))]
    out: list[Path] = []
    i = 0
    while len(out) < need:
        leaf = order[i % len(order)]
        i += 1
        cut = int(rng.integers(0, len(leaf.segs)))          # keep the first `cut` segments
        node = leaf.index[:cut + 1]
        for _ in range(min(2, need - len(out))):
            c = children.get(node, 0)
            children[node] = c + 1
            out.append(Path(leaf.prompt, node + (c,), [list(s) for s in leaf.segs[:cut]]))
    return out


def tree_is_valid(ro: Rollout, width: int) -> bool:
    """Index strings form a valid tree: unique leaves, every leaf prefix-consistent (a node's segment is
    identical in every leaf through it), no leaf is an ancestor of another, W leaves per prompt."""
    seen: dict[tuple[int, ...], list[int]] = {}
    idx = [p.index for p in ro.leaves]
    if len(set(idx)) != len(idx):
        return False
    for p in ro.leaves:
        if p.index[0] != p.prompt or len(p.index) != len(p.segs) + 1:
            return False
        for k, s in enumerate(p.segs):
            node = p.index[:k + 2]
            if seen.setdefault(node, s) != s:
                return False
    leafset = set(idx)
    if any(p.index[:k] in leafset for p in ro.leaves for k in range(1, len(p.index))):
        return False
    counts = np.bincount([p.prompt for p in ro.leaves])
    return bool((counts == width).all())


def node_token_sum(ro: Rollout) -> int:
    """Σ over distinct tree nodes of their segment length (what prefix sharing decodes)."""
    nodes: dict[tuple[int, ...], int] = {}
    for p in ro.leaves:
        for k, s in enumerate(p.segs):
            nodes[p.index[:k + 2]] = len(s)
    return sum(nodes.values())


# --------------------------------------------------------------------------- advantages

def tree_advantage(indices: list[tuple[int, ...]], rewards: np.ndarray, strategy: str = "average",
                   drop_zero_std: bool = False, root_only: bool = False) -> np.ndarray:
    """§3 tree REINFORCE++ baseline, before whitening: a_{i,d} = r_i − mean_{G_d(i)} r, G_d(i) = leaves
    sharing the first d+1 index components; d = 0 always kept, d >= 1 kept when |G| > 1 (and, with
    ``drop_zero_std``, std(G) > 0). ``average``: A_i = mean of kept terms; ``group_size``: weighted by |G|.
    ``root_only`` (ablation C3) keeps d = 0 only."""
    r = np.asarray(rewards, dtype=np.float64)
    n, depth = len(indices), max(len(i) for i in indices)
    num, den = np.zeros(n), np.zeros(n)
    for d in range(1 if root_only else depth):  # loop over depth, vectorised over leaves
        has = np.array([len(i) > d for i in indices])
        keys = [i[:d + 1] if h else None for i, h in zip(indices, has)]
        uniq = {k: j for j, k in enumerate(dict.fromkeys(k for k in keys if k is not None))}
        g = np.array([uniq[k] if k is not None else -1 for k in keys])
        gi = np.where(has, g, len(uniq))
        size = np.bincount(gi, minlength=len(uniq) + 1)[gi]
        mean = np.bincount(gi, weights=r, minlength=len(uniq) + 1)[gi] / size
        sq = np.bincount(gi, weights=r * r, minlength=len(uniq) + 1)[gi] / size
        keep = has & ((size > 1) | (d == 0))
        if drop_zero_std and d > 0:
            keep &= (sq - mean ** 2) > 1e-12
        w = np.where(keep, size if strategy == "group_size" else 1.0, 0.0)
        num += w * (r - mean)
        den += w
    return num / np.maximum(den, 1e-12)


def group_baseline(groups: np.ndarray, rewards: np.ndarray, std_norm: bool) -> np.ndarray:
    """REINFORCE++-baseline (r - group mean; ``std_norm=False``) or GRPO (``std_norm=True``) on numpy arrays
    (``suite.rl.group_advantage``)."""
    return group_advantage(torch.from_numpy(np.asarray(rewards, dtype=np.float64)),
                           torch.from_numpy(np.asarray(groups)), std_norm).numpy()


def whiten(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked whitening over all response tokens of the batch (after depth averaging, §3/§7)."""
    m = mask.float()
    mean = (adv * m).sum() / m.sum()
    var = (((adv - mean) ** 2) * m).sum() / m.sum()
    return (adv - mean) * torch.rsqrt(var + 1e-8) * m


def overlong_penalty(lengths: np.ndarray, max_len: int, buffer: int, factor: float = 1.0) -> np.ndarray:
    """DAPO soft overlong punishment: 0 up to max − buffer, then linearly down to −factor at max."""
    exceed = np.asarray(lengths, dtype=np.float64) - (max_len - buffer)
    return -factor * np.clip(exceed / max(buffer, 1), 0.0, 1.0)


# --------------------------------------------------------------------------- policy update

def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
             clip_low: float = 0.2, clip_high: float = 0.28, clip_c: float = 10.0,
             across_ranks: bool = False, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """§3 PPO clip-higher with dual clip (c = 10) (``suite.rl.dual_clip_surrogate``), token-mean aggregation
    over the mini-batch. ``across_ranks``: this rank holds a shard of the mini-batch's rows; the token mean is over
    the WHOLE mini-batch (divided by the token count summed over the ranks) and multiplied by the world size, since
    DDP/FSDP average the ranks' gradients: the averaged gradient is that of the one-process token mean.
    ``tokens``: these rows are one micro-batch of a mini-batch with this many response tokens (summed over the
    ranks when ``across_ranks``): the token sum is divided by it, so the micro-batches' losses add up to the
    mini-batch's token mean."""
    loss = dual_clip_surrogate(logp, old_logp, adv, clip_low, clip_high, clip_c)
    m = mask.float()
    if tokens is not None:
        return (loss * m).sum() / tokens.clamp_min(1.0) * (D.world_size() if across_ranks else 1)
    if across_ranks:
        return (loss * m).sum() / D.all_sum(m.sum()).clamp_min(1.0) * D.world_size()
    return (loss * m).sum() / m.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- tiny-LM sampler

class LMSampler:
    """Batched segment sampler for a causal :class:`~suite.models.transformer.TransformerLM`: left-padded
    prefixes, KV-cached decoding (``suite.models.decoding``; temperature 1, top-p 1 as in §3)."""

    def __init__(self, model: torch.nn.Module, eos: int, pad: int, temperature: float = 1.0,
                 gen: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        self.model, self.eos, self.pad, self.t, self.gen, self.dev = model, eos, pad, temperature, gen, device

    @torch.no_grad()
    def __call__(self, prefixes: list[list[int]], n: int) -> tuple[list[list[int]], np.ndarray]:
        """Up to ``n`` tokens after each prefix (through its first eos), and each row's mean token entropy
        over those tokens."""
        B, L = len(prefixes), max(len(p) for p in prefixes)
        lens = torch.tensor([len(p) for p in prefixes])
        mask = torch.arange(L)[None] >= (L - lens[:, None])
        toks = torch.full((B, L), self.pad, dtype=torch.long)
        toks[mask] = torch.tensor([t for p in prefixes for t in p])
        ents: list[torch.Tensor] = []

        def entropy(logits: torch.Tensor) -> None:
            lp = logits.log_softmax(-1)
            ents.append(-(lp.exp() * lp).sum(-1))

        out = decoding.generate(self.model, toks.to(self.dev), n, temperature=self.t, eos_id=self.eos,
                                generator=self.gen, key_mask=mask.to(self.dev), on_logits=entropy)[:, L:]
        eos = (out == self.eos).long().cumsum(1)
        valid = (eos == 0) | ((eos == 1) & (out == self.eos))  # through the first eos
        ent = (torch.stack(ents, 1) * valid).sum(1)
        cnt = valid.sum(1).clamp_min(1)
        rows = [r[k].tolist() for r, k in zip(out.cpu(), valid.cpu())]
        return rows, (ent / cnt).cpu().numpy()

"""Policy-gradient pieces shared by the RL reproductions (treepo, light_if): per-token log-probabilities,
group-relative advantages, the clipped surrogate with clip-higher and dual clip, and token-budget
micro-batching with gradient accumulation inside one ``suite.train.fit`` step."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[..., t]) under ``logits[..., t, :]``, in fp32, shaped like ``targets``: the per-token
    log-likelihoods of the PPO / GRPO ratio and the KL term. A causal LM scores token t+1 at position t, so
    pass ``logits[:, :-1]`` with ``tokens[:, 1:]``. Correct under any padding: the caller masks the positions."""
    return torch.gather(F.log_softmax(logits.float(), -1), -1, targets.unsqueeze(-1)).squeeze(-1)


def group_advantage(rewards: torch.Tensor, groups: torch.Tensor, std_norm: bool = True,
                    eps: float = 1e-6) -> torch.Tensor:
    """Per-rollout advantage against the other rollouts of its group (same prompt).

    ``std_norm=True``: GRPO, (r - mean_g) / (std_g + eps) with the unbiased std (Shao et al. 2024 §4.1.2;
    verl's ``compute_grpo_outcome_advantage``); a group of one rollout gets 0. ``std_norm=False``: the
    REINFORCE++ baseline r - mean_g. ``groups``: one id per rollout (any integers). Float64 inside."""
    r = rewards.double()
    g = torch.unique(groups, return_inverse=True)[1].to(r.device)
    cnt = torch.bincount(g).double()
    mean = (torch.zeros_like(cnt).index_add_(0, g, r) / cnt)[g]
    if not std_norm:
        return r - mean
    sq = torch.zeros_like(cnt).index_add_(0, g, r * r)[g]
    var = (sq - cnt[g] * mean ** 2) / (cnt[g] - 1).clamp_min(1)
    return (r - mean) / (var.clamp_min(0).sqrt() + eps)


def dual_clip_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip_low: float,
                        clip_high: float, clip_c: float) -> torch.Tensor:
    """Per-token PPO loss max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)) (Schulman et al. 2017 Eq. 7,
    with DAPO's decoupled clip-higher bounds), and for A < 0 capped at -c A (dual clip, Ye et al. 2020).
    r = exp(logp - old_logp), the log-ratio clamped to [-20, 20] against overflow. Aggregation is the
    caller's (token-mean over the mask in both reproductions)."""
    ratio = (logp - old_logp).clamp(-20, 20).exp()
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip_low, 1 + clip_high))
    return torch.where(adv < 0, torch.minimum(pg, -adv * clip_c), pg)


# --------------------------------------------------------------------------- micro-batching (verl use_dynamic_bsz)

def micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """verl ``use_dynamic_bsz``: split rows into micro-batches of at most ``budget`` tokens
    (``ppo_max_token_len_per_gpu``). We pad instead of removing padding, so a micro-batch costs
    rows × its longest row; rows are packed greedily in order of length. A row over the budget goes alone."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= budget:
            out[-1].append(i)
        else:
            out.append([i])
    return out


@torch.no_grad()
def microbatch_logprobs(logits_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ids: torch.Tensor,
                        mask: torch.Tensor, lengths: list[int], groups: list[list[int]]) -> torch.Tensor:
    """log p of every next token of ``ids`` (B, L), (B, L-1) fp32 on ``ids``' device, micro-batch by micro-batch
    (``groups``, e.g. :func:`micro_batches` of ``lengths``), each cut to its longest row (``lengths``: a row's last
    real column + 1; exact for a causal LM, whose positions never see the padding after them); 0 past a row's
    micro-batch width. ``logits_of(ids, mask) -> logits``: the model's forward (moving to its device if need be)."""
    out = torch.zeros(ids.shape[0], ids.shape[1] - 1, device=ids.device)
    for g in groups:
        L = max(lengths[i] for i in g)
        x = ids[g, :L]
        logits = logits_of(x[:, :-1], mask[g, :L - 1])
        out[g, :L - 1] = token_logprobs(logits, x[:, 1:].to(logits.device)).to(out.device)
    return out


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's (FSDP2 parameter's or gradient's) local shard, differentiably; any other tensor as is."""
    return t.to_local() if hasattr(t, "to_local") else t


def accumulate_step(model: torch.nn.Module, parts: list[Callable[[], torch.Tensor]]) -> torch.Tensor:
    """Gradient accumulation inside one ``suite.train.fit`` step (fit zeroes the gradients after calling the loss
    and backpropagates the one tensor it returns). Every part but the last is backpropagated here, as a DDP or
    FSDP model reduces any backward over the ranks, and its gradient is moved off the parameters into an fp32
    stash (an FSDP2 parameter's local shard); the returned tensor is the last part plus Σ <p, stash_p> minus its
    detached value, so fit's backward adds the stash to the last part's gradient and the value is the sum of the
    parts. ``parts``: callables returning one micro-batch's (already weighted) loss. Under DDP/FSDP every rank
    must pass as many parts (each part's forward is a collective)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # the previous step's gradient (fit zeroes it only after this returns) must not be stashed
        p.grad = None
    stash: list[torch.Tensor | None] = [None] * len(params)
    value = 0.0
    for part in parts[:-1]:
        loss = part()
        loss.backward()
        for k, p in enumerate(params):
            if p.grad is not None:
                g = _local(p.grad).float()
                stash[k] = g if stash[k] is None else stash[k].add_(g)
                p.grad = None
        value += float(loss.detach())
        del loss
    last = parts[-1]()
    inj = sum(((_local(p) * g.to(p.dtype)).sum() for p, g in zip(params, stash) if g is not None),
              torch.zeros((), device=last.device))
    return last + value + (inj - inj.detach())

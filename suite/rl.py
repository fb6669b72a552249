"""Policy-gradient pieces shared by the RL reproductions (treepo, light_if): per-token log-probabilities,
group-relative advantages and the clipped surrogate with clip-higher and dual clip."""
from __future__ import annotations

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

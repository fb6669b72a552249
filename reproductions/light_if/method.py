"""Light-IF's training objectives (spec §3): Entropy-SFT token selection (§3.3), the dense rule-based
reward with the cosine length term (§3.4, ``IF.py::compute_score``), GRPO advantages and the clipped
policy loss with the low-variance KL (verl GRPO), and the token-entropy-adaptive (TEA) bonus
(§3.4, ``compute_entropy_with_cov``). Model-agnostic: everything takes logits / log-probs."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from suite.errors import ConfigError, UnknownNameError
from suite.rl import dual_clip_surrogate, group_advantage, token_logprobs

REWARDS = ("dense", "binary")


# --------------------------------------------------------------------------- token statistics

def token_entropy(logits: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """H_t = -sum_v p log p over the last dim, in fp32 and in chunks of positions (§7: memory)."""
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for lo in range(0, flat.shape[0], chunk):
        lp = flat[lo:lo + chunk].float().log_softmax(-1)
        out[lo:lo + chunk] = -(lp.exp() * lp).sum(-1)
    return out.view(logits.shape[:-1])


# --------------------------------------------------------------------------- Entropy-SFT (§3.3)

@dataclass(frozen=True)
class EntropySFT:
    """``token_ratio`` ρ and ``entropy_coef`` λ of ``--enable_entropy_sft`` (defaults 0.8 / 0.8)."""

    token_ratio: float = 0.8
    entropy_coef: float = 0.8
    enabled: bool = True
    keep_lowest: bool = False  # TEST-ONLY broken variant: keep the k tokens with the *smallest* δ


def entropy_sft_select(ce: torch.Tensor, ent: torch.Tensor, valid: torch.Tensor,
                       cfg: EntropySFT) -> torch.Tensor:
    """Indices (into the flattened micro-batch) of the k = max(floor(ρN), 1) valid tokens with the
    largest δ_t = CE_t - λ H_t (§3.3). Selection is per micro-batch (§7) and carries no gradient."""
    delta = (ce.detach().float() - cfg.entropy_coef * ent.detach().float()).reshape(-1)
    if cfg.keep_lowest:  # TEST-ONLY: drops the confident-but-wrong tokens the paper trains on
        delta = -delta
    v = valid.reshape(-1)
    n = int(v.sum())
    if n == 0:
        raise ConfigError("entropy_sft_select: the micro-batch has no valid (unmasked) target token")
    k = max(int(math.floor(cfg.token_ratio * n)), 1)
    return delta.masked_fill(~v, float("-inf")).topk(k).indices


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, cfg: EntropySFT,
             num_items_in_batch: int | None = None) -> torch.Tensor:
    """Plain SFT (``cfg.enabled=False``): mean CE over valid tokens. Entropy-SFT: mean CE over the
    selected tokens; with ``num_items_in_batch`` (gradient accumulation) sum / (num_items·ρ)."""
    ce = -token_logprobs(logits, targets)
    if not cfg.enabled:
        tot = (ce * valid).sum()
        return tot / num_items_in_batch if num_items_in_batch else tot / valid.sum().clamp(min=1)
    idx = entropy_sft_select(ce, token_entropy(logits.detach()), valid, cfg)
    kept = ce.reshape(-1)[idx]
    if num_items_in_batch:
        return kept.sum() / (num_items_in_batch * cfg.token_ratio)
    return kept.mean()


# --------------------------------------------------------------------------- reward (§3.4)

@dataclass(frozen=True)
class RewardConfig:
    """``kind``: "dense" = acc + point + r_len (spec §7: the release drops the combination, so this
    sum is our flagged choice), "binary" = acc only (the GRPO baseline). ``length_term`` toggles r_len."""

    kind: str = "dense"
    max_len: int = 8192
    length_term: bool = True
    combine: str = "sum"    # the only combination implemented; see README (pitfall §7)
    point_sign: float = 1.0  # TEST-ONLY broken variant: −1 turns the partial credit into a penalty

    def __post_init__(self) -> None:
        if self.kind not in REWARDS:
            raise UnknownNameError(f"reward kind {self.kind!r} unknown; use one of {REWARDS}")
        if self.combine != "sum":
            raise UnknownNameError(f"reward combine {self.combine!r} unknown; only 'sum' (acc + point + r_len)")


def cosine_length_reward(length: torch.Tensor, score: torch.Tensor, max_len: int) -> torch.Tensor:
    """c = (1 - cos(π·len/L))/2; r_len = 2·score·c if score >= 0.2 else -c; len >= L -> -2 (§3.4)."""
    length = length.float()
    c = 0.5 * (1.0 - torch.cos(math.pi * length / max_len))
    r = torch.where(score >= 0.2, 2.0 * score * c, -c)
    return torch.where(length >= max_len, torch.full_like(r, -2.0), r)


def compute_score(sat: torch.Tensor, active: torch.Tensor, credit: torch.Tensor, has_think: torch.Tensor,
                  resp_len: torch.Tensor, cfg: RewardConfig) -> dict[str, torch.Tensor]:
    """Per-response reward terms. ``sat``/``active`` (N, C) bool, ``credit`` (C,) partial credits.
    No ``</think>`` -> every term 0. ``score`` is the scalar the policy is trained on."""
    act = active.float()
    point = (sat.float() * act * credit).sum(1)
    acc = (sat | ~active).all(1).float()
    r_len = cosine_length_reward(resp_len, acc + point, cfg.max_len)
    ht = has_think.float()
    point, acc, r_len = point * ht, acc * ht, r_len * ht
    if cfg.kind == "binary":
        score = acc
    else:
        score = acc + cfg.point_sign * point + (r_len if cfg.length_term else torch.zeros_like(r_len))
    return {"score": score, "acc": acc, "point": point, "length": r_len}


# --------------------------------------------------------------------------- GRPO + TEA (§3.4)

def grpo_advantage(scores: torch.Tensor, group: int) -> torch.Tensor:
    """GRPO advantages of consecutive groups of ``group`` rollouts (``suite.rl.group_advantage``, unbiased std)."""
    ids = torch.arange(len(scores), device=scores.device) // group
    return group_advantage(scores, ids).float()


def tea_weights(adv: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor, alpha: float = 10.0,
                ub: float = 5.0) -> torch.Tensor:
    """w_t = clamp(α·softmax_t(cov_t), 0, ub), cov_t = (A_t - mean A)(log π_t - mean log π), means and
    softmax over the valid response tokens of the batch (§3.4). Zero on masked tokens; no gradient."""
    a, lp, m = adv.detach().float(), logp.detach().float(), mask.bool()
    n = m.sum().clamp(min=1)
    cov = (a - (a * m).sum() / n) * (lp - (lp * m).sum() / n)
    sm = cov.masked_fill(~m, float("-inf")).reshape(-1).softmax(0).view_as(cov)
    return (alpha * sm).clamp(0.0, ub).masked_fill(~m, 0.0)


@dataclass(frozen=True)
class GRPOConfig:
    """verl GRPO settings of the recipe (§3.4): clip ratios 1.0/1.0 (ratio in [0, 2]; do NOT use 0.2,
    §7), dual clip c = 10, low-variance KL 0.001, entropy coefficient 0, token-mean aggregation.
    ``tea``: add the TEA bonus +mean_t(w_t·H_t) (``tea_coef`` scales it; UNVERIFIED, default 1)."""

    clip_low: float = 1.0
    clip_high: float = 1.0
    clip_c: float = 10.0
    kl_coef: float = 0.001
    entropy_coef: float = 0.0
    tea: bool = False
    tea_alpha: float = 10.0
    tea_ub: float = 5.0
    tea_coef: float = 1.0


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator exp(ref - logp) - (ref - logp) - 1, clamped to [-10, 10] (verl ``low_var_kl``)."""
    d = (ref_logp - logp).clamp(-20, 20)
    return (d.exp() - d - 1).clamp(-10, 10)


def grpo_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, adv: torch.Tensor,
              old_logp: torch.Tensor | None, ref_logp: torch.Tensor | None,
              cfg: GRPOConfig) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate with dual clip, + kl_coef·KL, - entropy_coef·H, - tea_coef·mean(w·H).

    ``logits`` (B, T, V) predict ``targets`` (B, T); ``mask`` marks response tokens; ``adv`` (B,)
    sequence advantages broadcast to tokens. Token-mean over the masked tokens of the batch.
    ``old_logp=None``: one update per rollout batch (ppo_epochs 1, one mini-batch), old = current."""
    m = mask.float()
    n = m.sum().clamp(min=1)
    logp = token_logprobs(logits, targets)
    old_logp = logp.detach() if old_logp is None else old_logp
    a = adv[:, None].expand_as(logp)
    pg = dual_clip_surrogate(logp, old_logp, a, cfg.clip_low, cfg.clip_high, cfg.clip_c)
    loss = (pg * m).sum() / n
    info: dict[str, float] = {"pg": float(loss.detach())}
    need_h = cfg.entropy_coef > 0 or cfg.tea
    ent = token_entropy(logits) if need_h else None
    if ref_logp is not None and cfg.kl_coef > 0:
        kl = (low_var_kl(logp, ref_logp) * m).sum() / n
        loss = loss + cfg.kl_coef * kl
        info["kl"] = float(kl.detach())
    if ent is not None and cfg.entropy_coef > 0:
        loss = loss - cfg.entropy_coef * (ent * m).sum() / n
    if ent is not None and cfg.tea:
        w = tea_weights(a, logp, mask, cfg.tea_alpha, cfg.tea_ub)
        bonus = (w * ent * m).sum() / n
        loss = loss - cfg.tea_coef * bonus
        info["tea_bonus"] = float(bonus.detach())
    return loss, info

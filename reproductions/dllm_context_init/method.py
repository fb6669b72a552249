"""Context-aware initialisation of a masked diffusion LM (Miao et al. 2025, spec §3).

- :func:`inject` — §3.2(a) token injection: x_i^(0) = x̂_i with probability ρ, else [MASK];
  injected tokens are *provisional* until a DLLM forward pass has scored them.
- :func:`interp_weights` — §3.2(b) embedding interpolation: e_i = (1-α)E[M] + αE[x̂_i] while i is
  masked (the position stays masked and eligible for commitment).
- :func:`decode` — §3.3 adaptive (threshold) parallel unmasking in semi-AR blocks with the
  NFE counter (one per DLLM forward pass per sequence) and confidence-based remasking of
  provisional tokens ("prior skepticism"). ``fixed_k > 0`` is the LLaDA fixed-step baseline B0.

The DLLM is any callable ``dllm(x (b, n) long, rows (b,) long, mix) -> (conf, pred, score)``, each
(b, n): max_v p(v | x), its argmax, and p(x_j | x) of the current token (see :func:`summarize`);
``rows`` index the problems of the batch (for the prompt) and ``mix`` is ``None`` or
``(draft (b, n), weight (b, n))`` for interpolated input embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, get_args

import torch
import torch.nn.functional as F

from suite.errors import ConfigError, UnknownNameError

# "paper" is the method. TEST-ONLY broken variants: decoders "never-score" (injected tokens frozen
# unscored), "remask-committed" (remasking touches decoder commits); teeth of the paper claims
# "untrained-dllm" (the DLLM is not trained), "random-drafts" (drafts are random symbols) and
# "gold-drafts" (the gold answer leaks into the drafts).
Variant = Literal["paper", "never-score", "remask-committed", "untrained-dllm", "random-drafts", "gold-drafts"]
VARIANTS = get_args(Variant)
Mix = Optional[tuple[torch.Tensor, torch.Tensor]]
Stats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
DLLM = Callable[[torch.Tensor, torch.Tensor, Mix], Stats]


def summarize(probs: torch.Tensor, x: torch.Tensor) -> Stats:
    """(max_v p, argmax_v p, p(x_j)) of per-position distributions ``probs`` (b, n, V)."""
    conf, pred = probs.max(-1)
    return conf, pred, probs.gather(2, x.clamp(0, probs.shape[-1] - 1)[..., None]).squeeze(2)


@dataclass(frozen=True)
class DecodeConfig:
    """§3.3/§3.4 decoder settings (defaults: spec; UNVERIFIED in the paper)."""

    tau: float = 0.9            # commit threshold on max_v p(v)
    block_len: int = 24         # semi-AR block length B (CPU: one block = n)
    remask: bool = False        # confidence-based remasking of provisional (injected) tokens
    tau_remask: float = 0.3
    fixed_k: int = 0            # >0: commit exactly k per pass (LLaDA low-confidence schedule, B0)
    remask_rule: str = "confidence"  # "random": control arm, as many remasks per sequence at random positions
    variant: str = "paper"      # TEST-ONLY broken variants, see VARIANTS

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UnknownNameError(f"unknown decoder variant {self.variant!r}; use one of {VARIANTS}")
        if self.remask_rule not in ("confidence", "random"):
            raise ConfigError(f"remask_rule={self.remask_rule!r}: use 'confidence' or 'random'")
        if not 0.0 < self.tau <= 1.0 or self.block_len < 1:
            raise ConfigError("DecodeConfig: need 0 < tau <= 1 and block_len >= 1")


@dataclass
class Decoded:
    tokens: torch.Tensor        # (N, n) final answer tokens
    nfe: torch.Tensor           # (N,) DLLM forward passes per sequence
    remasked: torch.Tensor      # (N,) positions remasked
    forward_calls: int = 0      # batched DLLM calls (not NFE: one call serves many sequences)
    trace: list[torch.Tensor] = field(default_factory=list)  # states after each pass (if asked)


def inject(draft: torch.Tensor, rho: float, mask_id: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """§3.2(a): g_i ~ Bernoulli(ρ); x_i = x̂_i where g_i (and the draft has a token), else [MASK].
    Returns (x0, provisional). ρ = 0 draws nothing from ``gen`` (the baseline state exactly)."""
    if rho <= 0.0:
        return torch.full_like(draft, mask_id), torch.zeros_like(draft, dtype=torch.bool)
    g = torch.rand(draft.shape, generator=gen) < rho
    prov = g & (draft != mask_id)
    return torch.where(prov, draft, torch.full_like(draft, mask_id)), prov


def broken_drafts(variant: str, draft: torch.Tensor, gold: torch.Tensor, mask_id: int, symbols: torch.Tensor,
                  gen: torch.Generator) -> torch.Tensor:
    """The drafts a broken variant decodes from (the method's ``draft`` otherwise): "random-drafts"
    puts a random symbol at every drafted position; "gold-drafts" leaks the gold answer."""
    if variant == "random-drafts":
        rnd = symbols[torch.randint(len(symbols), draft.shape, generator=gen)]
        return torch.where(draft != mask_id, rnd, draft)
    if variant == "gold-drafts":
        return gold.clone()
    return draft


def interp_weights(draft: torch.Tensor, alpha: float, mask_id: int, rho: float = 1.0,
                   gen: torch.Generator | None = None) -> torch.Tensor:
    """§3.2(b): per-position α where the draft has a token (optionally on a Bernoulli(ρ) subset)."""
    w = (draft != mask_id).float() * alpha
    if rho < 1.0:
        if gen is None:
            raise ConfigError("interp_weights with rho < 1 needs a generator")
        w = w * (torch.rand(draft.shape, generator=gen) < rho).float()
    return w


@torch.no_grad()
def decode(dllm: DLLM, x0: torch.Tensor, provisional: torch.Tensor, mask_id: int, cfg: DecodeConfig,
           mix: Mix = None, max_passes: int | None = None, keep_trace: bool = False,
           generator: torch.Generator | None = None) -> Decoded:
    """Threshold decoding (§3.3) of all sequences of ``x0`` (N, n); finished sequences leave the batch.

    Per pass over the active sequences: probs = DLLM(x); NFE += 1; in the current block (the first
    with a masked position) commit every masked i with max_v p >= τ (else the single most
    confident one); with ``remask``, every provisional j with p(x_j) < τ_remask becomes [MASK].
    Provisional tokens are scored by the first pass that sees them (kept = verified; remasked =
    returned to the decoder), so a position is remasked at most once (R = 1) and tokens the
    decoder committed are never remasked. A sequence is done when nothing is masked or provisional.
    ``remask_rule="random"`` is the control arm of C2: each pass remasks as many provisional tokens per
    sequence as the confidence rule would, at uniformly random provisional positions (``generator``).
    """
    x = x0.clone()
    prov = provisional.clone() & (x != mask_id)
    if cfg.variant == "never-score":
        prov.zero_()  # broken: injected tokens frozen without ever being scored
    n_seq, n = x.shape
    nfe = torch.zeros(n_seq, dtype=torch.long)
    remasked = torch.zeros(n_seq, dtype=torch.long)
    pos = torch.arange(n)
    draft_all, w_all = mix if mix is not None else (None, None)
    calls, trace = 0, []
    limit = max_passes if max_passes is not None else 4 * n + 4
    for _ in range(limit):
        active = ((x == mask_id).any(1) | prov.any(1)).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        xa, pa = x[active], prov[active]
        masked = xa == mask_id
        m = None if draft_all is None else (draft_all[active], w_all[active] * masked.float())
        conf, pred, score = dllm(xa, active, m)
        calls += 1
        nfe[active] += 1  # NFE: one DLLM forward pass per active sequence (§4)
        start = (masked.float().argmax(1) // cfg.block_len) * cfg.block_len
        cand = masked & (pos[None] >= start[:, None]) & (pos[None] < start[:, None] + cfg.block_len)
        conf_c = torch.where(cand, conf, torch.full_like(conf, -1.0))
        if cfg.fixed_k > 0:  # B0: LLaDA low-confidence schedule, k tokens per step
            k = min(cfg.fixed_k, n)
            top = conf_c.topk(k, 1).indices
            commit = torch.zeros_like(cand).scatter_(1, top, True) & cand
        else:
            commit = cand & (conf_c >= cfg.tau)
            need = cand.any(1) & ~commit.any(1)
            commit[need, conf_c[need].argmax(1)] = True
        if cfg.remask:
            eligible = pa if cfg.variant != "remask-committed" else (~masked)
            rm = eligible & (score < cfg.tau_remask)
            if cfg.remask_rule == "random":  # same count per sequence, positions drawn at random
                key = torch.rand(eligible.shape, generator=generator).to(eligible.device).masked_fill(~eligible, 2.0)
                rm = key.argsort(1).argsort(1) < rm.sum(1, keepdim=True)
            xa = torch.where(rm, torch.full_like(xa, mask_id), xa)
            remasked[active] += rm.sum(1)
        xa = torch.where(commit, pred, xa)
        x[active] = xa
        prov[active] = False  # every provisional token of these sequences has now been scored
        if keep_trace:
            trace.append(x.clone())
    return Decoded(x, nfe, remasked, calls, trace)


# ---------------------------------------------------------------------------------- DLLM wrappers

class TinyDLLM:
    """A bidirectional ``TransformerLM`` over [prompt | answer] as a DLLM callable (probabilities of
    the answer positions; special tokens other than EOS get probability 0)."""

    def __init__(self, model: torch.nn.Module, prompt: torch.Tensor, prompt_mask: torch.Tensor,
                 mask_id: int, banned: list[int]) -> None:
        self.model, self.prompt, self.pmask, self.mask_id = model.eval(), prompt, prompt_mask, mask_id
        self.banned = torch.tensor(banned, dtype=torch.long)

    def __call__(self, x: torch.Tensor, rows: torch.Tensor, mix: Mix = None) -> Stats:
        p = self.prompt[rows]
        tokens = torch.cat([p, x], 1)
        key = torch.cat([self.pmask[rows], torch.ones_like(x, dtype=torch.bool)], 1)
        mdl = self.model
        emb = mdl.tok_emb(tokens)
        if mix is not None:  # §3.2(b): e_i = (1-α)E[M] + αE[x̂_i] at masked answer positions
            draft, w = mix
            e_draft = mdl.tok_emb(draft)
            ea = emb[:, p.shape[1]:]
            emb = torch.cat([emb[:, :p.shape[1]], ea + w[..., None] * (e_draft - ea)], 1)
        logits = mdl(tokens, key, inputs_embeds=emb)[:, p.shape[1]:].float()
        logits[..., self.banned] = float("-inf")
        return summarize(logits.softmax(-1), x)


class StubDLLM:
    """Spec §6 smoke stub: always predicts the gold token. For a masked position the confidence is
    1 - 0.5^(1+k), k = unmasked answer positions within distance 2, so adaptive decoding takes
    several passes; a visible token scores ``p_visible`` if it is gold, else near 0. Counts the
    sequences it was called on (to check the NFE counter)."""

    def __init__(self, gold: torch.Tensor, vocab: int, mask_id: int, p_visible: float = 0.99,
                 visible_all_low: bool = False) -> None:
        self.gold, self.vocab, self.mask_id = gold, vocab, mask_id
        self.p_visible, self.visible_all_low = p_visible, visible_all_low
        self.rows_seen = 0

    def __call__(self, x: torch.Tensor, rows: torch.Tensor, mix: Mix = None) -> Stats:
        self.rows_seen += int(rows.numel())
        gold = self.gold[rows]
        masked = (x == self.mask_id).float()
        k = F.conv1d((1 - masked)[:, None], torch.tensor([[[1.0, 1.0, 0.0, 1.0, 1.0]]]), padding=2)[:, 0]
        c = torch.where(masked.bool(), 1 - 0.5 ** (1 + k), torch.full_like(k, self.p_visible))
        if self.visible_all_low:
            c = torch.where(masked.bool(), c, torch.full_like(c, 0.01))
        probs = ((1 - c) / (self.vocab - 1))[..., None].expand(*x.shape, self.vocab).clone()
        probs.scatter_(2, gold[..., None], c[..., None])
        return summarize(probs, x)


# ---------------------------------------------------------------------------------- training

def masked_diffusion_loss(model: torch.nn.Module, prompt: torch.Tensor, pmask: torch.Tensor,
                          answer: torch.Tensor, mask_id: int, symbols: torch.Tensor,
                          visible_noise: float = 0.1, visible_weight: float = 1.0) -> torch.Tensor:
    """Spec §6: t ~ U(0,1), mask answer tokens with probability t, CE on masked positions weighted
    1/t (normalised by the answer length). Plus (our addition, README) a denoising term: a fraction
    ``visible_noise`` of the *visible* answer tokens is replaced by random symbols and every visible
    position is trained to predict the clean token, so p(x_j | x) at a visible position is a
    meaningful score for remasking (§3.3)."""
    b, n = answer.shape
    t = torch.rand(b, 1).clamp_min(1e-3)
    masked = torch.rand(b, n) < t
    x = torch.where(masked, torch.full_like(answer, mask_id), answer)
    if visible_noise > 0:
        noise = (~masked) & (torch.rand(b, n) < visible_noise)
        rnd = symbols[torch.randint(len(symbols), (b, n))]
        x = torch.where(noise, rnd, x)
    tokens = torch.cat([prompt, x], 1)
    key = torch.cat([pmask, torch.ones_like(x, dtype=torch.bool)], 1)
    logits = model(tokens, key)[:, prompt.shape[1]:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), answer.reshape(-1), reduction="none").view(b, n)
    loss = (ce * masked.float() / t).sum() / (b * n)
    if visible_weight > 0:
        loss = loss + visible_weight * (ce * (~masked).float()).sum() / (b * n)
    return loss


def causal_loss(model: torch.nn.Module, prompt: torch.Tensor, answer: torch.Tensor, pad_id: int,
                eos_id: int) -> torch.Tensor:
    """Auxiliary AR model: next-token CE on the answer (chain + first EOS), prompt as context."""
    ans = answer.clone()
    after_first = torch.cumsum((ans == eos_id).long(), 1) > 1
    ans[after_first] = pad_id
    seq = torch.cat([prompt, ans], 1)
    logits = model(seq[:, :-1])[:, prompt.shape[1] - 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ans.reshape(-1), ignore_index=pad_id)

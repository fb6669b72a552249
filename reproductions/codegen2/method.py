"""CodeGen2's objective mixture and infill format (Nijkamp et al. 2023, spec §3), written for the
shared tiny ``TransformerLM``.

- :func:`span_corrupt` — span corruption in causal form (§3): ``corrupted <|endoftext|> <sep>
  <mask_1> s_1 <eom> ... <mask_k> s_k <eom>``; :func:`uncorrupt` inverts it exactly.
- :func:`infill_prompt` — the model-card infill prompt ``prefix <mask_1> suffix <|endoftext|> <sep>
  <mask_1>`` (prefix, sentinel, suffix: not FIM ordering, §7).
- :func:`forward` — causal or Prefix-LM attention (bidirectional over the first P tokens of each
  row, causal after; §3 ablation) with left-padding-aware positions.
- :func:`lm_loss` — next-token CE under a per-token loss mask.
- :func:`sample` — batched left-to-right sampling until a stop token (generated tokens stay causal), with the
  suite's key-value cache (``suite.models.decoding``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from suite.models import decoding
from suite.models.tokenizer import Tokenizer
from suite.models.transformer import TransformerLM

N_SENTINELS = 8
SENTINELS = tuple(f"<mask_{i}>" for i in range(1, N_SENTINELS + 1))
EOT, SEP, EOM = "<|endoftext|>", "<sep>", "<eom>"


def tokenizer(chars: str) -> Tokenizer:
    """Character vocabulary + the new sentinel entries (never produced by ``encode`` of data, §7)."""
    return Tokenizer(set(chars) | set(SENTINELS) | {EOT, SEP, EOM}, "char")


@dataclass(frozen=True)
class SpanConfig:
    """§3 span hyper-parameters (UNVERIFIED in the paper; exposed in the run config)."""

    frac: float = 0.15      # corrupted fraction of tokens
    mean_len: float = 3.0   # span length ~ Poisson(mean) clipped to >= 1
    max_spans: int = N_SENTINELS


def sample_spans(T: int, cfg: SpanConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Non-overlapping spans [s, e) inside one document of length T, left to right, covering about
    ``frac`` of the tokens (at least one span, at most ``max_spans``)."""
    budget = max(1, int(round(cfg.frac * T)))
    lens = []
    while sum(lens) < budget and len(lens) < cfg.max_spans:
        lens.append(int(max(1, rng.poisson(cfg.mean_len))))
    lens = [min(x, max(1, T // (2 * len(lens)))) for x in lens]
    free = T - sum(lens) - (len(lens) - 1)  # keep >= 1 token between spans
    if free < 0:
        lens = lens[:1]
        free = T - lens[0]
    gaps = np.sort(rng.integers(0, free + 1, size=len(lens)))
    spans, offset = [], 0
    for i, (g, ln) in enumerate(zip(gaps, lens)):
        s = int(g) + offset + i
        spans.append((s, s + ln))
        offset += ln
    return spans


def span_corrupt(ids: list[int], spans: list[tuple[int, int]], tok: Tokenizer, variant: str = "paper") -> list[int]:
    """§3 causal-form span corruption of one document. ``variant="drop-last"`` is a TEST-ONLY bug
    (each span's last token is lost from the target), which the round-trip claim must catch."""
    st = tok.stoi
    out, tail, last = [], [st[EOT], st[SEP]], 0
    for j, (s, e) in enumerate(spans):
        m = st[SENTINELS[j]]
        out += ids[last:s] + [m]
        tail += [m] + ids[s:e - (variant == "drop-last")] + [st[EOM]]
        last = e
    return out + ids[last:] + tail


def uncorrupt(seq: list[int], tok: Tokenizer) -> list[int]:
    """Rebuild the source from a span-corrupted sequence (inverse of :func:`span_corrupt`)."""
    st = tok.stoi
    eot = seq.index(st[EOT])
    corrupted, tail = seq[:eot], seq[eot + 2:]
    sent = {st[s]: i for i, s in enumerate(SENTINELS)}
    fills: dict[int, list[int]] = {}
    i = 0
    while i < len(tail):
        j = tail.index(st[EOM], i)
        fills[tail[i]] = tail[i + 1:j]
        i = j + 1
    out: list[int] = []
    for t in corrupted:
        out += fills[t] if t in sent else [t]
    return out


def infill_prompt(prefix: str, suffix: str) -> str:
    """Model-card infill prompt (§3): ``prefix + "<mask_1>" + suffix + "<|endoftext|>" + "<sep>" + "<mask_1>"``."""
    return prefix + SENTINELS[0] + suffix + EOT + SEP + SENTINELS[0]


def encode_mixed(text_parts: list[str | int], tok: Tokenizer) -> list[int]:
    """Encode a list of text pieces (chars) and token ids / sentinel names."""
    out: list[int] = []
    for p in text_parts:
        if isinstance(p, int):
            out.append(p)
        elif p in tok.stoi and len(p) > 1:
            out.append(tok.stoi[p])
        else:
            out += tok.encode(p)
    return out


def encode_infill_prompt(prefix: str, suffix: str, tok: Tokenizer) -> list[int]:
    return encode_mixed([prefix, SENTINELS[0], suffix, EOT, SEP, SENTINELS[0]], tok)


def decode(ids: list[int], tok: Tokenizer) -> str:
    """Text of ids with sentinels spelled out (pad dropped)."""
    return "".join(tok.itos[i] for i in ids if i != tok.pad_id)


# ------------------------------------------------------------------------------------- the model

def attention_mask(key_mask: torch.Tensor, prefix_end: torch.Tensor | None) -> torch.Tensor:
    """(B, 1, T, T) bool: query i may attend key j. Causal (j <= i) everywhere, plus j < prefix_end
    for queries i < prefix_end (Prefix-LM: the prefix attends both ways, the rest causally)."""
    b, t = key_mask.shape
    i = torch.arange(t)
    allowed = (i[None, :] <= i[:, None])[None].expand(b, t, t)
    if prefix_end is not None:
        inside = i[None, :] < prefix_end[:, None]  # (B, T)
        allowed = allowed | (inside[:, :, None] & inside[:, None, :])
    return ((allowed & key_mask[:, None, :]) | torch.eye(t, dtype=torch.bool)[None])[:, None]


def forward(model: TransformerLM, tokens: torch.Tensor, key_mask: torch.Tensor,
            prefix_end: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, T, V) of a ``TransformerLM`` under :func:`attention_mask`; positions count real
    tokens only, so left-padded prompts see the positions they were trained with."""
    pos = (key_mask.long().cumsum(1) - 1).clamp_min(0)
    return model(tokens, positions=pos, attn_mask=attention_mask(key_mask, prefix_end))


def lm_loss(model: TransformerLM, tokens: torch.Tensor, key_mask: torch.Tensor, loss_mask: torch.Tensor,
            prefix_end: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token CE; ``loss_mask[:, t]`` says whether token t is a target."""
    logits = forward(model, tokens, key_mask, prefix_end)[:, :-1]
    tgt = tokens[:, 1:].masked_fill(~loss_mask[:, 1:], -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)


@torch.no_grad()
def sample(model: TransformerLM, prompts: list[list[int]], max_new: int, stop_ids: list[int], pad_id: int,
           temperature: float = 0.0, prefix_lm: bool = False, gen: torch.Generator | None = None,
           prefix_trim: int = 0) -> list[list[int]]:
    """Left-padded batched sampling with the suite's key-value cache (``suite.models.decoding.generate``,
    issue 17 item 3); each row stops at its first stop token (kept out of the output); padding is never
    sampled. Prefix-LM: the prompt (less its last ``prefix_trim`` tokens, which training treats as targets)
    is the prefix, encoded once with bidirectional attention; generated tokens attend causally to it and to
    each other (§3, §7), so the cache is exact."""
    dev = next(model.parameters()).device
    b = len(prompts)
    t0 = max(len(p) for p in prompts)
    toks = torch.full((b, t0), pad_id, dtype=torch.long)
    km = torch.zeros(b, t0, dtype=torch.bool)
    for i, p in enumerate(prompts):  # ragged -> padded, once
        toks[i, t0 - len(p):] = torch.tensor(p)
        km[i, t0 - len(p):] = True
    out = decoding.generate(model, toks.to(dev), max_new, temperature=temperature, eos_id=stop_ids or None,
                            generator=gen, key_mask=km.to(dev), prefix_end=t0 - prefix_trim if prefix_lm else None,
                            suppress_ids=[pad_id])
    res = []
    for row in out[:, t0:].tolist():
        cut = [i for i, t in enumerate(row) if t in stop_ids]
        res.append(row[:cut[0]] if cut else row)
    return res

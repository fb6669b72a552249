"""Key-value-cached sampling for :class:`~suite.models.transformer.TransformerLM` (issue 17 item 3).

``TransformerLM.generate`` re-runs the whole sequence for every new token: O(T²) token-forwards for T tokens.
:func:`generate` keeps every layer's keys and values and runs only the new token through the network, so a
step costs one token-forward plus attention over the cache. It returns what ``TransformerLM.generate``
returns (the same tokens up to float round-off, tested), and also takes left-padded prompts of different
lengths: ``key_mask`` marks the real tokens, and positions count real tokens only (as Hugging Face models
do), so a padded row decodes as the same prompt would alone. ``prefix_end`` decodes a Prefix-LM (the prompt's
first columns attend to each other both ways, everything after causally; CodeGen2 §3): the prefix's keys and
values never depend on later tokens, so the cache is exact there too. ``eos_id`` may list several stop tokens
and ``suppress_ids`` bans tokens (e.g. padding) from being picked.

The cache is built from the model's own modules (``tok_emb``, ``pos_emb``, ``blocks[i].attn.qkv`` ...), so
the model is unchanged and every reproduction's trained weights decode here as they are.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from suite.errors import ConfigError
from suite.models.blocks import Block, apply_rotary, rotary_tables
from suite.models.transformer import TransformerLM


def _block(blk: Block, h: torch.Tensor, cache: list[torch.Tensor] | None, mask: torch.Tensor,
           rope: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``Block.forward`` (pre-norm attention, then MLP) for the new positions ``h`` (B, t, dim), attending to
    the cached keys/values and to themselves; ``mask`` (B, 1, t, cached + t) bool, True = may attend."""
    attn = blk.attn
    b, t, d = h.shape
    q, k, v = attn.qkv(blk.norm1(h)).view(b, t, 3, attn.heads, d // attn.heads).permute(2, 0, 3, 1, 4)
    if rope is not None:
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    if cache is not None:
        k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    h = h + blk.drop(attn.proj(y.transpose(1, 2).reshape(b, t, d)))
    return h + blk.mlp(blk.norm2(h)), [k, v]


def _forward(model: TransformerLM, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             caches: list[list[torch.Tensor]] | None) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Logits of the last position of ``tokens`` (B, t), and the caches extended by these t positions."""
    h = model.tok_emb(tokens)
    rope = None
    if model.pos_emb is None:
        rope = rotary_tables(positions, model.dim // model.heads)
    else:
        h = h + model.pos_emb(positions)
    new = []
    for i, blk in enumerate(model.blocks):
        h, kv = _block(blk, h, None if caches is None else caches[i], mask, rope)
        new.append(kv)
    return model.head(model.norm(h[:, -1])), new


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None,
          generator: torch.Generator | None) -> torch.Tensor:
    """The next token from ``logits`` (B, vocab), as ``TransformerLM.generate`` picks it."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)


@torch.no_grad()
def generate(model: TransformerLM, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, eos_id: int | Sequence[int] | None = None,
             generator: torch.Generator | None = None,
             key_mask: torch.Tensor | None = None,
             on_logits: Callable[[torch.Tensor], None] | None = None,
             prefix_end: torch.Tensor | int | None = None, suppress_ids: Sequence[int] = ()) -> torch.Tensor:
    """Sample a continuation of ``prompt`` (B, T0) with a key-value cache; returns (B, T0 + new).

    The arguments mean what they mean in ``TransformerLM.generate``: ``temperature == 0`` is greedy,
    ``top_k`` keeps the k most likely tokens, rows that emitted ``eos_id`` keep emitting it and decoding stops
    when every row has (``eos_id`` a sequence: any of them stops a row, which then keeps emitting the first).
    ``key_mask`` (B, T0) bool marks the real prompt tokens of left-padded rows (padding is never attended to
    and takes no position). ``on_logits`` sees each step's next-token logits (B, vocab),
    float, before temperature and top-k (e.g. to sum the policy's entropy); ``suppress_ids`` are then set to
    -inf, so they are never picked. ``prefix_end`` (int or (B,) long, prompt columns): Prefix-LM prefill, the
    prompt columns j < prefix_end of a row attend to each other both ways (real tokens only), the other prompt
    columns and every generated token attend causally (to the prefix, the cache and themselves). Unlike
    ``generate``, the context is never cropped: T0 + new must fit ``max_len`` (a cache cannot slide learned
    absolute positions).
    """
    if not model.causal:
        raise ConfigError("decoding.generate needs a causal TransformerLM; decode a bidirectional model by "
                          "iterative unmasking instead")
    b, t0 = prompt.shape
    if t0 + max_new_tokens > model.max_len:
        raise ConfigError(f"decoding.generate: prompt {t0} + {max_new_tokens} new tokens exceed max_len "
                          f"{model.max_len}; shorten the prompt or max_new_tokens (or use TransformerLM.generate, "
                          f"which crops the context)")
    dev = prompt.device
    real = torch.ones(b, t0, dtype=torch.bool, device=dev) if key_mask is None else key_mask.to(dev, torch.bool)
    was_training = model.training
    model.eval()
    try:
        # prefill: causal attention over the real prompt tokens (a padding query attends to itself: no NaN row)
        causal = torch.ones(t0, t0, dtype=torch.bool, device=dev).tril()
        eye = torch.eye(t0, dtype=torch.bool, device=dev)
        allowed = causal
        if prefix_end is not None:  # Prefix-LM: bidirectional inside the prefix, causal after it
            inside = torch.arange(t0, device=dev)[None, :] < torch.as_tensor(prefix_end, device=dev).reshape(-1, 1)
            allowed = causal | (inside[:, :, None] & inside[:, None, :])  # (B, T0, T0)
            allowed = allowed[:, None]
        mask = (real[:, None, None, :] & allowed) | eye
        pos = (real.long().cumsum(1) - 1).clamp_min(0)
        logits, caches = _forward(model, prompt, pos, mask, None)
        nxt_pos = real.long().sum(1)  # (B,) the next position of every row
        keys = real
        out = prompt
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        stops = None
        if eos_id is not None:
            stops = torch.as_tensor(eos_id, dtype=torch.long, device=dev).reshape(-1)
        banned = torch.as_tensor(list(suppress_ids), dtype=torch.long, device=dev)
        for step in range(max_new_tokens):
            if on_logits is not None:
                on_logits(logits.float())
            logits = logits.float()
            if len(banned):
                logits = logits.index_fill(1, banned, float("-inf"))
            nxt = _pick(logits, temperature, top_k, generator)
            if stops is not None:
                nxt = torch.where(done, stops[0], nxt)
                done = done | torch.isin(nxt, stops)
            out = torch.cat([out, nxt[:, None]], 1)
            if step + 1 == max_new_tokens or (stops is not None and bool(done.all())):
                break
            keys = torch.cat([keys, torch.ones(b, 1, dtype=torch.bool, device=dev)], 1)
            logits, caches = _forward(model, nxt[:, None], nxt_pos[:, None], keys[:, None, None, :], caches)
            nxt_pos = nxt_pos + 1
    finally:
        model.train(was_training)
    return out

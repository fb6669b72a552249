"""A tiny transformer over tokens: causal (GPT-style language model) or bidirectional (mask
prediction, e.g. masked-diffusion LMs, Sahoo et al. 2024 / Nie et al. 2025). Learned positional
embeddings, pre-norm blocks, final LayerNorm, optional tied input/output embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError
from suite.models.blocks import Block, rotary_tables


class TransformerLM(nn.Module):
    """``forward(tokens (B, T) long, key_mask (B, T) bool | None) -> logits (B, T, vocab)``.

    ``causal=True``: position t attends to positions <= t (next-token prediction);
    ``causal=False``: full attention (predict [MASK]ed tokens). ``key_mask`` marks real tokens (True)
    vs padding. ``pos_encoding``: "learned" absolute embeddings or "rope" (rotary). ``tok_emb``,
    ``pos_emb`` (None under rope), ``blocks`` (each with ``.attn``/``.mlp``), ``norm`` and ``head``
    are public for papers that edit them (vocabulary expansion, FFN surgery).
    """

    def __init__(self, vocab_size: int, max_len: int = 128, dim: int = 128, depth: int = 2, heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, causal: bool = True,
                 tie_embeddings: bool = True, pos_encoding: str = "learned") -> None:
        super().__init__()
        if pos_encoding not in ("learned", "rope"):
            raise ConfigError(f"TransformerLM: pos_encoding '{pos_encoding}' unknown; use 'learned' or 'rope'")
        self.vocab_size, self.max_len, self.dim, self.causal = vocab_size, max_len, dim, causal
        self.heads = heads
        self.tok_emb = nn.Embedding(vocab_size, dim)
        # "learned": absolute position embeddings added to the input; "rope": rotary embeddings of
        # queries and keys in every layer (GPT-J / CodeGen2 / Llama), no ``pos_emb``
        self.pos_emb = nn.Embedding(max_len, dim) if pos_encoding == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.tok_emb.weight
        self.apply(_init_weights)

    def hidden(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None, *,
               inputs_embeds: torch.Tensor | None = None, positions: torch.Tensor | None = None,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, dim).

        ``inputs_embeds`` replaces ``tok_emb(tokens)`` (e.g. interpolated embeddings),
        ``positions`` (T,) or (B, T) replaces ``0..T-1`` (e.g. left-padded prompts), and
        ``attn_mask`` (bool, True = may attend) replaces the causal/key mask (e.g. prefix-LM).
        """
        t = tokens.shape[1]
        if t > self.max_len:
            raise ConfigError(f"TransformerLM: sequence length {t} exceeds max_len {self.max_len}; "
                              f"raise max_len or crop the input")
        pos = torch.arange(t, device=tokens.device) if positions is None else positions
        emb = self.tok_emb(tokens) if inputs_embeds is None else inputs_embeds
        rope = None
        if self.pos_emb is None:
            rope = rotary_tables(pos, self.dim // self.heads)
        else:
            emb = emb + self.pos_emb(pos)
        h = self.drop(emb)
        for blk in self.blocks:
            h = blk(h, self.causal, key_mask, attn_mask, rope)
        return self.norm(h)

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None, **kw: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab); keyword arguments as in :meth:`hidden`."""
        return self.head(self.hidden(tokens, key_mask, **kw))

    def loss(self, tokens: torch.Tensor, pad_id: int | None = None) -> torch.Tensor:
        """Next-token cross-entropy (causal models), ignoring ``pad_id`` targets."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=-100 if pad_id is None else pad_id)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, eos_id: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample a continuation of ``prompt`` (B, T0) autoregressively; returns (B, T0 + new).

        ``temperature == 0`` is greedy; ``top_k`` keeps the k most likely tokens. Rows that emitted
        ``eos_id`` keep emitting it. The context is cropped to the last ``max_len`` tokens.
        """
        if not self.causal:
            raise ConfigError("TransformerLM.generate needs causal=True; decode a bidirectional model "
                              "by iterative unmasking instead")
        was_training = self.training
        self.eval()
        out = prompt
        done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
        for _ in range(max_new_tokens):
            logits = self(out[:, -self.max_len:])[:, -1].float()
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = logits.topk(top_k, -1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(-1)
                g = generator
                if g is not None and g.device != probs.device:
                    probs = probs.to(g.device)
                nxt = torch.multinomial(probs, 1, generator=g).squeeze(1).to(out.device)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done = done | (nxt == eos_id)
            out = torch.cat([out, nxt[:, None]], 1)
            if eos_id is not None and bool(done.all()):
                break
        self.train(was_training)
        return out


def _init_weights(m: nn.Module) -> None:
    """GPT-2 style: normal(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)

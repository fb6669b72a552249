"""Supervised fine-tuning of a tiny character-level causal LM, and exact-match evaluation.

The data-selection papers train the same small model on each selected subset and compare what it
learned (MIG, Diversify-and-Conquer, RDS+ at CPU scale). One way to do it, here:

- :class:`CharVocab`: pad 0, eos 1, then printable ASCII and newline; an item is
  ``prompt + "\\n" + answer + <eos>``.
- :func:`train_sft`: a fresh (or given) :class:`suite.models.TransformerLM` trained with the shared
  loop :func:`suite.train.fit`; cross-entropy on the answer tokens and eos (``loss_on="answer"``)
  or on every token (``loss_on="all"``: language-model pretraining on unlabeled text).
- :func:`exact_match`: batched greedy decoding of left-padded prompts (padding keys masked, positions
  counted from each row's first real token, so a row decodes as it would alone), compared with the
  reference answers.
- :func:`hidden_states`: final hidden states of right-padded texts with their mask.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from suite.errors import ConfigError
from suite.models import TransformerLM
from suite.train import TrainConfig, fit

PAD, EOS = 0, 1
_CHARS = "\n" + "".join(chr(c) for c in range(32, 127))


class CharVocab:
    """Character vocabulary: ids 0 (pad), 1 (eos), then newline and printable ASCII (98 in all)."""

    size = 2 + len(_CHARS)
    _index = {c: i + 2 for i, c in enumerate(_CHARS)}

    @classmethod
    def encode(cls, text: str) -> list[int]:
        try:
            return [cls._index[c] for c in text]
        except KeyError as err:
            raise ConfigError(f"CharVocab: character {err.args[0]!r} is not printable ASCII") from None

    @classmethod
    def decode(cls, ids: Sequence[int]) -> str:
        """Characters up to the first eos (pads skipped)."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= 2:
                out.append(_CHARS[i - 2])
        return "".join(out)


@dataclass(frozen=True)
class SFTConfig:
    """Model size and training budget of one SFT run (Adam, cosine decay after a short warmup)."""

    dim: int = 96
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    max_len: int = 96
    steps: int = 300
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.0
    loss_on: Literal["answer", "all"] = "answer"

    def __post_init__(self) -> None:
        if self.loss_on not in ("answer", "all"):
            raise ConfigError(f"SFTConfig: loss_on={self.loss_on!r}; use 'answer' or 'all'")
        if min(self.dim, self.depth, self.heads, self.max_len, self.batch) < 1 or self.steps < 0 or self.lr <= 0:
            raise ConfigError("SFTConfig: dim, depth, heads, max_len, batch >= 1, steps >= 0 and lr > 0")


def encode_items(prompts: Sequence[str], answers: Sequence[str] | None, max_len: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token rows (N, T) and the loss mask (N, T) over target positions: the answer and
    eos when ``answers`` is given, every real token after the first otherwise."""
    rows, masks = [], []
    for i, p in enumerate(prompts):
        if answers is None:
            ids = CharVocab.encode(p) + [EOS]
            mask = [False] + [True] * (len(ids) - 1)
        else:
            head = CharVocab.encode(p + "\n")
            ids = head + CharVocab.encode(answers[i]) + [EOS]
            mask = [False] * len(head) + [True] * (len(ids) - len(head))
        if len(ids) > max_len:
            raise ConfigError(f"encode_items: item {i} has {len(ids)} tokens > max_len={max_len}; raise max_len")
        rows.append(ids), masks.append(mask)
    t = max(len(r) for r in rows)
    tok = torch.full((len(rows), t), PAD, dtype=torch.long)
    msk = torch.zeros(len(rows), t, dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tok[i, :len(r)] = torch.tensor(r)
        msk[i, :len(m)] = torch.tensor(m)
    return tok, msk


def new_model(cfg: SFTConfig, seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(CharVocab.size, max_len=cfg.max_len, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                         mlp_ratio=cfg.mlp_ratio)


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    tok, msk = batch
    logits = model(tok[:, :-1])
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1), reduction="none")
    w = msk[:, 1:].reshape(-1).float()
    return (ce * w).sum() / w.sum().clamp(min=1.0)


def train_sft(prompts: Sequence[str], answers: Sequence[str] | None, cfg: SFTConfig, *,
              device: str | torch.device = "cpu", seed: int = 0, init: TransformerLM | None = None,
              ctx=None, name: str = "") -> tuple[TransformerLM, dict[str, float]]:
    """Train on (prompt, answer) pairs (``answers=None``: plain texts, every token a target) for
    ``cfg.steps`` steps; returns the model and its cost ``{"steps", "seconds"}``. ``init`` continues
    training that model (in place) instead of a fresh one seeded with ``seed``."""
    if not prompts:
        raise ConfigError("train_sft: no training items (the selected subset is empty)")
    model = init if init is not None else new_model(cfg, seed)
    tok, msk = encode_items(prompts, None if cfg.loss_on == "all" else answers, cfg.max_len)
    if cfg.loss_on == "all" and answers is not None:  # pretraining on prompt + answer as one text
        tok, msk = encode_items([f"{p}\n{a}" for p, a in zip(prompts, answers)], None, cfg.max_len)
    tc = TrainConfig(steps=cfg.steps, batch_size=min(cfg.batch, len(prompts)), lr=cfg.lr, optimizer="adam",
                     weight_decay=cfg.weight_decay, schedule="cosine", warmup_steps=min(cfg.warmup, cfg.steps),
                     log_every=0, bf16=False)
    t0 = time.perf_counter()
    res = fit(model, _loss, (tok, msk), tc, device=device, generator=torch.Generator().manual_seed(seed),
              ctx=ctx, name=name)
    return model, {"steps": float(res.step), "seconds": time.perf_counter() - t0}


@torch.no_grad()
def greedy_decode(model: TransformerLM, prompts: Sequence[str], max_new: int, *,
                  device: str | torch.device = "cpu", batch: int = 256) -> list[str]:
    """Greedy continuation of ``prompt + "\\n"`` for every prompt, up to eos or ``max_new`` tokens."""
    was = model.training
    model.eval()
    dev = torch.device(device)
    model.to(dev)
    out: list[str] = []
    for s in range(0, len(prompts), batch):
        enc = [CharVocab.encode(p + "\n") for p in prompts[s:s + batch]]
        t = max(len(e) for e in enc)
        tok = torch.full((len(enc), t), PAD, dtype=torch.long)
        real = torch.zeros(len(enc), t, dtype=torch.bool)
        for i, e in enumerate(enc):  # left padding
            tok[i, t - len(e):] = torch.tensor(e)
            real[i, t - len(e):] = True
        tok, real = tok.to(dev), real.to(dev)
        done = torch.zeros(len(enc), dtype=torch.bool, device=dev)
        gen = []
        for _ in range(max_new):
            if tok.shape[1] > model.max_len:
                break
            pos = (real.long().cumsum(1) - 1).clamp(min=0)
            nxt = model(tok, key_mask=real, positions=pos)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, EOS), nxt)
            done |= nxt == EOS
            gen.append(nxt)
            tok = torch.cat([tok, nxt[:, None]], 1)
            real = torch.cat([real, torch.ones_like(done)[:, None]], 1)
            if bool(done.all()):
                break
        ids = torch.stack(gen, 1).cpu().tolist() if gen else [[] for _ in enc]
        out += [CharVocab.decode(r) for r in ids]
    model.train(was)
    return out


def exact_match(model: TransformerLM, prompts: Sequence[str], answers: Sequence[str], *,
                device: str | torch.device = "cpu", per_item: bool = False) -> float | torch.Tensor:
    """Fraction of prompts whose greedy answer equals the reference exactly (``per_item``: the
    (N,) bool hits)."""
    if len(prompts) != len(answers) or not prompts:
        raise ConfigError("exact_match: need as many answers as prompts, and at least one")
    preds = greedy_decode(model, prompts, max(len(a) for a in answers) + 1, device=device)
    hits = torch.tensor([p == a for p, a in zip(preds, answers)])
    return hits if per_item else float(hits.float().mean())


@torch.no_grad()
def hidden_states(model: TransformerLM, texts: Sequence[str], *, device: str | torch.device = "cpu",
                  batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Final (normalised) hidden states (N, T, dim) of right-padded texts and the mask (N, T) of real
    tokens, on the CPU."""
    was = model.training
    model.eval()
    dev = torch.device(device)
    model.to(dev)
    enc = [CharVocab.encode(t)[:model.max_len] for t in texts]  # longer texts are cropped to max_len
    if not enc or min(len(e) for e in enc) == 0:
        raise ConfigError("hidden_states: need at least one text and no empty text")
    tok = torch.full((len(enc), max(len(e) for e in enc)), PAD, dtype=torch.long)
    real = torch.zeros_like(tok, dtype=torch.bool)
    for i, e in enumerate(enc):
        tok[i, :len(e)] = torch.tensor(e)
        real[i, :len(e)] = True
    hs = []
    for s in range(0, len(texts), batch):
        hs.append(model.hidden(tok[s:s + batch].to(dev), real[s:s + batch].to(dev)).float().cpu())
    model.train(was)
    return torch.cat(hs), real


__all__ = ["CharVocab", "SFTConfig", "encode_items", "new_model", "train_sft", "greedy_decode", "exact_match",
           "hidden_states", "PAD", "EOS"]

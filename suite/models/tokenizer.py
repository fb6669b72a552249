"""Character- and whitespace-word-level tokenizers with special tokens PAD/BOS/EOS/MASK/UNK and
batch encode/decode to padded tensors."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from suite.errors import ConfigError, CorruptDataError, UnknownNameError
from suite.io import atomic_write_text

SPECIALS = ("<pad>", "<bos>", "<eos>", "<mask>", "<unk>")


class Tokenizer:
    """Vocabulary = the 5 specials (ids 0..4: pad, bos, eos, mask, unk) + sorted symbols.

    ``level="char"``: every character is a token; ``level="word"``: whitespace-separated words,
    decoded with single spaces. Unknown symbols map to ``unk_id``.
    """

    pad_id, bos_id, eos_id, mask_id, unk_id = range(5)

    def __init__(self, symbols: Iterable[str], level: str = "char") -> None:
        if level not in ("char", "word"):
            raise UnknownNameError(f"unknown tokenizer level {level!r}; use 'char' or 'word'")
        self.level = level
        syms = sorted(set(symbols) - set(SPECIALS))
        self.itos: list[str] = [*SPECIALS, *syms]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def fit(cls, texts: Iterable[str], level: str = "char") -> "Tokenizer":
        """Build the vocabulary from a corpus."""
        texts = list(texts)
        syms: set[str] = set()
        for t in texts:
            syms.update(t if level == "char" else t.split())
        return cls(syms, level)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def split(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else text.split()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.stoi.get(s, self.unk_id) for s in self.split(text)]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Symbols of ``ids``; with ``skip_special`` pad/bos/mask are dropped and decoding stops at eos."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if skip_special and i == self.eos_id:
                break
            if skip_special and i < len(SPECIALS) and i != self.unk_id:
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[self.unk_id])
        return ("" if self.level == "char" else " ").join(out)

    def encode_batch(self, texts: Sequence[str], bos: bool = False, eos: bool = False,
                     max_len: int | None = None, pad_to: int | None = None,
                     left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) padded with ``pad_id`` and a bool mask (True = real token).

        Sequences longer than ``max_len`` are cropped (keeping the start); T = max(longest, pad_to).
        ``left_pad`` puts padding before the tokens (handy for batched generation).
        """
        return pad_sequences([self.encode(t, bos, eos)[:max_len] for t in texts], self.pad_id, pad_to, left_pad)

    def decode_batch(self, ids: torch.Tensor, skip_special: bool = True) -> list[str]:
        return [self.decode(row, skip_special) for row in ids.tolist()]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON (atomically)."""
        atomic_write_text(path, json.dumps({"level": self.level, "itos": self.itos}))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Tokenizer":
        try:
            d = json.loads(Path(path).read_text())
            tok = cls(d["itos"][len(SPECIALS):], d["level"])
        except (OSError, ValueError, KeyError) as e:
            raise CorruptDataError(f"tokenizer file {path} is unreadable ({e}); rebuild it with Tokenizer.fit") from e
        if tok.itos != d["itos"]:
            raise ConfigError(f"tokenizer file {path} has an unsorted or duplicated vocabulary; rebuild it")
        return tok


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int, pad_to: int | None = None,
                  left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> ids (B, T) padded with ``pad_id`` and a bool mask (True = real token),
    T = max(longest, pad_to); one scatter, no per-row Python writes."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    t = max([int(lens.max()) if len(seqs) else 0, pad_to or 0])
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    cols = torch.arange(t)[None, :]
    mask = (t - cols <= lens[:, None]) if left_pad else (cols < lens[:, None])
    ids[mask] = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
    return ids, mask

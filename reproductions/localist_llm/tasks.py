"""Data: the synthetic pointer task (spec §6, stand-in), WikiText raw text with sentence blocks (spec §5)
and streaming multi-domain text shards for recruitment at full scale (spec §5)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import CorruptDataError
from suite.spec import DatasetRef

POINTER_REF = DatasetRef("pointer-task(K-blocks,anchor+key/value pairs)", "stand-in")
DOMAINS_REF = DatasetRef("bigram-domains(A,B,C)", "stand-in")


# ------------------------------------------------------------------ pointer task (spec §6)

@dataclass(frozen=True)
class PointerTask:
    """K blocks, each = anchor token + P (key, value) pairs, blocks in random order; then the query
    (anchor of the target block, key); the answer is that key's value in the target block. Every block
    holds the same key set (distractor keys repeated across blocks), so only the anchor picks the block.

    Token ids: anchors 0..K-1, keys K..K+n_keys-1, values after. Block membership: the positions of block
    k (anchor and pairs) form B_k; the two query positions belong to the target block (the query's anchor
    names it). Every position's target block g(i) is its own block (spec §3, "from anchors")."""

    n_blocks: int = 4
    n_pairs: int = 8
    n_keys: int = 8
    n_values: int = 16

    @property
    def vocab(self) -> int:
        return self.n_blocks + self.n_keys + self.n_values

    @property
    def seq_len(self) -> int:
        return self.n_blocks * (1 + 2 * self.n_pairs) + 2

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens (n, T), blk (n, T), answer (n,)); vectorised over samples."""
        k, p = self.n_blocks, self.n_pairs
        length = 1 + 2 * p
        order = torch.rand(n, k, generator=gen).argsort(1)                      # slot s holds block order[s]
        keys = torch.rand(n, k, self.n_keys, generator=gen).argsort(-1)[..., :p] + k
        vals = torch.randint(self.n_values, (n, k, p), generator=gen) + k + self.n_keys
        content = torch.empty(n, k, length, dtype=torch.long)
        content[:, :, 0] = torch.arange(k)
        content[:, :, 1::2] = keys
        content[:, :, 2::2] = vals
        rows = torch.arange(n)[:, None]
        seq = content[rows, order].reshape(n, k * length)
        blk = order[:, :, None].expand(n, k, length).reshape(n, k * length)
        g = torch.randint(k, (n,), generator=gen)
        pick = torch.randint(p, (n,), generator=gen)
        qkey = keys[torch.arange(n), g, pick]
        ans = vals[torch.arange(n), g, pick]
        tokens = torch.cat([seq, g[:, None], qkey[:, None]], 1)
        blk = torch.cat([blk, g[:, None], g[:, None]], 1)
        return tokens, blk, ans


# ------------------------------------------------------------------ WikiText (spec §5)

WIKI_FILES = ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw")
WIKI_HOW = ("download wikitext-2-raw-v1.zip (Salesforce/Merity et al. 2016; also the HF dataset "
            "'Salesforce/wikitext', config wikitext-2-raw-v1) and unzip it so that the three .raw files lie "
            "in <data root>/<wikitext_dir>")


def write_wiki_fixture(folder: Path) -> None:
    """A tiny file set in the published wikitext-*-raw layout (dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (" = Fixture = \n \n The fixture sentence is short . It has two sentences . \n"
            " = = Section = = \n \n Another line follows here . And one more . \n") * 40
    for f in WIKI_FILES:
        (folder / f).write_text(text)


def load_wikitext(ctx: RunContext, subdir: str) -> tuple[dict[str, torch.Tensor], DatasetRef]:
    """Byte-level token streams of the three splits (uint8 -> long), read from the raw files."""
    folder, ref = locate(ctx, "wikitext-raw", subdir, list(WIKI_FILES), WIKI_HOW, fixture=write_wiki_fixture)
    out = {}
    for split, f in zip(("train", "valid", "test"), WIKI_FILES):
        raw = (folder / f).read_bytes()
        if not raw:
            raise CorruptDataError(f"{folder / f} is empty; re-extract {WIKI_HOW}")
        out[split] = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).astype(np.int64))
    return out, ref


def sentence_blocks(windows: torch.Tensor) -> torch.Tensor:
    """Semantic blocks of byte windows (B, T): a new block starts at the space of '. ' and after a newline
    (our formalisation of semantic blocks on raw text; README). Returns block ids (B, T), 0-based."""
    dot, nl, sp = ord("."), ord("\n"), ord(" ")
    prev, cur = windows[:, :-1], windows[:, 1:]
    end = (prev == nl) | ((prev == dot) & (cur == sp))
    start = torch.cat([torch.zeros_like(windows[:, :1], dtype=torch.bool), end], 1)
    return start.long().cumsum(1)


def fixed_blocks(windows: torch.Tensor, size: int) -> torch.Tensor:
    """Fixed-window blocks (spec §4 baseline): contiguous chunks of ``size`` positions."""
    t = windows.shape[1]
    return (torch.arange(t) // size)[None].expand_as(windows)


# ------------------------------------------------------------------ recruitment domains (spec §5)

DOMAIN_HOW = ("put one UTF-8 text file per domain into <data root>/<domains_dir> (e.g. a WikiText shard, "
              "a code shard, a legal-text shard); they are streamed in the order of domain_files")


def write_domain_fixture(files: tuple[str, ...]):  # noqa: ANN201
    def write(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        texts = ["the cat sat on the mat and the dog ran home. ", "def f(x):\n    return x + 1\n",
                 "WHEREAS the party of the first part agrees; hereinafter the Lessee. "]
        for i, f in enumerate(files):
            (folder / f).write_text(texts[i % len(texts)] * 400)
    return write


def load_domains(ctx: RunContext, subdir: str, files: tuple[str, ...]) -> tuple[list[torch.Tensor], DatasetRef]:
    folder, ref = locate(ctx, "recruitment-domains", subdir, list(files), DOMAIN_HOW,
                         fixture=write_domain_fixture(files))
    streams = [torch.from_numpy(np.frombuffer((folder / f).read_bytes(), dtype=np.uint8).astype(np.int64))
               for f in files]
    return streams, ref

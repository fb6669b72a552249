"""Input conversion shared by the metrics: torch tensors, lists and numpy arrays -> numpy."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from suite.errors import ConfigError


def as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def labels_of(pred: Any) -> np.ndarray:
    """Predicted labels from labels (N,) or scores (N, K) (argmax)."""
    p = as_numpy(pred)
    return p.argmax(-1) if p.ndim == 2 else p


def same_length(*arrays: np.ndarray) -> None:
    lens = {len(a) for a in arrays}
    if len(lens) != 1:
        raise ConfigError(f"metric inputs differ in length {[len(a) for a in arrays]}; pass one entry per example")
    if lens == {0}:
        raise ConfigError("metric inputs are empty; pass at least one example")

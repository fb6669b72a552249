"""DAM-VP (Huang et al., CVPR 2023, spec §3): pad prompts, diversity-adaptive clustering of the
downstream data, per-cluster prompts routed by nearest prototype, "active neuron" head, Reptile
meta-prompt."""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

Variant = Literal["paper", "reptile_sign", "full_prompt"]  # the last two: test-only broken variants


class PadPrompts(nn.Module):
    """M pad prompters (Bahng et al. VP): learnable border of width p — top/bottom (C,p,W),
    left/right (C,H−2p,p) — added to the image; the centre is untouched (§3)."""

    def __init__(self, m: int, c: int, h: int, w: int, p: int, variant: str = "paper",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        r = lambda *s: nn.Parameter(torch.randn(m, *s, generator=generator))  # noqa: E731  N(0,1) init
        self.top, self.bottom = r(c, p, w), r(c, p, w)
        self.left, self.right = r(c, h - 2 * p, p), r(c, h - 2 * p, p)
        self.p, self.hw, self.variant = p, (h, w), variant
        if variant == "full_prompt":  # broken: covers the whole image
            self.full = r(c, h, w)

    def assemble(self) -> torch.Tensor:
        """(M, C, H, W) prompt images, zero in the centre."""
        if self.variant == "full_prompt":
            return self.full
        m, c = self.top.shape[:2]
        mid = torch.zeros(m, c, self.hw[0] - 2 * self.p, self.hw[1] - 2 * self.p, device=self.top.device,
                          dtype=self.top.dtype)
        return torch.cat([self.top, torch.cat([self.left, mid, self.right], 3), self.bottom], 2)

    def load_from(self, meta: "PadPrompts") -> None:
        """Every cluster prompt := the (single) meta-prompt (§3 'initialised from the meta-prompt')."""
        with torch.no_grad():
            for name in ("top", "bottom", "left", "right"):
                getattr(self, name).copy_(getattr(meta, name)[0].expand_as(getattr(self, name)))

    def flat(self) -> torch.Tensor:
        return torch.cat([t.reshape(t.shape[0], -1) for t in (self.top, self.bottom, self.left, self.right)], 1)

    def forward(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """x + prompt[route] (vectorised gather, spec §7)."""
        return x + self.assemble()[route]


def cluster_threshold(u: torch.Tensor, percentile: float) -> float:
    """Distance threshold = ``percentile`` of the pairwise feature distances (spec §6)."""
    d = torch.pdist(u.double())
    return float(torch.quantile(d, percentile / 100.0)) if len(d) else 0.0


def diversity_clusters(u: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Agglomerative clustering (average linkage, Euclidean, no fixed K, distance threshold) of the
    un-prompted features; returns (labels, prototypes = cluster means) (§3)."""
    from sklearn.cluster import AgglomerativeClustering

    if len(u) < 2:
        return torch.zeros(len(u), dtype=torch.long), u.mean(0, keepdim=True)
    lab = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, linkage="average",
                                  metric="euclidean").fit_predict(u.double().numpy())
    lab_t = torch.from_numpy(lab).long()
    m = int(lab_t.max()) + 1
    protos = torch.zeros(m, u.shape[1], dtype=u.dtype).index_add_(0, lab_t, u)
    protos /= torch.bincount(lab_t, minlength=m).clamp_min(1)[:, None].to(u.dtype)
    return lab_t, protos


def route(u: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Nearest prototype (Euclidean) of the un-prompted features (§3; never prompted features, §7)."""
    return torch.cdist(u, prototypes).argmin(1)


@torch.no_grad()
def active_neurons(feature_fn: Callable[[torch.Tensor], torch.Tensor], n_classes: int | None, shape: tuple[int, ...],
                   generator: torch.Generator, n: int = 512, device: torch.device | str = "cpu") -> torch.Tensor:
    """Head-missing mode: push ``n`` N(0,1) images through the backbone, rank output dims by std, keep
    the top ``n_classes`` (§3; ``None``: the whole ranking, whose first k are the active neurons of a k-class
    task). Ties broken by index; always exactly ``n_classes`` distinct indices (§7).
    The noise is drawn on the CPU (same images on every device) and sent to ``device``; indices come back on
    the CPU."""
    out = feature_fn(torch.randn(n, *shape, generator=generator).to(device))
    std = out.std(0)
    return take_active(torch.argsort(std, descending=True, stable=True).cpu(), n_classes)


def take_active(ranking: torch.Tensor, n_classes: int | None) -> torch.Tensor:
    """The first ``n_classes`` of a neuron ranking (a clear error when the backbone has fewer outputs)."""
    if n_classes is None:
        return ranking
    if n_classes > ranking.numel():
        from suite.errors import ConfigError
        raise ConfigError(f"active neurons: backbone has {ranking.numel()} outputs < {n_classes} classes; "
                          f"use head='own' or a wider backbone")
    return ranking[:n_classes]


def logit_dims(ranking: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The feature dims read as the logits of an ``n_classes`` task, class k = the k-th smallest index among the
    top-``n_classes`` (official adapter.py / meta_hf.py ``rep2logit``: ``torch.unique(indices[:num_classes])``)."""
    return take_active(ranking, n_classes).sort().values


def reptile_update(theta: torch.Tensor, phis: torch.Tensor, beta: float, variant: str = "paper") -> torch.Tensor:
    """θ ← θ − β·mean(θ − φ) = θ + β·(mean φ − θ) over tasks × clusters (§3)."""
    step = phis.mean(0) - theta
    return theta - beta * step if variant == "reptile_sign" else theta + beta * step


class Frozen(nn.Module):
    """The frozen backbone as one registered module (so ``.to(device)`` moves all of it): logits from its
    own head, or (head-missing mode, §3) the active-neuron dims of its output features, the classifier
    discarded (official ``discard_classifier`` + ``forward_features``), indices kept as a buffer."""

    def __init__(self, net: nn.Module, active: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("active", active if active is not None else torch.empty(0, dtype=torch.long))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active.numel():  # head-missing: the classifier is discarded, logits = active feature dims (§3)
            return self.net.features(x)[:, self.active]
        return self.net(x)


class Prompted(nn.Module):
    """Frozen backbone behind per-cluster prompts. ``pre`` brings raw images to the backbone's input
    (full scale: ``images.InputTransform``, per batch on the device: uint8 → resize + centre crop to 224 px
    → ImageNet mean/std); the prompt is added after it, at the backbone's resolution and in normalised
    space (§3: pad p = 30 on 224 px; official adapter.py adds the prompter to the normalised batch)."""

    def __init__(self, prompts: PadPrompts, frozen: nn.Module, pre: nn.Module | None = None) -> None:
        super().__init__()
        self.prompts, self.frozen, self.pre = prompts, frozen, pre if pre is not None else nn.Identity()

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.prompts(self.pre(x), r))


def prompt_vector(p: PadPrompts) -> torch.Tensor:
    return p.flat().detach().clone()


def set_prompt_vector(p: PadPrompts, v: torch.Tensor) -> None:
    with torch.no_grad():
        i = 0
        for t in (p.top, p.bottom, p.left, p.right):
            k = t[0].numel()
            t.copy_(v[:, i:i + k].reshape(t.shape))
            i += k


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()

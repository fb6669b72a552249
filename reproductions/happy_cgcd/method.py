"""Happy (Ma et al., NeurIPS 2024): the losses and stage operations of debiased continual GCD (spec §3).

Model = backbone → L2-normalised feature f(x) (D-dim); a projector for the contrastive loss; a cosine
classifier head (weight-normalised rows, no bias) whose logits are cosines, divided by 0.1 in the losses.
Pieces:
- SimGCD stage-0 terms: self-distillation, mean-entropy maximisation ("memax"), CE, InfoNCE, SupCon;
- clustering-guided initialisation of the new head rows (§3 step 1);
- soft entropy regularisation (group + within-old + within-new terms, §3 step 2);
- hardness-aware prototype sampling (HAP) and feature distillation (KD).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STUDENT_TEMP = 0.1  # logits / 0.1 (spec §3)


class CosineHead(nn.Module):
    """Cosine classifier: logits_c = <x/|x|, w_c/|w_c|>. ``grow`` appends rows (new classes)."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(F.normalize(torch.randn(n_classes, dim), dim=1))

    @property
    def n_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine logits: the input is L2-normalised here, as the official head does before its last layer
        (HAP's pseudo-features included: they are not re-normalised after sampling, but the head normalises)."""
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T

    @torch.no_grad()
    def grow(self, new_rows: torch.Tensor) -> None:
        """Append ``new_rows`` (N_t, D) as the new classes' weights (the head grows to |seen| + N_t)."""
        w = torch.cat([self.weight.data, F.normalize(new_rows.to(self.weight), dim=1)])
        self.weight = nn.Parameter(w)


def projector(feat_dim: int, hidden: int, out: int, n_layers: int = 3) -> nn.Sequential:
    """The SimGCD/DINO projector MLP: ``n_layers`` linear layers with GELU between them,
    feat_dim → hidden (→ hidden)×(n_layers − 2) → out (official ``DINOHead.mlp``, ``num_mlp_layers = 3``),
    initialised as ``DINOHead._init_weights``: truncated-normal weights (std 0.02), zero biases."""
    if n_layers < 1:
        raise ValueError(f"projector needs at least 1 linear layer, got {n_layers}")
    dims = [feat_dim] + [hidden] * (n_layers - 1) + [out]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b)
        nn.init.trunc_normal_(lin.weight, std=0.02)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.GELU()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


class CGCDNet(nn.Module):
    """backbone → f(x) (normalised); ``proj`` (on the un-normalised backbone output) for the contrastive loss;
    ``head`` the cosine classifier."""

    def __init__(self, backbone: nn.Module, feat_dim: int, n_classes: int, proj_dim: int = 128,
                 proj_hidden: int = 256, proj_layers: int = 3) -> None:
        super().__init__()
        self.backbone = backbone
        self.proj = projector(feat_dim, proj_hidden, proj_dim, proj_layers)
        self.head = CosineHead(feat_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x), dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised feature, normalised projection, cosine logits). The projector reads the backbone output
        before the L2 normalisation, as the official ``DINOHead.forward`` (``x_proj = self.mlp(x)``, then
        ``x = normalize(x)`` for the cosine layer)."""
        b = self.backbone(x)
        f = F.normalize(b, dim=1)
        return f, F.normalize(self.proj(b), dim=1), self.head(f)


# --------------------------------------------------------------------------- SimGCD terms

def self_distillation(cos_views: list[torch.Tensor], teacher_temp: float) -> torch.Tensor:
    """SimGCD cluster loss: student softmax(cos/0.1) of one view vs detached teacher softmax(cos/τ_t) of the
    other view, cross-entropy averaged over the ordered view pairs."""
    teachers = [F.softmax(c.detach() / teacher_temp, 1) for c in cos_views]
    students = [F.log_softmax(c / STUDENT_TEMP, 1) for c in cos_views]
    terms = [-(teachers[i] * students[j]).sum(1).mean() for i in range(len(cos_views))
             for j in range(len(cos_views)) if i != j]
    return torch.stack(terms).mean()


def mean_probs(cos_views: list[torch.Tensor]) -> torch.Tensor:
    """p̄ = batch-mean of softmax(cos/0.1) over all views."""
    return torch.cat([F.softmax(c / STUDENT_TEMP, 1) for c in cos_views]).mean(0)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def memax(p_bar: torch.Tensor) -> torch.Tensor:
    """Mean-entropy maximisation over all K classes: log K − H(p̄) (SimGCD; the naive baseline's regulariser)."""
    return math.log(p_bar.shape[-1]) - entropy(p_bar)


@dataclass
class SoftEntropyParts:
    group: torch.Tensor
    old: torch.Tensor
    new: torch.Tensor


def soft_entropy(p_bar: torch.Tensor, n_old: int, w_group: float = 1.0) -> tuple[torch.Tensor, SoftEntropyParts]:
    """Soft entropy regularisation (Happy §3 step 2) on p̄ over K_t = n_old + N_t classes.

    (i) group: P_o log P_o + P_n log P_n + log 2 (summed marginals, spec §7);
    (ii) log|old| − H(p̄_o / P_o); (iii) log|new| − H(p̄_n / P_n), dropped when N_t = 1.
    All three are 0 for a uniform p̄ with |old| = |new| and positive otherwise.
    """
    po, pn = p_bar[:n_old], p_bar[n_old:]
    big_o, big_n = po.sum(), pn.sum()
    group = big_o * torch.log(big_o.clamp_min(1e-12)) + big_n * torch.log(big_n.clamp_min(1e-12)) + math.log(2)
    old = math.log(n_old) - entropy(po / big_o.clamp_min(1e-12)) if n_old > 1 else p_bar.new_zeros(())
    new = math.log(len(pn)) - entropy(pn / big_n.clamp_min(1e-12)) if len(pn) > 1 else p_bar.new_zeros(())
    return w_group * group + old + new, SoftEntropyParts(group, old, new)


def info_nce(z_views: list[torch.Tensor], temp: float) -> torch.Tensor:
    """InfoNCE over 2 views: each sample's positive is its other view, negatives all other samples."""
    z = torch.cat(z_views)
    n = z_views[0].shape[0]
    sim = z @ z.T / temp
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    pos = torch.arange(len(z), device=z.device)
    pos = (pos + n) % len(z)
    return F.cross_entropy(sim, pos)


def supcon(z_views: list[torch.Tensor], y: torch.Tensor, temp: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al.): positives = other samples of the same class (all views)."""
    z = torch.cat(z_views)
    yy = y.repeat(len(z_views))
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temp).masked_fill(eye, float("-inf"))
    logp = logits - torch.logsumexp(logits, 1, keepdim=True)
    pos = (yy[:, None] == yy[None, :]) & ~eye
    return -(logp.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp_min(1)).mean()


# --------------------------------------------------------------------------- stage operations

def select_new_centroids(centroids: torch.Tensor, head: CosineHead, n_new: int, largest: bool = False) -> torch.Tensor:
    """Clustering-guided initialisation (§3 step 1): head logits of each normalised centroid; the ``n_new``
    with the smallest max-logit (least like any known class) are returned (indices). ``largest`` is the
    test-only broken selection (most known-like centroids)."""
    with torch.no_grad():
        max_logit = head(F.normalize(centroids, dim=1)).max(1).values
    return torch.topk(max_logit, n_new, largest=largest).indices


def kmeans_centroids(feats: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k-means (scikit-learn, k-means++) on normalised features; centroids (k, D)."""
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=3, random_state=seed).fit(feats.double().cpu().numpy())
    return torch.as_tensor(km.cluster_centers_, dtype=feats.dtype)


def class_prototypes(feats: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """L2-normalised class means of normalised features (spec §7)."""
    onehot = (labels[:, None] == torch.as_tensor(classes, device=labels.device)[None, :]).to(feats.dtype)
    means = onehot.T @ feats / onehot.sum(0).clamp_min(1)[:, None]
    return F.normalize(means, dim=1)


def shared_radius(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """r = sqrt(mean_c tr(Σ_c) / D) over the stage-0 classes (one shared radius)."""
    classes = labels.unique()
    traces = torch.stack([feats[labels == c].var(0, unbiased=True).sum() for c in classes])  # tr(Σ_c), c ≤ K
    return float(torch.sqrt(traces.mean() / feats.shape[1]))


def hardness(protos: torch.Tensor) -> torch.Tensor:
    """h_c = mean cosine similarity of μ_c to the other prototypes (diagonal excluded, / (K−1))."""
    p = F.normalize(protos, dim=1)
    sim = p @ p.T
    sim = sim - torch.diag(torch.diag(sim))
    return sim.sum(1) / (len(p) - 1)


def hap_probs(protos: torch.Tensor, temp: float = 0.1, uniform: bool = False,
              inverted: bool = False) -> torch.Tensor:
    """Sampling distribution over stored classes: softmax(h/temp) (Happy) or uniform (naive baseline);
    ``inverted`` (teeth only): softmax(-h/temp), the easiest prototypes most."""
    if uniform:
        return torch.full((len(protos),), 1.0 / len(protos), device=protos.device)
    return F.softmax((-1.0 if inverted else 1.0) * hardness(protos) / temp, 0)


def hap_loss(head: CosineHead, protos: torch.Tensor, proto_labels: torch.Tensor, radius: float, n: int,
             probs: torch.Tensor) -> torch.Tensor:
    """L_HAP: labels c ~ probs, pseudo-features μ_c + r·N(0, I) (not re-normalised after sampling, spec §7),
    CE(head(feat)/0.1, c); the cosine head normalises its input, as the official head's forward does."""
    idx = torch.multinomial(probs, n, replacement=True)
    feats = protos[idx] + radius * torch.randn(n, protos.shape[1], device=protos.device)
    return F.cross_entropy(head(feats) / STUDENT_TEMP, proto_labels[idx])


def feature_kd(f_new: torch.Tensor, f_old: torch.Tensor) -> torch.Tensor:
    """L_KD = (1/B) Σ ‖f_t(x) − f_{t−1}(x)‖²."""
    return ((f_new - f_old) ** 2).sum(1).mean()


# --------------------------------------------------------------------------- evaluation

def old_new_accuracy(y: np.ndarray, pred: np.ndarray, old_classes: set[int]) -> dict[str, float]:
    """All/Old/New accuracy under ONE Hungarian assignment computed on All (spec §4/§7, eval v2)."""
    from suite.metrics.clustering import hungarian_map

    mapping = hungarian_map(y, pred)
    mapped = np.array([mapping.get(int(p), -1) for p in pred])
    correct = mapped == y
    is_old = np.isin(y, list(old_classes))
    out = {"all": float(correct.mean())}
    out["old"] = float(correct[is_old].mean()) if is_old.any() else float("nan")
    out["new"] = float(correct[~is_old].mean()) if (~is_old).any() else float("nan")
    return out

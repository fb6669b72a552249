"""AST (Shen, Yang & Lam 2023) on top of MTT (Cazenavette et al. 2022): smooth expert trajectories (clipping
loss + gradient penalty, spec §3 "Experts"), and trajectory-matching distillation with weight perturbation,
balanced inner loss, intermediate matching and representative initialisation (spec §3 "Distillation" 1-6).

The student network runs as a functional forward over one flat parameter vector (MTT's ReparamModule idea),
so the N inner SGD steps stay differentiable w.r.t. the synthetic images and the learnable lr alpha_syn.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from suite.train import TrainConfig, fit

from . import dsa

# TEETH ONLY: deliberately broken variants (README "Teeth")
Variant = Literal["correct", "no-image-update", "matching-sign-flipped", "no-smoothing", "ast-sign-flipped",
                  "ast-no-image-update"]

# spec §3 clipping loss: CE of epoch e (e = 0..9) is multiplied by 0.5 + 0.05 e, then by 1 (buffer.py)
LOSS_DECAY = tuple(round(0.5 + 0.05 * e, 2) for e in range(10))


# ------------------------------------------------------------------ the ConvNet of MTT/AST (networks.py)

class ConvNetIN(nn.Module):
    """depth x [conv3x3(width), instance norm (GroupNorm(C, C), affine), ReLU, avg-pool 2], linear head."""

    def __init__(self, channels: int, num_classes: int, width: int, depth: int, image_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, s = channels, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(),
                       nn.AvgPool2d(2)]
            c, s = width, s // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * s * s, num_classes)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def flat_params(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def load_flat(net: nn.Module, flat: torch.Tensor) -> nn.Module:
    torch.nn.utils.vector_to_parameters(flat.detach().clone(), net.parameters())
    return net


def shapes_of(net: nn.Module) -> list[torch.Size]:
    return [p.shape for p in net.parameters()]


def functional_forward(flat: torch.Tensor, x: torch.Tensor, shapes: Sequence[torch.Size], depth: int) -> torch.Tensor:
    """The ConvNetIN forward with every parameter a view of ``flat`` (same order as ``net.parameters()``)."""
    ps, i = [], 0
    for s in shapes:
        n = math.prod(s)
        ps.append(flat[i:i + n].view(s))
        i += n
    h = x
    for d in range(depth):
        w, b, gw, gb = ps[4 * d:4 * d + 4]
        h = F.conv2d(h, w, b, padding=1)
        h = F.group_norm(h, w.shape[0], gw, gb)
        h = F.avg_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), ps[-2], ps[-1])


# ------------------------------------------------------------------ smooth experts (spec §3, buffer.py)

def gradient_penalty(net: nn.Module, x: torch.Tensor, weight: float = 2.0, norm: str = "channel") -> torch.Tensor:
    """WGAN-GP style: weight * mean((||d(sum outputs)/dx|| - 1)^2) on the clean batch. ``norm="channel"`` is the
    official quirk (norm over dim=1, i.e. per pixel); ``"image"`` takes one norm per image."""
    xg = x.detach().requires_grad_(True)
    g = torch.autograd.grad(net(xg).sum(), xg, create_graph=True)[0]
    nrm = g.norm(2, dim=1) if norm == "channel" else g.flatten(1).norm(2, dim=1)
    return weight * ((nrm - 1) ** 2).mean()


@dataclass
class ExpertSpec:
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch: int
    smooth: bool              # clipping loss + gradient penalty (AST) vs plain CE (MTT)
    use_gp: bool = True       # smooth experts without the gradient penalty (clipping loss only): a diagnostic
    gp_weight: float = 2.0
    gp_norm: str = "channel"
    lr_decay: float = 0.6     # buffer.py: lr *= 0.6 after epoch E//2 + 1
    dsa: str = "none"


def fit_then_decay(net: nn.Module, loss_fn: Callable, data: tuple[torch.Tensor, torch.Tensor], epochs: int,
                   decay_after: int, batch: int, lr: float, gamma: float, momentum: float, momentum_decay: float,
                   weight_decay: float, gen: torch.Generator, device: torch.device,
                   on_step: Callable[[int, nn.Module], None] | None = None) -> None:
    """SGD for ``epochs`` passes: ``decay_after`` passes at (lr, momentum), then a NEW optimiser at
    (lr * gamma, momentum_decay) for the rest, as buffer.py / utils.py re-create theirs at the lr decay (the
    momentum buffer starts from zero). Two ``fit`` calls on one generator draw the same data order as one call.
    ``on_step(step, net)`` runs after every optimiser step, with the step counted over both phases."""
    phases = [(min(decay_after, epochs), lr, momentum), (epochs - decay_after, lr * gamma, momentum_decay)]
    done = 0
    for n_epochs, lr_p, mom_p in phases:
        if n_epochs <= 0:
            continue
        tc = TrainConfig(epochs=n_epochs, batch_size=batch, lr=lr_p, optimizer="sgd", momentum=mom_p,
                         weight_decay=weight_decay, schedule="constant", log_every=0, bf16=False)
        hook = None if on_step is None else (lambda st, offset=done: on_step(offset + st.step, st.model))
        res = fit(net, loss_fn, data, tc, on_step=hook, device=device, generator=gen)
        done += res.step


def train_expert(net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: ExpertSpec, gen: torch.Generator,
                 aug_gen: torch.Generator, device: torch.device, variant: str = "correct") -> torch.Tensor:
    """One expert trajectory: flat parameters at init and after every epoch, shape (epochs + 1, P), on CPU."""
    n = x.shape[0]
    per_epoch = -(-n // spec.batch)
    smooth = spec.smooth and variant != "no-smoothing"   # teeth: "smooth" experts trained without smoothing
    counter = [0]
    snaps = [flat_params(net).cpu()]

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = batch
        e = counter[0] // per_epoch
        counter[0] += 1
        loss = F.cross_entropy(m(dsa.augment(xb, spec.dsa, aug_gen)), yb)
        if smooth:
            loss = loss * (LOSS_DECAY[e] if e < len(LOSS_DECAY) else 1.0)       # clipping loss
            if spec.use_gp:
                loss = loss + gradient_penalty(m, xb, spec.gp_weight, spec.gp_norm)  # gradient penalty (clean batch)
        return loss

    def on_step(step: int, model: nn.Module) -> None:
        if step % per_epoch == 0:
            snaps.append(flat_params(model).cpu())

    # buffer.py: E epochs; after epoch index E//2+1 (E//2+2 epochs done) lr *= 0.6 and the optimiser is
    # re-created (momentum buffer dropped)
    fit_then_decay(net, loss_fn, (x, y), spec.epochs, spec.epochs // 2 + 2, spec.batch, spec.lr, spec.lr_decay,
                   spec.momentum, spec.momentum, spec.weight_decay, gen, device, on_step)
    return torch.stack(snaps)


def step_norms(traj: torch.Tensor) -> torch.Tensor:
    """Per-epoch parameter step ||theta_{e+1} - theta_e|| (spec §4 smoothness diagnostic)."""
    return (traj[1:] - traj[:-1]).norm(dim=1)


# ------------------------------------------------------------------ distillation pieces (spec §3 steps 2-5)

def weight_perturb(flat: torch.Tensor, shapes: Sequence[torch.Size], alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Step 2: every 4-D (conv) weight W <- W + alpha (D / ||D||_F) * W, D ~ N(0, 1); other tensors unchanged."""
    out, i = [], 0
    for s in shapes:
        n = math.prod(s)
        w = flat[i:i + n]
        if len(s) == 4:
            d = torch.randn(n, generator=gen).to(flat.device, flat.dtype)
            w = w + alpha * (d / d.norm()) * w
        out.append(w)
        i += n
    return torch.cat(out)


def balance_factor(s: int, max_start: int) -> float:
    """Step 4: CE x log_5(s - S//2 + 8) if s >= S//2, else CE / log_5(S//2 - s + 8) (integer S//2 as distill.py)."""
    half = max_start // 2
    return math.log(s - half + 8, 5) if s >= half else 1.0 / math.log(half - s + 8, 5)


def sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).sum()


@dataclass
class DistillSpec:
    iterations: int
    syn_steps: int           # N
    expert_epochs: int       # M
    max_start: int           # S
    lr_img: float
    lr_lr: float
    lr_init: float           # alpha_syn init (= lr_teacher)
    inner_momentum: float = 0.9
    batch_syn: int = 0       # 0 = all synthetic images per inner step
    perturb: bool = False    # AST weight perturbation
    balance: bool = False    # AST balanced inner loss
    middle: bool = False     # AST intermediate matching
    perturb_alpha: float = 1.0
    dsa: str = "none"
    update_images: bool = True
    sign: float = 1.0        # teeth: -1 ascends the matching loss


def unroll(images: torch.Tensor, labels: torch.Tensor, syn_lr: torch.Tensor, start: torch.Tensor,
           traj: torch.Tensor, s: int, spec: DistillSpec, shapes: Sequence[torch.Size], depth: int,
           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 3-5 for one (expert, start epoch): N heavy-ball steps of the student on synthetic batches from the
    (possibly perturbed) start, then L = ||theta_N - theta*||^2 / ||theta_0 - theta*||^2 (+ intermediate terms).
    Returns (L, mean inner CE)."""
    dev = images.device
    target = traj[s + spec.expert_epochs].to(dev)
    theta = start.detach().clone().requires_grad_(True)
    factor = balance_factor(s, spec.max_start) if spec.balance else 1.0
    M, N = spec.expert_epochs, spec.syn_steps
    mids = {(N // M) * i: i for i in range(1, M)} if spec.middle else {}
    bs = spec.batch_syn or images.shape[0]
    chunks: list[torch.Tensor] = []
    mid_losses = []
    ce_sum = torch.zeros((), device=dev)
    buf = None
    for step in range(N):
        if not chunks:
            chunks = list(torch.randperm(images.shape[0], generator=gen).to(dev).split(bs))
        idx = chunks.pop()
        x = dsa.augment(images[idx], spec.dsa, gen)
        ce = F.cross_entropy(functional_forward(theta, x, shapes, depth), labels[idx]) * factor
        g = torch.autograd.grad(ce, theta, create_graph=True)[0]
        buf = g if buf is None else spec.inner_momentum * buf + g   # b_t = 0.9 b_{t-1} + grad
        theta = theta - syn_lr * buf                                 # theta_{t+1} = theta_t - alpha_syn b_t
        ce_sum = ce_sum + ce.detach()
        if step + 1 in mids and step < N - 1:                        # step 5: intermediate matching, weight 1
            mid = traj[s + mids[step + 1]].to(dev)
            mid_losses.append(sq(theta, mid) / sq(start, mid))
    loss = sq(theta, target) / sq(start, target)                     # normaliser uses the perturbed start
    for m in mid_losses:
        loss = loss + m
    return loss, ce_sum / N


def distill(images0: torch.Tensor, labels: torch.Tensor, trajs: Sequence[torch.Tensor], spec: DistillSpec,
            shapes: Sequence[torch.Size], depth: int, gen: torch.Generator,
            on_iter: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Spec §3 steps 1-6 for ``iterations`` iterations. Returns (images, alpha_syn, stats)."""
    dev = images0.device
    images = images0.detach().clone().requires_grad_(True)
    syn_lr = torch.tensor(spec.lr_init, device=dev).requires_grad_(True)
    opt_img = torch.optim.SGD([images], lr=spec.lr_img, momentum=0.5)
    opt_lr = torch.optim.SGD([syn_lr], lr=spec.lr_lr, momentum=0.5)
    order: list[int] = []
    losses, t0 = [], time.perf_counter()
    for it in range(spec.iterations):
        if on_iter is not None:
            on_iter(it, images.detach(), syn_lr.detach())
        if not order:                                   # cycle through a shuffled buffer, as distill.py
            order = torch.randperm(len(trajs), generator=gen).tolist()
        traj = trajs[order.pop()]
        s = int(torch.randint(spec.max_start, (1,), generator=gen))  # step 1: s ~ U{0..S-1}
        start = traj[s].to(dev)
        if spec.perturb:
            start = weight_perturb(start, shapes, spec.perturb_alpha, gen)
        loss, _ = unroll(images, labels, syn_lr, start, traj, s, spec, shapes, depth, gen)
        opt_img.zero_grad()
        opt_lr.zero_grad()
        (spec.sign * loss).backward()
        if spec.update_images:
            opt_img.step()                              # step 6: SGD(lr_img, momentum 0.5) on the images
        opt_lr.step()                                   # and SGD(lr_lr, momentum 0.5) on alpha_syn
        losses.append(float(loss.detach()))
    if on_iter is not None:
        on_iter(spec.iterations, images.detach(), syn_lr.detach())
    k = max(1, len(losses) // 10)
    stats = {"loss_first": sum(losses[:k]) / k if losses else float("nan"),
             "loss_last": sum(losses[-k:]) / k if losses else float("nan"),
             "seconds": time.perf_counter() - t0}
    return images.detach(), syn_lr.detach(), stats


# ------------------------------------------------------------------ initialisation (spec §3)

def kmeans(z: torch.Tensor, k: int, gen: torch.Generator, iters: int = 30) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding (torch, on z's device); returns the (k, D) centroids."""
    n = z.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    cent = z[first:first + 1]
    for _ in range(1, k):
        d2 = torch.cdist(z, cent).pow(2).min(1).values
        p = (d2 / d2.sum().clamp_min(1e-12)).cpu()
        nxt = int(torch.multinomial(p, 1, generator=gen)) if float(p.sum()) > 0 else int(torch.randint(n, (1,), generator=gen))
        cent = torch.cat([cent, z[nxt:nxt + 1]])
    for _ in range(iters):
        assign = torch.cdist(z, cent).argmin(1)
        onehot = F.one_hot(assign, k).to(z.dtype)
        counts = onehot.sum(0)
        new = (onehot.T @ z) / counts.clamp_min(1).unsqueeze(1)
        cent = torch.where(counts.unsqueeze(1) > 0, new, cent)
    return cent


@torch.no_grad()
def representative_indices(logits: torch.Tensor, y: torch.Tensor, ipc: int, num_classes: int,
                           gen: torch.Generator) -> torch.Tensor:
    """Representative init (pix_init avg): per class, k-means with ipc clusters on an expert's logits of all
    real images; the real image nearest each centroid. Returns indices, class-major (c0 x ipc, c1 x ipc, ...)."""
    out = []
    for c in range(num_classes):
        idx = (y == c).nonzero().flatten()
        z = logits[idx]
        cent = kmeans(z, ipc, gen)
        out.append(idx[torch.cdist(cent, z).argmin(1)])
    return torch.cat(out)


def random_indices(y: torch.Tensor, ipc: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """pix_init real: ipc random real images per class, class-major."""
    out = []
    for c in range(num_classes):
        idx = (y == c).nonzero().flatten().cpu()
        out.append(idx[torch.randperm(len(idx), generator=gen)[:ipc]])
    return torch.cat(out).to(y.device)


# ------------------------------------------------------------------ evaluation (evaluate_synset)

@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> float:
    net.eval()
    hits = sum(int((net(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum()) for i in range(0, len(y), chunk))
    net.train()
    return hits / max(1, len(y))


def evaluate_synset(images: torch.Tensor, labels: torch.Tensor, lr: float, make_net: Callable[[], nn.Module],
                    x_test: torch.Tensor, y_test: torch.Tensor, epochs: int, batch: int, momentum: float,
                    weight_decay: float, dsa_strategy: str, gen: torch.Generator, device: torch.device,
                    momentum_decay: float = 0.8) -> float:
    """Train one fresh net on the synthetic set for E + 1 passes (SGD with the learned lr and momentum 0.9; after
    pass E//2+1 lr halved, momentum 0.8, fresh optimiser; DSA), return its final test accuracy (not the official
    best-of-tests, which selects on the test set)."""
    net = make_net().to(device)
    aug_gen = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))

    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(m(dsa.augment(b[0], dsa_strategy, aug_gen)), b[1])

    # utils.py evaluate_synset: passes ep = 0..E (E + 1 of them); after ep = E//2+1 (E//2+2 passes done) lr *= 0.5
    # and the optimiser is re-created with momentum 0.8 (``momentum_decay``), dropping the momentum buffer
    fit_then_decay(net, loss_fn, (images.detach(), labels), epochs + 1, epochs // 2 + 2, batch, max(float(lr), 1e-8),
                   0.5, momentum, momentum_decay, weight_decay, gen, device)
    return accuracy(net, x_test, y_test)

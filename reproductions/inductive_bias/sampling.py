"""Sampling hypotheses from a model class and their test errors (spec §3).

- Kernel class (the paper's Algorithm 1): Gaussian-process posterior with an RBF kernel that
  interpolates the training set; hypotheses on the test set are F = M + C^{1/2} Ξ, all S at once.
- Neural-network class: S MLPs (or any module) trained from independent initialisations and data
  orders, as ONE batched ensemble (``torch.func`` vmap over stacked weights) through ``suite.train.fit``.
Error of a hypothesis: e(h) = mean over test points and output dims of (h(x) − onehot(y))² (spec §3).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from suite.train import TrainConfig, fit

KernelClass = Literal["posterior", "prior"]


def one_hot(y: torch.Tensor, out_dim: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.nn.functional.one_hot(y.long(), out_dim).to(dtype)


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """k(a, b) = exp(−‖a − b‖²/(2σ²)) (spec §3; σ = 1 in the official code)."""
    d2 = (a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return torch.exp(-d2.clamp_min(0) / (2 * sigma ** 2))


@dataclass
class GPPosterior:
    """Posterior of a zero-mean GP on the test inputs given noiseless training labels."""

    mean: torch.Tensor  # (n_test, out_dim)
    cov: torch.Tensor  # (n_test, n_test)
    train_fit_err: float  # max |posterior mean at the training inputs − Y|

    def sqrt(self) -> torch.Tensor:
        """C^{1/2} by eigh with negative eigenvalues clipped (spec §6; sqrtm in the official code)."""
        w, v = torch.linalg.eigh(self.cov)
        return (v * w.clamp_min(0).sqrt()) @ v.T


def gp_posterior(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, out_dim: int, sigma: float = 1.0,
                 jitter: float = 1e-6, kind: KernelClass = "posterior") -> GPPosterior:
    """M = K_*X K_XX⁻¹ Y, C = K_** − K_*X K_XX⁻¹ K_X* (spec §3, exact Cholesky solve with jitter·I
    (spec §7) instead of the official code's Adam-learned K_XX⁻¹). ``kind="prior"`` (a broken variant:
    hypotheses that ignore the training set) returns M = 0, C = K_**."""
    x_tr, x_te = x_tr.double(), x_te.double()
    Y = one_hot(y_tr, out_dim)
    Kxx = rbf_kernel(x_tr, x_tr, sigma) + jitter * torch.eye(len(x_tr), dtype=torch.float64)
    Ksx = rbf_kernel(x_te, x_tr, sigma)
    Kss = rbf_kernel(x_te, x_te, sigma)
    if kind == "prior":
        return GPPosterior(torch.zeros(len(x_te), out_dim, dtype=torch.float64), Kss, float(Y.abs().max()))
    L = torch.linalg.cholesky(Kxx)
    alpha = torch.cholesky_solve(Y, L)  # K_XX⁻¹ Y
    A = torch.cholesky_solve(Ksx.T, L)  # K_XX⁻¹ K_X*
    mean = Ksx @ alpha
    cov = Kss - Ksx @ A
    cov = 0.5 * (cov + cov.T)
    fit_err = float((rbf_kernel(x_tr, x_tr, sigma) @ alpha - Y).abs().max())
    return GPPosterior(mean, cov, fit_err)


def gp_errors(post: GPPosterior, y_te: torch.Tensor, n_samples: int, gen: torch.Generator,
              chunk: int = 1000) -> torch.Tensor:
    """Test MSE of ``n_samples`` hypotheses F = M + C^{1/2} Ξ, Ξ ∼ N(0, I) independently per output dim
    (spec §3), drawn in chunks of ``chunk`` (one batched matmul each)."""
    n_te, out_dim = post.mean.shape
    Yt = one_hot(y_te, out_dim)
    R = post.sqrt()
    D = post.mean - Yt  # (n_te, out_dim)
    out = []
    for start in range(0, n_samples, chunk):
        b = min(chunk, n_samples - start)
        xi = torch.randn(n_te, out_dim * b, generator=gen, dtype=torch.float64)
        F = (R @ xi).view(n_te, out_dim, b) + D[:, :, None]
        out.append((F ** 2).mean(dim=(0, 1)))
    return torch.cat(out)


# --------------------------------------------------------------------------- neural-network class

class Ensemble(nn.Module):
    """S copies of ``base`` with independent initialisations, evaluated as one vmapped call:
    ``forward(x)`` with x of shape (S, B, ...) returns (S, B, out)."""

    def __init__(self, make: Callable[[], nn.Module], n: int) -> None:
        super().__init__()
        members = [make() for _ in range(n)]
        params, buffers = stack_module_state(members)
        if buffers:
            raise ValueError("Ensemble: modules with buffers (BatchNorm) are not supported")
        self.names = list(params)
        self.params = nn.ParameterList([nn.Parameter(params[k].detach().clone()) for k in self.names])
        base = copy.deepcopy(members[0]).to("meta")
        object.__setattr__(self, "_base", base)  # not a sub-module: its (meta) weights are never trained
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def one(p, xb):
            return functional_call(self._base, dict(zip(self.names, p)), (xb,))

        return vmap(one)(tuple(self.params), x)


class BatchedMLP(nn.Module):
    """S independent ReLU MLPs ``in → hidden… → out`` held as stacked weights (one ``baddbmm`` per layer):
    the fast path of :class:`Ensemble` for the MLP class. Each member is initialised as ``nn.Linear``
    (and ``suite.models.MLP``) is: weights and biases U(−1/√fan_in, 1/√fan_in)."""

    def __init__(self, n: int, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = 1.0 / a ** 0.5
            self.weights.append(nn.Parameter(torch.empty(n, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, b).uniform_(-bound, bound)))
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(2) if x.dim() > 3 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.relu(h)
        return h


@dataclass
class NNResult:
    errors: torch.Tensor  # (S,) test MSE to one-hot
    train_errors: torch.Tensor  # (S,) training MSE after training
    test_acc: torch.Tensor  # (S,)


def nn_errors(make: Callable[[int], nn.Module], x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor,
              y_te: torch.Tensor, out_dim: int, n_models: int, epochs: int, batch_size: int, lr: float,
              seed: int, ctx=None, name: str = "nn", eval_chunk: int = 500) -> NNResult:  # noqa: ANN001
    """``make(S)`` builds S members as one batched module (:class:`BatchedMLP`, :class:`Ensemble`). Train
    ``n_models`` networks at once (independent inits and independent data orders), MSE to
    one-hot targets, Adam (official ``nn_inductive_bias.py``); test MSE of each. Adam is elementwise and
    the summed loss decouples the members, so this equals ``n_models`` separate runs."""
    torch.manual_seed(seed)
    ens = make(n_models)  # an Ensemble or a BatchedMLP of n_models members
    dev = torch.device(ctx.device) if ctx is not None else torch.device("cpu")
    x_tr, x_te = x_tr.float(), x_te.float()
    Ytr, Yte = one_hot(y_tr, out_dim, torch.float32), one_hot(y_te, out_dim, torch.float32)
    n = len(x_tr)
    per_epoch = -(-n // batch_size)
    perms_cache: dict[int, torch.Tensor] = {}

    def batch(step: int) -> torch.Tensor:
        """Member-wise index batch (S, B): epoch e uses S independent permutations (data orders)."""
        ep, i = divmod(step, per_epoch)
        if ep not in perms_cache:
            perms_cache.clear()
            g = torch.Generator().manual_seed(seed * 1_000_003 + ep)
            perms_cache[ep] = torch.argsort(torch.rand(n_models, n, generator=g), dim=1)
        return perms_cache[ep][:, i * batch_size:(i + 1) * batch_size]

    x_tr_d, Ytr_d = x_tr.to(dev), Ytr.to(dev)

    def loss(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(dev)
        out = model(x_tr_d[idx])  # (S, B, out)
        # nn.MSELoss per member (mean over batch and outputs), summed over members
        return ((out - Ytr_d[idx]) ** 2).mean(dim=(1, 2)).sum()

    tc = TrainConfig(steps=epochs * per_epoch, batch_size=batch_size, lr=lr, optimizer="adam",
                     log_every=max(epochs * per_epoch // 5, 1), bf16=False)
    fit(ens, loss, batch, tc, ctx=ctx, name=name)
    return NNResult(*_evaluate(ens, x_tr_d, Ytr_d, x_te.to(dev), Yte.to(dev), eval_chunk))


@torch.no_grad()
def _evaluate(ens: nn.Module, x_tr, Ytr, x_te, Yte, chunk: int):  # noqa: ANN001
    def mse(x, Y):  # noqa: ANN001
        errs, accs = [], []
        for s in range(0, len(x), chunk):
            xb = x[s:s + chunk].unsqueeze(0).expand(ens.n, *x[s:s + chunk].shape)
            out = ens(xb)
            errs.append(((out - Y[s:s + chunk]) ** 2).sum(dim=(1, 2)))
            accs.append((out.argmax(-1) == Y[s:s + chunk].argmax(-1)).float().sum(1))
        d = Y.shape[1]
        return (torch.stack(errs).sum(0) / (len(x) * d)).double().cpu(), (torch.stack(accs).sum(0) / len(x)).cpu()

    te, acc = mse(x_te, Yte)
    tr, _ = mse(x_tr, Ytr)
    return te, tr, acc

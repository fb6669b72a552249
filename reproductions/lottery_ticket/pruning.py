"""Weight masks for unstructured pruning: magnitude pruning (layer-wise or global), random masks
with the same per-layer counts, masked training (weights stay exactly zero), reset to an init.

Generic: nothing here is specific to the lottery-ticket paper, so other pruning papers (e.g.
``layer_lottery``) can import it. A *mask set* is ``{param_name: bool tensor}`` over the prunable
weights of a model (by default every ``nn.Linear``/``nn.Conv*`` weight; biases and norm
parameters are never pruned, Frankle & Carbin 2019 §2).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from suite.errors import ConfigError

Masks = dict[str, torch.Tensor]
PRUNABLE_KINDS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


# --------------------------------------------------------------------------- which weights

def prunable_params(model: nn.Module, kinds: tuple[type[nn.Module], ...] = PRUNABLE_KINDS) -> dict[str, nn.Parameter]:
    """``{"<module>.weight": weight}`` of every module of ``kinds``, in module order."""
    out: dict[str, nn.Parameter] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, kinds) and getattr(mod, "weight", None) is not None:
            out[f"{name}.weight" if name else "weight"] = mod.weight
    if not out:
        raise ConfigError(f"{type(model).__name__} has no prunable {[k.__name__ for k in kinds]} weights; "
                          f"pass kinds= that match its layers")
    return out


def ones_masks(params: Mapping[str, torch.Tensor]) -> Masks:
    """The dense mask set (everything kept)."""
    return {k: torch.ones_like(p, dtype=torch.bool) for k, p in params.items()}


def layer_rates(model: nn.Module, fc_rate: float, conv_rate: float | None = None,
                output_rate: float | None = None) -> dict[str, float]:
    """Per-layer prune rates: ``fc_rate`` for Linear, ``conv_rate`` for Conv, ``output_rate``
    (default ``fc_rate / 2``, paper §2 / Fig. 2) for the last prunable layer."""
    params = prunable_params(model)
    conv_rate = fc_rate if conv_rate is None else conv_rate
    output_rate = fc_rate / 2 if output_rate is None else output_rate
    kinds = {f"{n}.weight" if n else "weight": m for n, m in model.named_modules()}
    rates = {k: conv_rate if not isinstance(kinds[k], nn.Linear) else fc_rate for k in params}
    rates[list(params)[-1]] = output_rate
    for k, r in rates.items():
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"prune rate of {k} is {r}; use a rate in [0, 1)")
    return rates


# --------------------------------------------------------------------------- counting

def n_to_prune(remaining: int, rate: float) -> int:
    """How many of ``remaining`` weights one round at ``rate`` removes (round half up)."""
    return int(math.floor(rate * remaining + 0.5))


def counts(masks: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Surviving weights per layer."""
    return {k: int(m.sum()) for k, m in masks.items()}


def density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of prunable weights that survive (the paper's P_m)."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / max(total, 1)


def expected_counts(sizes: Mapping[str, int], rates: Mapping[str, float], rounds: int) -> dict[str, int]:
    """Surviving weights per layer after ``rounds`` rounds of layer-wise pruning at ``rates``."""
    out = {}
    for k, n in sizes.items():
        for _ in range(rounds):
            n -= n_to_prune(n, rates[k])
        out[k] = n
    return out


# --------------------------------------------------------------------------- making masks

def _keep_top(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of ``score`` (stable: earlier index wins ties).

    A selection, not a sort: the k-th largest value t splits the entries into those kept outright (> t)
    and the ties at t, of which the earliest fill the remaining places. Same mask as the first k of a
    stable descending argsort, about 8x faster on VGG-19's 20 M weights (a global prune every round)."""
    flat = score.flatten()
    n = flat.numel()
    if k <= 0 or k >= n:
        return torch.full_like(score, k > 0, dtype=torch.bool)
    if bool(torch.isnan(flat).any()):  # NaN has no rank for kthvalue: sort (NaN counts as the largest)
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
        return keep.view_as(score)
    t = torch.kthvalue(flat, n - k + 1).values
    keep = flat > t
    keep[torch.nonzero(flat == t).flatten()[: k - int(keep.sum())]] = True
    return keep.view_as(score)


def _scores(w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """|w| on surviving entries, -1 on pruned ones (so a pruned weight is never revived)."""
    return torch.where(m, w.detach().abs().float(), torch.full_like(w, -1.0, dtype=torch.float32))


def prune_to_counts(weights: Mapping[str, torch.Tensor], keep: Mapping[str, int],
                    masks: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Per layer, keep the ``keep[k]`` largest-magnitude weights among those ``masks`` keeps."""
    out = {}
    for k, w in weights.items():
        m = masks[k].to(w.device) if masks is not None else torch.ones_like(w, dtype=torch.bool)
        if keep[k] > int(m.sum()):
            raise ConfigError(f"cannot keep {keep[k]} weights of {k}: only {int(m.sum())} survive")
        out[k] = _keep_top(_scores(w, m), keep[k])
    return out


def magnitude_prune(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                    rates: Mapping[str, float]) -> Masks:
    """Layer-wise magnitude pruning (paper §2, Alg. step 3): in each layer remove the fraction
    ``rates[k]`` of its *remaining* weights with the smallest |w|."""
    keep = {k: int(m.sum()) - n_to_prune(int(m.sum()), rates[k]) for k, m in masks.items()}
    return prune_to_counts(weights, keep, masks)


def global_magnitude_prune(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                           rate: float) -> Masks:
    """Global magnitude pruning (paper §4, VGG/ResNet): rank the remaining weights of all layers
    together and remove the fraction ``rate`` with the smallest |w|."""
    names = list(weights)
    scores = [_scores(weights[k], masks[k].to(weights[k].device)).flatten() for k in names]
    flat = torch.cat(scores)
    remaining = int(sum(int(masks[k].sum()) for k in names))
    keep = _keep_top(flat, remaining - n_to_prune(remaining, rate))
    out, start = {}, 0
    for k, s in zip(names, scores):
        out[k] = keep[start:start + s.numel()].view_as(weights[k])
        start += s.numel()
    return out


def global_prune_to_count(weights: Mapping[str, torch.Tensor], keep: int) -> Masks:
    """Keep the ``keep`` largest-magnitude weights over all layers together (one-shot global pruning)."""
    names = list(weights)
    flat = torch.cat([weights[k].detach().abs().float().flatten() for k in names])
    if not 0 <= keep <= flat.numel():
        raise ConfigError(f"cannot keep {keep} of {flat.numel()} weights; use 0 <= keep <= {flat.numel()}")
    kept = _keep_top(flat, keep)
    out, start = {}, 0
    for k in names:
        n = weights[k].numel()
        out[k] = kept[start:start + n].view_as(weights[k])
        start += n
    return out


def random_masks(like: Mapping[str, torch.Tensor], generator: torch.Generator) -> Masks:
    """Random masks with exactly the per-layer survivor counts of ``like`` (paper §2 control
    'random pruning'): positions drawn uniformly with ``generator``."""
    out = {}
    for k, m in like.items():
        perm = torch.randperm(m.numel(), generator=generator)
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[perm[: int(m.sum())]] = True
        out[k] = keep.view_as(m).to(m.device)
    return out


# --------------------------------------------------------------------------- applying masks

@torch.no_grad()
def apply_masks(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries in place."""
    for k, m in masks.items():
        params[k].mul_(m.to(params[k].device, params[k].dtype))


@torch.no_grad()
def reset_to(model: nn.Module, state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` (e.g. the original init θ0) into ``model`` and zero the pruned weights:
    the ticket ``θ0 ⊙ m`` (paper §2, Alg. step 4)."""
    model.load_state_dict(state)
    apply_masks(prunable_params(model), masks)


def masked_max_abs(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> float:
    """Largest |w| over pruned positions (0.0 iff every pruned weight is exactly zero)."""
    vals = [params[k].detach()[~m.to(params[k].device)].abs().max() for k, m in masks.items() if (~m).any()]
    return float(torch.stack(vals).max()) if vals else 0.0


class MaskedTraining:
    """Keeps pruned weights at exactly zero while a model trains.

    Gradients of pruned entries are zeroed by tensor hooks (so Adam's moments at those entries stay
    zero and weight decay of a zero weight adds nothing), and :meth:`on_step` — pass it as
    ``suite.train.fit(on_step=...)`` — re-zeroes the weights after every optimiser step as a
    guarantee (spec §7: masked gradients or re-masking, else Adam revives pruned weights).
    Use as a context manager or call :meth:`remove`.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor], mask_grads: bool = True,
                 remask: bool = True) -> None:
        self.params = prunable_params(model)
        missing = set(masks) - set(self.params)
        if missing:
            raise ConfigError(f"masks name weights the model lacks: {sorted(missing)[:3]}; build masks "
                              f"from prunable_params of the same architecture")
        self.masks = {k: m.to(self.params[k].device) for k, m in masks.items()}
        self.remask = remask
        self._handles = []
        if mask_grads:
            for k, m in self.masks.items():
                mf = m.to(self.params[k].dtype)
                self._handles.append(self.params[k].register_hook(_grad_masker(mf)))
        apply_masks(self.params, self.masks)

    def on_step(self, state: object = None) -> None:
        if self.remask:
            apply_masks(self.params, self.masks)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> "MaskedTraining":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _grad_masker(mask: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * mask.to(grad.device, grad.dtype)
    return hook


def chain(*fns: Callable[[object], None] | None) -> Callable[[object], None]:
    """One ``on_step`` callback that calls each non-None ``fns`` in order."""
    live: Iterable[Callable[[object], None]] = [f for f in fns if f is not None]

    def call(state: object) -> None:
        for f in live:
            f(state)
    return call


__all__ = ["Masks", "PRUNABLE_KINDS", "prunable_params", "ones_masks", "layer_rates", "n_to_prune", "counts",
           "density", "expected_counts", "prune_to_counts", "magnitude_prune", "global_magnitude_prune", "global_prune_to_count",
           "random_masks", "apply_masks", "reset_to", "masked_max_abs", "MaskedTraining", "chain"]

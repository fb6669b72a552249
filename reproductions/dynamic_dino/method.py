"""MoE-Tuning (Dynamic-DINO §3, spec §3): replace every FFN of a pretrained dense transformer by a
fine-grained MoE initialised from it (``moe.FineGrainedMoE``), then fine-tune with the task loss plus
the Switch load-balancing loss (coefficient ``balance``, linearly warmed up, spec §7).

``ffn_slots`` finds the FFNs of three model families: the suite's ViT (``blocks[i].mlp``: fc1, act, fc2),
Hugging Face ViT (``encoder.layer[i].mlp``: fc1, activation_fn, fc2) and BERT/MiniLM
(``encoder.layer[i].intermediate.dense`` + act, ``output.dense``; the MoE takes the place of
``intermediate`` and ``output.dense`` becomes the identity, so ``output`` still adds the residual and
applies its LayerNorm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import nn

from .moe import FineGrainedMoE, dense_params, routing_stats

# TEETH variants break the method's MoE (baselines are always built correctly):
# random-router: sparse upcycling with a random router; no-scale: gates not rescaled by K;
# random-experts: no pre-trained weight allocation; frozen-router: the router never trains;
# no-tune: the MoE is built correctly but its tuning is skipped (experiment.py).
Variant = Literal["correct", "random-router", "no-scale", "random-experts", "frozen-router", "no-tune"]


@dataclass
class Slot:
    fc1: nn.Linear
    fc2: nn.Linear
    act: Callable[[torch.Tensor], torch.Tensor]
    install: Callable[[nn.Module], None]


def ffn_slots(model: nn.Module) -> list[Slot]:
    """The dense FFNs of ``model``, in depth order."""
    if hasattr(model, "blocks"):  # suite.models.ViT / TransformerLM
        return [Slot(b.mlp.fc1, b.mlp.fc2, b.mlp.act, _setter(b, "mlp")) for b in model.blocks]
    if isinstance(getattr(model, "net", None), nn.Module):  # a wrapper around a HF model (full.Classifier)
        return ffn_slots(model.net)
    enc = _hf_encoder(model)
    out = []
    for layer in enc.layer:
        if hasattr(layer, "mlp") and hasattr(layer.mlp, "fc1"):  # HF ViT
            out.append(Slot(layer.mlp.fc1, layer.mlp.fc2, layer.mlp.activation_fn, _setter(layer, "mlp")))
        elif hasattr(layer, "intermediate"):  # BERT family (MiniLM)
            out.append(Slot(layer.intermediate.dense, layer.output.dense, layer.intermediate.intermediate_act_fn,
                            _bert_setter(layer)))
        else:
            raise ValueError(f"no FFN found in {type(layer).__name__}")
    return out


def _hf_encoder(model: nn.Module) -> Any:
    for name in ("encoder", "vit", "bert"):
        sub = getattr(model, name, None)
        if sub is None:
            continue
        if hasattr(sub, "layer"):
            return sub
        if hasattr(sub, "layers"):  # transformers 5 ViT: vit.layers
            return type("Enc", (), {"layer": sub.layers})()
        if hasattr(sub, "encoder"):
            return sub.encoder
    raise ValueError(f"{type(model).__name__}: no transformer encoder found")


def _setter(parent: nn.Module, name: str) -> Callable[[nn.Module], None]:
    return lambda m: setattr(parent, name, m)


def _bert_setter(layer: nn.Module) -> Callable[[nn.Module], None]:
    def install(m: nn.Module) -> None:
        layer.intermediate = m          # returns F(x) including b2
        layer.output.dense = nn.Identity()  # output(F(x), x) = LayerNorm(dropout(F(x)) + x)
    return install


@dataclass
class MoESpec:
    """How the dense FFNs become MoE layers (spec §3)."""

    n_copies: int = 4
    granularity: int = 4
    top_k: int | None = None   # None: K = k
    experts: str = "allocate"  # "allocate" | "random"
    router: str = "preserve"   # "preserve" | "random"
    gate_scale: bool = True
    delta: float = 1e-3
    router_noise: float = 0.0


def spec_for(variant: str, n_copies: int, granularity: int, delta: float, router_noise: float) -> MoESpec:
    """The method's MoE spec under a (possibly broken) variant."""
    return MoESpec(n_copies, granularity, None,
                   experts="random" if variant == "random-experts" else "allocate",
                   router="random" if variant == "random-router" else "preserve",
                   gate_scale=variant != "no-scale", delta=delta, router_noise=router_noise)


def convert(model: nn.Module, spec: MoESpec, gen: torch.Generator | None = None) -> list[FineGrainedMoE]:
    """Replace every FFN of ``model`` in place; returns the MoE layers in depth order."""
    layers = []
    for s in ffn_slots(model):
        moe = FineGrainedMoE.from_dense(s.fc1, s.fc2, s.act, spec.n_copies, spec.granularity, spec.top_k,
                                        spec.experts, spec.router, spec.gate_scale, spec.delta,
                                        spec.router_noise, gen)  # type: ignore[arg-type]
        s.install(moe)
        layers.append(moe)
    return layers


def moe_layers(model: nn.Module) -> list[FineGrainedMoE]:
    return [m for m in model.modules() if isinstance(m, FineGrainedMoE)]


def balance_loss(model: nn.Module) -> torch.Tensor:
    """Mean Switch loss over the MoE layers of the latest forward (0 for a dense model)."""
    layers = moe_layers(model)
    if not layers:
        return torch.zeros(())
    return torch.stack([m.balance_loss() for m in layers]).mean()


def param_counts(model: nn.Module, dense_slots: list[tuple[nn.Linear, nn.Linear]] | None = None) -> dict[str, float]:
    """FFN parameters activated per token and in total, per layer summed (MoE) or dense."""
    layers = moe_layers(model)
    if layers:
        return {"ffn_activated": float(sum(m.activated_params() for m in layers)),
                "ffn_total": float(sum(m.total_params() for m in layers)),
                "router": float(sum(m.router.weight.numel() + m.router.bias.numel() for m in layers))}
    slots = ffn_slots(model)
    n = float(sum(dense_params(s.fc1, s.fc2) for s in slots))
    return {"ffn_activated": n, "ffn_total": n, "router": 0.0}


class RoutingRecorder:
    """Collects each MoE layer's top-K indices over forwards (call ``grab`` after each forward)."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = moe_layers(model)
        self.idx: list[list[torch.Tensor]] = [[] for _ in self.layers]

    def grab(self, keep: torch.Tensor | None = None) -> None:
        for i, m in enumerate(self.layers):
            idx = m.last["idx"]
            self.idx[i].append((idx[keep.reshape(-1)] if keep is not None else idx).cpu())

    def stats(self, partners: int = 3) -> list[dict[str, float]]:
        return [routing_stats(torch.cat(ix), m.e, m.k, partners) for m, ix in zip(self.layers, self.idx)]

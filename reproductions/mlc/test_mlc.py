"""mlc: MCR² pieces against direct formulas, Sinkhorn invariants, the smoke protocol, and the teeth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reproductions.mlc import Config, run
from reproductions.mlc.augment import image_view
from reproductions.mlc.method import (build_net, coding_rate, membership_rate, mlc_objective, sinkhorn,
                                      subspace_cosines)
from suite import registry
from suite.context import for_tests


def _unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed),
                                                     dtype=torch.float64), dim=1)


def test_rates_match_numpy_slogdet():
    z = _unit(40, 6)
    g = sinkhorn(_unit(40, 6, 1) @ _unit(40, 6, 1).T, 0.2, 50)
    zn, gn, eps2 = z.numpy(), g.numpy(), 0.5
    r = 0.5 * np.linalg.slogdet(np.eye(6) + 6 / (40 * eps2) * zn.T @ zn)[1]
    rc = sum(np.linalg.slogdet(np.eye(6) + 6 / eps2 * (zn.T * gn[j]) @ zn)[1] for j in range(40)) / 80
    assert float(coding_rate(z, eps2)) == pytest.approx(r, abs=1e-10)
    assert float(membership_rate(z, g, eps2)) == pytest.approx(rc, abs=1e-10)


def test_sinkhorn_doubly_stochastic_and_differentiable():
    c = _unit(30, 5).requires_grad_(True)
    g = sinkhorn(c @ c.T, 0.3, 50)
    assert torch.allclose(g.sum(0), torch.ones(30, dtype=g.dtype), atol=1e-6)
    assert torch.allclose(g.sum(1), torch.ones(30, dtype=g.dtype), atol=1e-6)
    assert (g >= 0).all()
    (g * torch.randn(30, 30, dtype=g.dtype)).sum().backward()
    assert c.grad is not None and c.grad.abs().sum() > 0


def test_gamma_identity_minimises_compression():
    """Γ = I is the degenerate maximiser of ΔR the entropy guards against (spec §7)."""
    z = _unit(20, 4)
    uniform = torch.full((20, 20), 1 / 20, dtype=torch.float64)
    eye = torch.eye(20, dtype=torch.float64)
    assert membership_rate(z, eye, 0.5) < membership_rate(z, uniform, 0.5)


def test_subspace_metric_orthogonal_vs_shared():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 2, generator=g) @ torch.eye(8)[:2]
    b = torch.randn(200, 2, generator=g) @ torch.eye(8)[2:4]
    s = subspace_cosines(torch.cat([a, b]), torch.arange(2).repeat_interleave(200), rank=2)
    assert s.between < 1e-6 and s.within > 0.99


def test_image_pipeline_builds_on_tiny_resnet():
    net = build_net("tiny_resnet", 3 * 32 * 32, 16, 32)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    z, c = net(image_view(x))
    assert z.shape == c.shape == (6, 16)
    loss, parts = mlc_objective(z, c, 0.5, 0.2, 50)
    loss.backward()
    assert torch.allclose(parts["gamma"].sum(1), torch.ones(6), atol=1e-3)


def _verdicts(metrics: dict, scale: str = "smoke") -> dict[str, str]:
    return {c.id: c.check(metrics, scale)["verdict"] for c in registry.get("mlc").claims}


def test_smoke_protocol_and_teeth():
    """Spec §6 smoke assertions hold for the paper's Γ; a row-softmax Γ (not doubly stochastic) fails them."""
    ok = _verdicts(run(Config(datasets=("curves",), real="curves"), for_tests()).metrics)
    assert all(ok[c] == "holds" for c in ("gamma-doubly-stochastic", "gamma-nonnegative", "rates-match-numpy",
                                         "sinkhorn-gradient", "delta-r-increases"))
    bad = _verdicts(run(Config(datasets=("curves",), real="curves", variant="row_softmax"), for_tests()).metrics)
    assert bad["gamma-doubly-stochastic"] == "fails"


def test_claim_kinds_and_teeth():
    """Every claim has a kind; every paper claim names a broken variant of the config."""
    from suite import teeth

    r = registry.get("mlc")
    assert all(c.kind in ("paper", "check") for c in r.claims)
    assert all(c.teeth for c in r.claims if c.kind == "paper")
    assert teeth.check_declared(r) == []


def test_swapped_sign_descends_on_delta_r():
    """The swapped_sign variant's loss is +ΔR (the paper's is −ΔR) on the same features."""
    z, c = _unit(30, 6), _unit(30, 6, 1)
    good, parts = mlc_objective(z, c, 0.5, 0.2, 20)
    bad, _ = mlc_objective(z, c, 0.5, 0.2, 20, "swapped_sign")
    assert float(good) == pytest.approx(-float(parts["R"] - parts["Rc"]))
    assert float(bad) == pytest.approx(-float(good))

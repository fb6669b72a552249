"""ppp: method invariants, the spec §6 smoke assertions, and the teeth (broken variants fail claims)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reproductions.ppp import Config, evaluate_dataset, run
from reproductions.ppp.data import blobs
from reproductions.ppp.method import (PPPParams, _valid_precisions, canonical_labels, compactness, ppp,
                                      validate_split)
from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError


def _verdicts(metrics: dict, scale: str = "smoke") -> dict[str, str]:
    return {c.id: c.check(metrics, scale)["verdict"] for c in registry.get("ppp").claims}


def test_canonical_labels_order_by_first_member():
    assert canonical_labels(np.array([7, 7, 3, 9, 3])).tolist() == [0, 0, 1, 2, 1]


def test_compactness_matches_direct_sum():
    rng = np.random.default_rng(0)
    x, lab = rng.normal(size=(60, 3)), rng.integers(0, 4, 60)
    wss = sum(((x[lab == c] - x[lab == c].mean(0)) ** 2).sum() for c in range(4))
    assert compactness(x, lab) == pytest.approx(wss / ((x - x.mean(0)) ** 2).sum(), rel=1e-10)
    assert compactness(x, np.zeros(60, dtype=np.int64)) == pytest.approx(1.0)


def test_validate_split_accepts_two_gaussians_rejects_one():
    rng = np.random.default_rng(0)
    one = rng.normal(size=(400, 3))
    two = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 8.0])
    prm = PPPParams()
    lab_one = (one[:, 0] > 0).astype(np.int64)
    lab_two = np.repeat([0, 1], 200)
    assert validate_split(two, lab_two, prm)[0]
    assert not validate_split(one, lab_one, prm)[0]


def test_smoke_protocol_on_blobs():
    """Spec §6 smoke: K=5 found, ARI >= 0.95, 3 permutations give one partition, leaves partition the data."""
    d = blobs(500)
    m = evaluate_dataset(d, Config(baselines=False), seed=0, log=lambda s: None)
    assert m["blobs_ppp_k"] == 5 and m["blobs_ppp_k_abs_err_max"] == 0
    assert m["blobs_ppp_ari"] >= 0.95
    assert m["blobs_ppp_repeat_ari"] == 1.0
    assert m["blobs_ppp_partition_ok"] == 1.0


def test_same_partition_for_different_outer_seeds():
    d = blobs(500)
    a = evaluate_dataset(d, Config(baselines=False, outer_seeds=2), seed=1, log=lambda s: None)
    b = evaluate_dataset(d, Config(baselines=False, outer_seeds=2), seed=2, log=lambda s: None)
    assert a["blobs_ppp_ari"] == b["blobs_ppp_ari"] == 1.0


def test_split_log_and_most_separable():
    lines: list[str] = []
    res = ppp(blobs(500).x, PPPParams(), log=lines.append)
    assert len(lines) == len(res.splits) and sum(s.accepted for s in res.splits) == res.k - 1
    assert res.most_separable is not None and res.most_separable.accepted


def test_bad_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("ppp"), "smoke", ["variant=nope"])


@pytest.mark.parametrize("variant", ["no_validation", "unstable"])
def test_teeth_broken_variants_fail_claims(variant):
    """Skipping the GMM check over-splits; an unseeded single k-means breaks repeatability."""
    out = run(Config(variant=variant, scaling_ns=()), for_tests())
    v = _verdicts(out.metrics)
    assert v["k-found"] == "fails"
    assert v["repeatable-synthetic"] == "fails"


def test_paper_variant_holds_smoke_claims():
    out = run(Config(scaling_ns=()), for_tests())
    v = _verdicts(out.metrics)
    assert all(v[c] == "holds" for c in ("leaves-partition", "k-found", "k-vs-silhouette", "ari-synthetic",
                                         "repeatable-synthetic"))


@pytest.mark.slow
def test_small_scale_blobs_and_digits():
    """Spec §6 small: 10/10 seeds find K on blobs; PPP more repeatable than random-init k-means on digits."""
    repro = registry.get("ppp")
    cfg = dataclasses.replace(Config(), **{**repro.scales["small"], "datasets": ("blobs", "digits"),
                                           "scaling_ns": ()})
    out = run(cfg, for_tests("small"))
    v = _verdicts(out.metrics, "small")
    assert v["k-found"] == v["repeatable-synthetic"] == v["repeatable-vs-kmeans"] == "holds"


def test_claim_kinds_and_teeth():
    """Every claim has a kind; every paper claim names a broken variant or says why none can exist."""
    from suite import teeth

    r = registry.get("ppp")
    assert all(c.kind in ("paper", "check") for c in r.claims)
    assert all(c.teeth or c.no_teeth for c in r.claims if c.kind == "paper")
    assert teeth.check_declared(r) == []


def test_validate_split_with_a_side_smaller_than_the_gmm_dims():
    """A k-means side with fewer points than GMM dimensions (2 of 21 points in 10-d) has a rank-deficient
    covariance: the GMM's initial precisions are floored instead of failing sklearn's positive-definite check."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (19, 10)), rng.normal(8, 100, (2, 10))])
    lab = np.array([0] * 19 + [1] * 2)
    covs = np.stack([np.cov(z[lab == c], rowvar=False) + 1e-6 * np.eye(10) for c in (0, 1)])
    assert not _valid_precisions(np.linalg.inv(covs))  # the plain inverse fails sklearn's check here
    ok, st, maxp = validate_split(z, lab, PPPParams())
    assert len(maxp) == 21 and np.isfinite(st["bic2"])

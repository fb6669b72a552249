"""Invariants of PAM / FastPAM1 / FasterPAM (spec §6 smoke assertions) and the smoke-scale claims."""
from __future__ import annotations

import time

import numpy as np
import pytest

from suite import config, registry
from suite.context import for_tests

from . import CLAIMS, SCALES, Config, run
from . import method as M
from .experiment import euclidean_matrix, load_stand_in



@pytest.fixture(scope="module")
def kmedoids():
    """The Rust reference (optional extra ``pip install kmedoids``): oracle tests skip without it."""
    return pytest.importorskip("kmedoids")


@pytest.fixture(scope="module")
def D_digits() -> np.ndarray:
    X, _ = load_stand_in(200, np.random.default_rng(0))
    return euclidean_matrix(X)


@pytest.fixture(scope="module")
def D_blobs() -> np.ndarray:
    """Random continuous data: no distance ties (spec §7), for the exact-equality tests."""
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 5, (6, 8))
    X = centers[rng.integers(0, 6, 240)] + rng.normal(0, 1, (240, 8))
    return euclidean_matrix(X)


def assert_cache_fresh(D: np.ndarray, st: M.SwapState) -> None:
    """Cache (d_n, d_s, n(o), ΔR) equals a from-scratch recomputation (spec §6 (5))."""
    ref = M.recompute_state(D, st.med)
    np.testing.assert_array_equal(st.dn, ref.dn)
    np.testing.assert_array_equal(st.ds, ref.ds)
    # nearest slot may differ only on exact distance ties
    same = st.near == ref.near
    assert np.all(same | (D[np.arange(len(D)), st.med[ref.near]] == st.dn))
    np.testing.assert_allclose(st.rloss, ref.rloss, rtol=0, atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_gain_formula_equals_brute_force(D_blobs: np.ndarray, k: int) -> None:
    """(1) The O(n) best-swap routine gives TD(after) − TD(before) for 200 random (i, x) pairs."""
    rng = np.random.default_rng(k)
    n = len(D_blobs)
    med = M.random_init(n, k, rng)
    if k == 1:  # special case: no second nearest; check the single-medoid path instead
        res = M.fasterpam_swap(D_blobs, med)
        assert res.td == pytest.approx(D_blobs.sum(axis=1).min(), rel=1e-12)
        return
    st = M.initial_assignment(D_blobs, med)
    cands = np.setdiff1d(np.arange(n), med)
    xs = rng.choice(cands, 200)
    # full (x, slot) table: Δ per slot from the routine's pieces, compared with brute force
    pam = M.pam_gains(D_blobs, st, xs)                       # direct PAM formula, (200, k)
    gain, slot = M.candidate_gains(D_blobs, st, xs)
    for j, x in enumerate(xs):
        i = int(rng.integers(k))
        brute = M.brute_force_delta(D_blobs, st.med, i, int(x))
        assert pam[j, i] == pytest.approx(brute, abs=1e-9)
        best = min(M.brute_force_delta(D_blobs, st.med, ii, int(x)) for ii in range(k))
        assert gain[j] == pytest.approx(best, abs=1e-9)
        assert M.brute_force_delta(D_blobs, st.med, int(slot[j]), int(x)) == pytest.approx(best, abs=1e-9)


def test_gain_formula_broken_variant_differs(D_blobs: np.ndarray) -> None:
    """Dropping the Δ[n(o)] += d_n − d_s correction gives wrong gains (the test has teeth)."""
    st = M.initial_assignment(D_blobs, M.random_init(len(D_blobs), 5, np.random.default_rng(0)))
    xs = np.setdiff1d(np.arange(len(D_blobs)), st.med)
    good, _ = M.candidate_gains(D_blobs, st, xs)
    bad, _ = M.candidate_gains(D_blobs, st, xs, variant="no-correction")
    assert np.max(np.abs(good - bad)) > 1e-3


@pytest.mark.parametrize("data", ["D_digits", "D_blobs"])
@pytest.mark.parametrize("k", [3, 5, 10])
def test_fastpam1_equals_pam_and_kmedoids(request, kmedoids, data: str, k: int) -> None:
    """(2) FastPAM1 == PAM medoids and TD from the same BUILD init; (3) == kmedoids.pam/fastpam1."""
    D = request.getfixturevalue(data)
    build = M.build_init(D, k)
    km_build = kmedoids.pam_build(D, k)
    assert build.td == pytest.approx(km_build.loss, rel=1e-12)
    pam = M.pam_swap(D, build.medoids)
    fp1 = M.fastpam1_swap(D, build.medoids)
    assert set(pam.medoids.tolist()) == set(fp1.medoids.tolist())
    assert abs(pam.td - fp1.td) <= 1e-9
    assert (pam.swaps, pam.iters) == (fp1.swaps, fp1.iters)
    ref = kmedoids.pam(D, build.medoids.copy(), max_iter=100)
    ref1 = kmedoids.fastpam1(D, build.medoids.copy(), max_iter=100)
    assert pam.td == pytest.approx(ref.loss, rel=1e-12)
    assert set(pam.medoids.tolist()) == set(np.asarray(ref.medoids).tolist())
    assert fp1.td == pytest.approx(ref1.loss, rel=1e-12)
    assert pam.swaps == ref.n_swap


@pytest.mark.parametrize("data", ["D_digits", "D_blobs"])
@pytest.mark.parametrize("k", [2, 5, 10])
def test_fasterpam_close_to_pam_and_equal_to_kmedoids(request, kmedoids, data: str, k: int) -> None:
    """(4) FasterPAM TD ≤ 1.02 × PAM TD; same swaps and loss as kmedoids.fasterpam (same order)."""
    D = request.getfixturevalue(data)
    rng = np.random.default_rng(k)
    build = M.build_init(D, k)
    pam = M.pam_swap(D, build.medoids)
    for init in (build.medoids, M.random_init(len(D), k, rng)):
        fr = M.fasterpam_swap(D, init)
        assert fr.td <= 1.02 * pam.td
        ref = kmedoids.fasterpam(D, init.copy(), max_iter=100, n_cpu=1)
        assert fr.td == pytest.approx(ref.loss, rel=1e-12)
        assert (fr.swaps, fr.iters) == (ref.n_swap, ref.n_iter)
        assert set(fr.medoids.tolist()) == set(np.asarray(ref.medoids).tolist())


@pytest.mark.parametrize("algo", ["pam", "fastpam1", "fasterpam"])
def test_cache_invariants_after_every_swap(D_digits: np.ndarray, algo: str) -> None:
    """(5) n(o), d_n, d_s, ΔR equal a from-scratch recomputation after every swap."""
    D = D_digits
    seen = []

    def check(st: M.SwapState) -> None:
        assert_cache_fresh(D, st)
        seen.append(1)

    init = M.random_init(len(D), 7, np.random.default_rng(3))
    fn = {"pam": M.pam_swap, "fastpam1": M.fastpam1_swap, "fasterpam": M.fasterpam_swap}[algo]
    res = fn(D, init, check=check)
    assert len(seen) == res.swaps > 0
    assert res.td == pytest.approx(M.total_deviation(D, res.medoids), rel=1e-12)


def test_stale_second_breaks_cache_invariant(D_digits: np.ndarray) -> None:
    """Skipping the second-nearest rescan is caught by the invariant check."""
    st = M.initial_assignment(D_digits, M.random_init(len(D_digits), 7, np.random.default_rng(3)))
    with pytest.raises(AssertionError):
        for x in range(len(D_digits)):
            if x in st.med:
                continue
            M.apply_swap(D_digits, st, int(np.argmax(st.rloss == st.rloss.min())), x, "stale-second")
            assert_cache_fresh(D_digits, st)


def test_baselines_are_valid(D_digits: np.ndarray) -> None:
    """Alternating, CLARA and FastCLARA return k distinct medoids and their true TD (≥ PAM's)."""
    k, rng = 5, np.random.default_rng(0)
    pam = M.pam_swap(D_digits, M.build_init(D_digits, k).medoids)
    for res in (M.alternating(D_digits, M.random_init(len(D_digits), k, rng)),
                M.clara(D_digits, k, rng), M.fastclara(D_digits, k, rng)):
        assert len(set(res.medoids.tolist())) == k
        assert res.td == pytest.approx(M.total_deviation(D_digits, res.medoids), rel=1e-12)
        assert res.td >= pam.td * 0.98


def test_smoke_claims_hold_through_run() -> None:
    out = run(Config(**SCALES["smoke"]), for_tests())
    verdicts = {c.id: c.check(out.metrics, "smoke")["verdict"] for c in CLAIMS}
    assert all(v in ("holds", "not-expected") for v in verdicts.values()), verdicts
    assert out.dataset.provenance == "stand-in"
    assert out.metrics["fasterpam_swap_s@k=10"] > 0


@pytest.mark.parametrize("variant,claims", [
    ("no-correction", ["C1-fastpam1-equals-pam", "C2-fasterpam-within-1pct"]),
    ("stale-second", ["C1-fastpam1-equals-pam"]),
    ("per-medoid-gains", ["C1-fastpam1-O(k)-evals", "C4-speedup-grows-evals"]),
])
def test_broken_variant_fails_a_claim(variant: str, claims: list[str]) -> None:
    """Teeth at smoke (the small-scale ones run with ``suite teeth fasterpam``): a wrong removal-loss
    update / stale second nearest break C1's exactness; per-medoid gains lose the O(k) saving."""
    out = run(Config(**SCALES["smoke"], variant=variant), for_tests())
    failed = [c.id for c in CLAIMS if c.check(out.metrics, "smoke")["verdict"] == "fails"]
    assert set(claims) <= set(failed), failed


def test_paper_claims_have_teeth() -> None:
    """Every paper claim names a broken variant that exists (REPRODUCTION.md §5)."""
    from suite import teeth

    repro = registry.get("fasterpam")
    assert all(c.kind in ("paper", "check") for c in CLAIMS)
    assert all(c.teeth for c in CLAIMS if c.kind == "paper")
    assert teeth.check_declared(repro) == []


def test_runs_without_kmedoids(monkeypatch) -> None:
    """Without the optional ``kmedoids`` package the run completes, its metrics are absent, the claim
    says "missing" and the notes say what to install."""
    import sys

    monkeypatch.setitem(sys.modules, "kmedoids", None)     # import kmedoids -> ImportError
    out = run(Config(**{**SCALES["smoke"], "ks": (5, 10), "random_inits": 1}), for_tests())
    assert "fasterpam_vs_kmedoids_td_rel" not in out.metrics
    assert not any(k.startswith("kmedoids_swap_s") for k in out.metrics)
    claim = next(c for c in CLAIMS if c.id == "R-same-as-kmedoids")
    assert claim.check(out.metrics, "smoke")["verdict"] == "missing"
    assert "pip install kmedoids" in out.notes["kmedoids"]


def test_dry_run_builds_without_running() -> None:
    out = run(Config(**SCALES["smoke"]), for_tests(dry_run=True))
    assert out.metrics == {}


def test_bad_config_errors() -> None:
    from suite.errors import ConfigError

    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("fasterpam"), "smoke", ["variant=nope"])
    with pytest.raises(ConfigError):
        run(Config(**{**SCALES["smoke"], "n": 5000}), for_tests())


@pytest.mark.bench
def test_bench_n2000_k100_vs_kmedoids(kmedoids) -> None:
    """Performance target: FasterPAM at n=2000, k=100 within 3x of kmedoids.fasterpam (1 thread).

    Data: 2000 Gaussian-blob points in 64-d (digits has only 1797). Best of 5 for both.
    """
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(2000, n_features=64, centers=50, cluster_std=4.0, random_state=0)
    D = euclidean_matrix(X)
    ratios = []
    for s in range(3):
        init = M.random_init(len(D), 100, np.random.default_rng(s))
        ours, ref = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            km = kmedoids.fasterpam(D, init.copy(), n_cpu=1)
            ref.append(time.perf_counter() - t0)
            r = M.fasterpam_swap(D, init)
            ours.append(r.seconds)
        assert r.td == pytest.approx(km.loss, rel=1e-9)
        ratios.append(min(ours) / min(ref))
        print(f"seed {s}: ours {min(ours):.4f}s kmedoids {min(ref):.4f}s ratio {ratios[-1]:.2f}")
    assert float(np.median(ratios)) <= 3.0, ratios

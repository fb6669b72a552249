"""SJD: method invariants, the spec §6 smoke assertions and the teeth (mutations make claims fail)."""
from __future__ import annotations

import pytest
import torch

from suite import registry, runner
from suite.context import for_tests

from . import SJDConfig, run
from .method import all_sequences, ar_sample, encode, sequence_logprob, sjd_sample
from .models import GridMarkovModel, NGramModel, blob_stripe_images
from suite.metrics.stats import chi2_gof


def _trigram(seed: int = 0, **kw) -> NGramModel:
    return NGramModel.random(4, 3, torch.Generator().manual_seed(seed), peak=2.0, **kw)


def test_enumerated_probabilities_sum_to_one():
    m = _trigram(top_k=2, temperature=0.7)
    p = sequence_logprob(m, all_sequences(4, 5)).exp()
    assert abs(float(p.sum()) - 1) < 1e-9
    assert torch.equal(encode(all_sequences(3, 4), 3), torch.arange(81))


def test_every_pass_appends_a_token_and_rows_are_independent():
    m, g = _trigram(), torch.Generator().manual_seed(1)
    d = sjd_sample(m, 6, 4, 500, g)
    assert d.tokens.shape == (500, 6) and d.tokens.max() < 4
    assert (d.nfe >= 2).all() and (d.nfe <= 6).all()  # >= 1 token per pass; 6 tokens need >= 2 passes of L=4
    assert d.nfe.unique().numel() > 1  # per-row acceptance lengths, no shared truncation


def test_single_row_equals_batch_semantics():
    """Batch size 1 runs the same code path; a 1-row decode gives a valid sequence."""
    m, g = _trigram(), torch.Generator().manual_seed(2)
    d = sjd_sample(m, 6, 4, 1, g)
    assert d.tokens.shape == (1, 6) and 2 <= int(d.nfe) <= 6


@pytest.mark.parametrize("kw", [{}, {"top_k": 2, "temperature": 0.7}])
def test_sjd_exact_chi_square(kw):
    """Spec §6 smoke: 20k SJD sequences fit the enumerated law (p > 1e-3)."""
    m, g = _trigram(3, **kw), torch.Generator().manual_seed(3)
    p = sequence_logprob(m, all_sequences(4, 6)).exp()
    d = sjd_sample(m, 6, 4, 20000, g)
    assert chi2_gof(encode(d.tokens, 4), p) > 1e-3
    if not kw:  # the speed assertion of spec §6 is on the plain trigram
        assert d.nfe.float().mean() <= 0.75 * 6


@pytest.mark.parametrize("variant", ["resample_from_p", "onehot_residual"])
def test_mutations_fail_chi_square(variant):
    m, g = _trigram(4), torch.Generator().manual_seed(4)
    p = sequence_logprob(m, all_sequences(4, 6)).exp()
    d = sjd_sample(m, 6, 4, 20000, g, variant=variant)
    assert chi2_gof(encode(d.tokens, 4), p) < 1e-6


def test_chi2_rejects_a_wrong_model():
    """The goodness-of-fit test has power: AR samples of another trigram are rejected."""
    g = torch.Generator().manual_seed(5)
    p = sequence_logprob(_trigram(5), all_sequences(4, 6)).exp()
    d = ar_sample(_trigram(6), 6, 20000, g)
    assert chi2_gof(encode(d.tokens, 4), p) < 1e-6


def test_random_reset_loses_the_speedup():
    m, g = _trigram(7), torch.Generator().manual_seed(7)
    assert sjd_sample(m, 6, 4, 20000, g, variant="random_reset").nfe.float().mean() > 0.75 * 6


def test_grid_model_image_compression():
    """Spec §6 small in miniature: SJD compresses steps on token images, Jacobi much less."""
    g = torch.Generator().manual_seed(8)
    m = GridMarkovModel.fit(blob_stripe_images(4000, 8, 16, g), 8, 16)
    sjd = sjd_sample(m, 64, 16, 200, g).step_compression
    jac = sjd_sample(m, 64, 16, 200, g, jacobi=True).step_compression
    assert sjd >= 1.5 and sjd / jac >= 1.5


def test_repeat_horizon_init_runs():
    g = torch.Generator().manual_seed(9)
    m = GridMarkovModel.fit(blob_stripe_images(2000, 8, 16, g), 8, 16)
    d = sjd_sample(m, 64, 16, 100, g, init="repeat_horizon", grid_w=8)
    assert d.tokens.shape == (100, 64) and d.step_compression > 1.0


@pytest.mark.parametrize("variant,claim", [("resample_from_p", "exact"), ("random_reset", "fewer-passes")])
def test_teeth_broken_variant_fails_a_claim(variant, claim):
    cfg = SJDConfig(variant=variant, n_exact=5000)
    out = run(cfg, for_tests("smoke"))
    verdict = registry.get("sjd").claim(claim).check(out.metrics, "smoke")["verdict"]
    assert verdict == "fails"


@pytest.mark.slow
def test_paper_variant_holds_smoke_claims_other_seed(tmp_path):
    rec = runner.execute(runner.RunSpec("sjd", "smoke", 1), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    held = [c for c, v in rec["claims"].items() if v["verdict"] == "holds"]
    assert {"exact", "exact-topk-temp", "fewer-passes"} <= set(held)

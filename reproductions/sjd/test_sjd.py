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


# ---- full-scale pieces (issue 17): KV cache, VQGAN decoder, FID / CLIP, the full path on fixtures ----

def _tiny_hf(vocab: int = 64):
    pytest.importorskip("transformers")
    from suite.models.hf import tiny_random_lm

    return tiny_random_lm("llama", vocab, max_len=512).double()  # float64: cached and uncached logits agree to 1e-12


@pytest.mark.parametrize("layout", [{}, {"prefix_ids": (9, 10), "row_len": 4, "row_end_id": 11}])
def test_kv_cache_same_tokens_fewer_token_forwards(layout):
    """Alg. 1 with a KV cache (accepted prefix kept, rejected drafts cropped) samples the same tokens as
    recomputing every pass, from far fewer token-forward computations."""
    from .models import HFProbModel

    m = _tiny_hf()
    prompt, uncond = torch.tensor([1, 5, 6, 7, 8, 12, 13]), torch.tensor([1, 5])
    out = {}
    for cache in (True, False):
        pm = HFProbModel(m, prompt, uncond, 32, 64, 3.0, 8, kv_cache=cache, **layout)
        g = torch.Generator().manual_seed(0)
        runs = []
        for kw in ({}, {"jacobi": True}, None):
            pm.reset()
            before = pm.tokens_forwarded
            d = ar_sample(pm, 16, 1, g) if kw is None else sjd_sample(pm, 16, 4, 1, g, **kw)
            runs.append((d.tokens, int(d.nfe.sum()), pm.tokens_forwarded - before))
        out[cache] = runs
    for (tok_c, nfe_c, fwd_c), (tok_u, nfe_u, fwd_u) in zip(out[True], out[False]):
        assert torch.equal(tok_c, tok_u) and nfe_c == nfe_u
        assert fwd_c < 0.6 * fwd_u, (fwd_c, fwd_u)
    sjd_nfe = out[True][0][1]
    assert sjd_nfe < 16  # SJD accepted more than one token in some pass, so the cache was cropped mid-window


def test_kv_cache_rollback_matches_recompute():
    """Probabilities after arbitrary edits of the window (rejections) equal a fresh uncached pass."""
    from .models import HFProbModel

    m = _tiny_hf()
    kw = dict(prefix_ids=(9,), row_len=3, row_end_id=11)
    cached = HFProbModel(m, torch.tensor([1, 5, 6]), torch.tensor([1]), 32, 64, 2.0, 0, **kw)
    plain = HFProbModel(m, torch.tensor([1, 5, 6]), torch.tensor([1]), 32, 64, 2.0, 0, kv_cache=False, **kw)
    g = torch.Generator().manual_seed(3)
    seq = torch.cat([torch.tensor([[32]]), torch.randint(32, (1, 10), generator=g)], 1)
    for start, edit in ((0, None), (4, 6), (7, 3), (2, 9), (9, None)):
        if edit is not None:
            seq = seq.clone()
            seq[0, edit:] = torch.randint(32, (seq.shape[1] - edit,), generator=g)  # new drafts after a rejection
        a, b = cached(seq, start), plain(seq, start)
        assert a.shape == (1, seq.shape[1] - start, 32)
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert cached.tokens_forwarded < plain.tokens_forwarded


def test_row_end_layout_positions():
    """With row separators the image token j sits at model position P + j + j // row_len."""
    from .models import HFProbModel

    pm = HFProbModel(_tiny_hf(), torch.tensor([1, 2]), torch.tensor([1]), 32, 64, 1.0, 0, prefix_ids=(9,),
                     row_len=2, row_end_id=11)
    ids = pm._model_ids(pm.branches[0], torch.tensor([0, 1, 2, 3, 4]))
    assert ids.tolist() == [1, 2, 9, 32, 33, 11, 34, 35, 11, 36]
    assert pm._logit_pos(3, torch.arange(6)).tolist() == [2, 3, 5, 6, 8, 9]  # inputs just before each image token


def test_frechet_distance_of_gaussians():
    import numpy as np

    from .quality import frechet_distance

    r = np.random.default_rng(0)
    a = r.normal(size=(4000, 6))
    assert abs(frechet_distance(a, r.normal(size=(4000, 6)) + 0.5) - 6 * 0.25) < 0.1  # |mu1 - mu2|^2
    assert abs(frechet_distance(a, 2 * r.normal(size=(4000, 6))) - 6 * (1 + 4 - 2 * 2)) < 0.3  # trace term
    assert frechet_distance(a, a) < 1e-6


def test_vq_decoder_loads_the_chameleon_layout(tmp_path):
    pytest.importorskip("yaml")
    from .vq import code_map, load_vq_decoder, write_fixture

    write_fixture(tmp_path, n_embed=40)
    dec = load_vq_decoder(tmp_path, torch.device("cpu"))
    keys = set(dec.state_dict())
    assert {"quantize.embedding.weight", "post_quant_conv.weight", "decoder.conv_in.weight",
            "decoder.mid.attn_1.q.weight", "decoder.up.1.upsample.conv.weight", "decoder.up.0.block.0.conv1.weight",
            "decoder.norm_out.weight"} <= keys
    img = dec(torch.randint(40, (2, 3, 5)))
    assert img.shape == (2, 3, 6, 10) and img.dtype == torch.uint8  # one x2 up-sampling level
    assert img.float().std() > 0

    class Tok:
        def get_vocab(self):
            return {"IMGIMGBAZ": 5, "IMGIMGAZ": 4, "IMGIMGCCZ": 6, "hello": 7}

    assert code_map("chameleon", 4, 7, Tok()).tolist() == [0, 10, 22]
    assert code_map("offset", 4, 7, None).tolist() == [0, 1, 2]
    from suite.errors import ConfigError

    with pytest.raises(ConfigError, match="IMGIMG"):
        code_map("chameleon", 4, 8, Tok())


def test_clip_score_fixture(tmp_path):
    pytest.importorskip("transformers")
    from .quality import ClipScorer, write_clip_fixture

    write_clip_fixture(tmp_path)
    clip = ClipScorer(tmp_path, torch.device("cpu"))
    img = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8)
    s = clip.score(img, clip.text("a cat on a couch").expand(2, -1))
    assert s.shape == (2,) and ((s >= 0) & (s <= 100)).all()
    assert torch.allclose(clip.score(img[:1], clip.text("a cat on a couch")), s[:1], atol=1e-4)


def test_full_path_on_fixtures(tmp_path, monkeypatch):
    """The full pipeline (captions, images, T2I model, VQGAN, Inception, CLIP) in a dry run: every
    full-scale claim reads a metric this path measured."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    from . import SJDConfig

    cfg = SJDConfig(model_dir="models/Lumina-mGPT-7B-768")
    out = run(cfg, for_tests("full", tmp=tmp_path, dry_run=True, data_root=tmp_path / "nodata"))
    repro = registry.get("sjd")
    for c in repro.claims:
        if "full" in c.scales:
            assert c.check(out.metrics, "full")["verdict"] in ("holds", "fails"), c.id
    assert out.dataset.provenance == "stand-in"
    assert out.metrics["image_sjd_tokens_forwarded_per_image"] > 0

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


def test_repeat_horizon_drafts_from_the_left_neighbour():
    """The repo's 'repeat_horizon' (get_multi_token_for_preparation) copies the LEFT neighbour in the same
    row (clamped to the last known token); the first column of a row is a uniform draft."""
    from .method import _init_tokens

    class V:
        vocab = 1000  # uniform drafts are almost never 7 or 9

    known = torch.tensor([[99, 5, 6, 7, 9]])  # start token, then tokens 0..3 known (accepted + kept drafts)
    g = torch.Generator().manual_seed(0)
    out = _init_tokens(V, known, torch.tensor([3]), torch.tensor([[3, 4, 5, 6]]), "repeat_horizon", 4, g)
    assert out[0, 0] == 7 and out[0, 2] == 7 and out[0, 3] == 7  # left of 3 is 2; 5, 6 clamp to the last known (2)
    assert out[0, 1] not in (5, 6, 7, 9)  # position 4 opens row 2: uniform
    out = _init_tokens(V, known, torch.tensor([4]), torch.tensor([[5, 7]]), "repeat_horizon", 4, g)
    assert out.tolist() == [[9, 9]]  # the kept draft (token 3) counts as known


class _RowConstant:
    """Rows of ``w`` equal tokens: P(x_t) = one-hot(x_{t-1}) inside a row, uniform at a row's start."""

    def __init__(self, vocab: int, w: int) -> None:
        self.vocab, self.bos, self.w = vocab, vocab, w

    def __call__(self, seq: torch.Tensor, start: int = 0) -> torch.Tensor:
        t = seq.shape[1]
        prev = seq.clamp(max=self.vocab - 1)
        p = torch.nn.functional.one_hot(prev, self.vocab).double()
        p[:, torch.arange(t) % self.w == 0] = 1.0 / self.vocab  # column j predicts token j
        return p[:, start:]


def test_repeat_horizon_compresses_rows_of_equal_tokens():
    """Left-neighbour drafts are right on row-constant images (the whole rest of a row is accepted); copies
    of the row above, or uniform drafts, almost never are."""
    m = _RowConstant(16, 8)
    g = torch.Generator().manual_seed(0)
    # random_reset: every window is drafted afresh by the init scheme (kept Jacobi drafts would hide it)
    rnd = sjd_sample(m, 64, 16, 50, g, variant="random_reset")
    hor = sjd_sample(m, 64, 16, 50, g, init="repeat_horizon", grid_w=8, variant="random_reset")
    assert (hor.tokens.reshape(50, 8, 8) == hor.tokens.reshape(50, 8, 8)[:, :, :1]).all()
    assert hor.step_compression >= 2.5 and hor.step_compression >= 2 * rnd.step_compression, (
        hor.step_compression, rnd.step_compression)


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


def test_coco_caption_choice_is_the_repos(tmp_path):
    """MSCOCOPromptBench: captions in file order, the relative index where the length last beat the running
    maximum, that maximum never reset between images (not the smallest annotation id)."""
    import json

    from .full import coco_captions

    anns = [(1, 30, "a b"), (1, 10, "a longer one"), (1, 20, "mid"),  # 12 chars: index 1
            (2, 11, "short"), (2, 12, "tiny"), (2, 13, "a much longer caption"),  # 21 > 12: index 2
            (3, 5, "abc"), (3, 6, "abcdef"), (3, 7, "xy")]  # nothing beats 21: index 2 again
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in (3, 1, 2)],
        "annotations": [{"image_id": i, "id": a, "caption": c} for i, a, c in anns]}))
    got = coco_captions(tmp_path / "c.json", 10)
    assert got == [("1.jpg", "a longer one"), ("2.jpg", "a much longer caption"), ("3.jpg", "xy")]
    assert coco_captions(tmp_path / "c.json", 2) == got[:2]


def test_masked_prompt_uncond_equals_last_token():
    """The repo's unconditional branch (prepare_cfg_input: the prompt but its last token masked out of
    attention, positions from the attention-mask cumsum) gives the logits of the last prompt token run alone."""
    from types import SimpleNamespace

    from .full import uncond_ids

    m = _tiny_hf()
    prompt = torch.tensor([1, 5, 6, 7, 8, 12, 13])
    image = torch.tensor([40, 41, 50, 33])
    ids = torch.cat([prompt, image])[None]
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[:prompt.numel() - 1] = False  # prepare_cfg_input: attention_mask[B//2:, :prefill_num] = 0
    pos = (keep.long().cumsum(-1) - 1).masked_fill(~keep, 1)[None]
    t = ids.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool).tril() & keep[None, :]
    allowed |= torch.eye(t, dtype=torch.bool)  # masked rows see themselves only (no NaN; nobody reads them)
    bias = torch.zeros(t, t, dtype=torch.float64).masked_fill(~allowed, torch.finfo(torch.float64).min)
    with torch.no_grad():
        masked = m(input_ids=ids, attention_mask=bias[None, None], position_ids=pos).logits[0, prompt.numel() - 1:]
        cfg = SimpleNamespace(cfg_uncond="masked_prompt")
        alone = m(input_ids=torch.cat([uncond_ids(prompt, cfg), image])[None]).logits[0]
    assert torch.allclose(masked, alone, atol=1e-10, rtol=0)
    assert uncond_ids(prompt, cfg).tolist() == [13]


def test_full_preset_uses_the_official_layout(tmp_path, monkeypatch):
    """The full preset on the Chameleon-shaped fixture vocabulary: prompt + <reserved08706>, the unconditional
    branch = that separator alone, image prefix <racm3:break> <reserved08824> x2, row end <reserved08799>,
    codes through the IMGIMG names; the decoded tokens are image tokens only (the VQ grid never sees a
    forced token)."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    from suite import config

    from . import full, models, vq

    cfg = config.resolve(registry.get("sjd"), "full", {"n_prompts": 2})
    seen, codes = [], []
    real_pm, real_map = models.HFProbModel, vq.code_map

    def pm(model, cond, unc, *a, **kw):
        seen.append((cond.tolist(), unc.tolist(), kw))
        return real_pm(model, cond, unc, *a, **kw)

    def cmap(*a):
        codes.append(real_map(*a))
        return codes[-1]

    monkeypatch.setattr(full, "HFProbModel", pm)
    monkeypatch.setattr(vq, "code_map", cmap)
    out = run(cfg, for_tests("full", tmp=tmp_path, dry_run=True, data_root=tmp_path / "nodata"))
    cond, unc, kw = seen[0]
    assert cond[-1] == 8710 and unc == [8710]
    assert list(kw["prefix_ids"]) == [8197, 8828, 8828] and kw["row_end_id"] == 8803 and kw["row_len"] == 4
    k = torch.arange(8192)
    assert torch.equal(codes[0], k * full.FIXTURE_CODE_STRIDE % 8192)  # not the offset map
    assert out.metrics["image_sjd_tokens_forwarded_per_image"] > 0


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

"""Invariants of self-pretraining (spec §6 smoke assertions) and the teeth of its claims."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from reproductions.self_pretraining import CLAIMS, Config, run
from reproductions.self_pretraining.encoders import (Classifier, EncoderConfig, PretrainModel, build_encoder,
                                                     transfer_encoder)
from reproductions.self_pretraining.masking import IGNORE, mask_pixels, mask_tokens, masked_ce, masked_l1
from reproductions.self_pretraining.method import PhaseConfig, encoder_config, finetune, make_classifier, pretrain
from reproductions.self_pretraining.tasks import TaskData, listops_mini
from suite.models.ssm import SSMConfig
from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError, UnknownNameError
from suite.spec import DatasetRef

SMOKE = dict(n_train=64, n_test=32, min_length=8, max_length=24, max_depth=3, d_model=16, d_state=8,
             pretrain_steps=20, finetune_steps=2, batch_size=16, warmup_steps=0, lr=3e-3, low_data_frac=0.25)


def _cfg(arch: str, **kw) -> EncoderConfig:
    return EncoderConfig(arch=arch, d_model=16, n_layers=2, heads=2, ssm=SSMConfig(d_state=8, bidirectional=True), **kw)


def _claim(cid: str):
    return next(c for c in CLAIMS if c.id == cid)


# --------------------------------------------------------------------------- masking

def test_mask_tokens_rate_targets_and_mask_id():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 17, (100, 100), generator=g)
    x[:, 95:] = 0  # padding
    inp, tgt, m = mask_tokens(x, 0.5, mask_id=17, pad_id=0, generator=g)
    real = x != 0
    assert abs(float(m.sum() / real.sum()) - 0.5) <= 0.05
    assert not m[~real].any()  # padding never masked
    assert (tgt[~m] == IGNORE).all() and torch.equal(tgt[m], x[m])
    assert (inp[m] == 17).all() and torch.equal(inp[~m], x[~m])


def test_mask_id_must_differ_from_pad():
    with pytest.raises(ConfigError):
        mask_tokens(torch.ones(2, 3, dtype=torch.long), 0.5, mask_id=0, pad_id=0)


def test_broken_mask_keeps_targets_everywhere():
    x = torch.randint(1, 10, (4, 50), generator=torch.Generator().manual_seed(1))
    _, tgt, m = mask_tokens(x, 0.5, 10, 0, torch.Generator().manual_seed(2), loss_on_all_positions=True)
    assert (tgt[~m] != IGNORE).all()


def test_mask_pixels_two_channels_and_l1_on_masked_only():
    x = torch.rand(8, 30, generator=torch.Generator().manual_seed(0))
    inp, tgt, m = mask_pixels(x, 0.5, torch.Generator().manual_seed(1))
    assert inp.shape == (8, 30, 2)
    assert torch.equal(inp[..., 1], m.float()) and (inp[..., 0][m] == 0).all() and torch.equal(inp[..., 0][~m], x[~m])
    pred = torch.where(m, x, x + 5.0)  # perfect on masked pixels, wrong elsewhere
    assert float(masked_l1(pred, tgt, m)) == 0.0
    assert float(masked_l1(pred, tgt, m, loss_on_all_positions=True)) > 1.0


def test_masked_ce_ignores_unmasked_positions():
    logits = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(0))
    tgt = torch.tensor([[1, IGNORE, 2, IGNORE, 0, IGNORE]] * 2)
    other = logits.clone()
    other[tgt == IGNORE] = 100.0
    assert torch.allclose(masked_ce(logits, tgt), masked_ce(other, tgt))


# --------------------------------------------------------------------------- encoders and transfer

@pytest.mark.parametrize("arch", ["transformer", "s4d"])
def test_transfer_copies_every_encoder_tensor(arch):
    src = build_encoder(_cfg(arch, vocab=18), seed=1)
    dst = build_encoder(_cfg(arch, vocab=18), seed=2)
    info = transfer_encoder(src, dst)
    assert info["max_abs_diff"] == 0.0 and info["n_tensors"] == len(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


@pytest.mark.parametrize("arch", ["transformer", "s4d"])
def test_pixel_transfer_drops_the_mask_channel(arch):
    src = build_encoder(_cfg(arch, d_input=2), seed=1)
    dst = build_encoder(_cfg(arch, d_input=1), seed=2)
    transfer_encoder(src, dst)
    key = dst.input_key
    assert torch.equal(dst.state_dict()[key], src.state_dict()[key][..., :1])


def test_transfer_refuses_a_partial_load():
    src = build_encoder(_cfg("transformer", vocab=18), seed=1)
    dst = build_encoder(replace(_cfg("transformer", vocab=18), n_layers=3), seed=1)
    with pytest.raises(ConfigError):
        transfer_encoder(src, dst)


@pytest.mark.parametrize("arch", ["transformer", "s4d"])
def test_classifier_ignores_padding(arch):
    torch.manual_seed(0)
    clf = Classifier(build_encoder(_cfg(arch, vocab=18), seed=3), n_classes=4).eval()
    x = torch.randint(1, 17, (3, 12), generator=torch.Generator().manual_seed(4))
    x[0, 8:] = 0
    padded = torch.cat([x, torch.zeros(3, 7, dtype=torch.long)], 1)
    with torch.no_grad():
        assert torch.allclose(clf(x), clf(padded), atol=1e-5)


def test_unknown_names_raise():
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("self_pretraining"), "smoke", ["variant=nope"])
    with pytest.raises(UnknownNameError):
        EncoderConfig(arch="lstm")


# --------------------------------------------------------------------------- method

def _tiny_task() -> TaskData:
    return listops_mini(64, 32, 0, min_length=8, max_length=24, max_depth=3)


def test_reinit_encoder_makes_spt_equal_scratch(tmp_path):
    """The wrong wiring 'classifier re-initialises the encoder' makes the SPT gain vanish exactly."""
    ctx = for_tests("smoke", 0, tmp=tmp_path)
    task, ec = _tiny_task(), _cfg("transformer")
    enc, st = pretrain(task, ec, PhaseConfig(steps=5, batch_size=16), 0.5, ctx, "pt", seed=1)
    accs = {}
    for mode, variant in (("scratch", "paper"), ("spt", "reinit_encoder"), ("spt_ok", "paper")):
        clf, info = make_classifier(task, ec, 7, None if mode == "scratch" else enc, variant)
        accs[mode] = finetune(clf, task, PhaseConfig(steps=3, batch_size=16), ctx, mode)
        if mode == "spt":
            assert info["transfer_max_abs_diff"] > 0
    assert accs["spt"] == accs["scratch"]
    assert accs["spt_ok"]["train_loss"] != accs["scratch"]["train_loss"]


def test_pretraining_uses_train_inputs_only(tmp_path, monkeypatch):
    """Pretraining sees x_train only: poisoning x_test/y_test does not change it."""
    ctx = for_tests("smoke", 0, tmp=tmp_path)
    task, ec = _tiny_task(), _cfg("s4d")
    torch.manual_seed(0)
    a, _ = pretrain(task, ec, PhaseConfig(steps=3, batch_size=16), 0.5, ctx, "a", seed=1)
    bad = replace(task, x_test=torch.zeros_like(task.x_test), y_test=torch.zeros_like(task.y_test),
                  y_train=torch.zeros_like(task.y_train))
    torch.manual_seed(0)
    b, _ = pretrain(bad, ec, PhaseConfig(steps=3, batch_size=16), 0.5, ctx, "b", seed=1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_encoder_config_pixels_have_indicator_channel():
    t = TaskData("p", torch.rand(4, 10), torch.zeros(4), torch.rand(4, 10), torch.zeros(4), 2, "pixels", 0, None,
                 False, DatasetRef("p", "stand-in"))
    assert encoder_config(t, EncoderConfig(), True).d_input == 2
    assert encoder_config(t, EncoderConfig(), False).d_input == 1
    model = PretrainModel(build_encoder(encoder_config(t, EncoderConfig(d_model=8, heads=2), True), 0), 1)
    inp, _, _ = mask_pixels(t.x_train, 0.5)
    assert model(inp).shape == (4, 10, 1)


# --------------------------------------------------------------------------- run() at smoke + teeth

def _run(tmp_path, **kw):
    ctx = for_tests("smoke", 0, tmp=tmp_path)
    torch.manual_seed(0)
    return run(Config(**{**SMOKE, **kw}), ctx).metrics


def test_smoke_run_mechanics_claims_hold(tmp_path):
    m = _run(tmp_path)
    for cid in ("mask-rate", "targets-only-masked", "masked-inputs-are-mask-id", "pixel-indicator-channel",
                "encoder-transferred", "mlm-lowers-loss-transformer", "mlm-lowers-loss-s4d"):
        assert _claim(cid).check(m, "smoke")["verdict"] == "holds", (cid, m)


def test_teeth_reinit_encoder_breaks_transfer_claim(tmp_path):
    m = _run(tmp_path, variant="reinit_encoder", archs=("transformer",))
    assert _claim("encoder-transferred").check(m, "smoke")["verdict"] == "fails"


def test_teeth_loss_on_all_positions_breaks_target_claim(tmp_path):
    m = _run(tmp_path, variant="loss_all_positions", archs=("s4d",))
    assert _claim("targets-only-masked").check(m, "smoke")["verdict"] == "fails"


def test_full_pipeline_trains_on_release_format_fixtures(tmp_path, monkeypatch):
    """run_lra without dry run on tiny files in the LRA release layouts (tokens, dual, pixels)."""
    from reproductions.self_pretraining import experiment
    from suite.data import lra as lra_data

    root = tmp_path / "data"
    lra_data.write_fixture_listops(root / lra_data.LISTOPS_DIR)
    lra_data.write_fixture_retrieval(root / lra_data.RETRIEVAL_DIR)
    lra_data.write_fixture_text(root / lra_data.IMDB_DIR)
    lra_data.write_fixture_pathfinder(root / lra_data.PATHFINDER_DIR, per_file=6)
    tiny = experiment.LRAHP(8, 1, 2, 8, 1e-3, 1, 1, d_state=4, warmup_steps=0)
    monkeypatch.setattr(experiment, "LRA_HP", {k: tiny for k in experiment.LRA_HP})
    ctx = for_tests("full", 0, tmp=tmp_path / "run", data_root=root)
    cfg = Config(task="lra", lra_tasks=("listops", "retrieval", "text", "pathfinder"))
    torch.manual_seed(0)
    m, ref = experiment.run_lra(cfg, ctx)
    from suite.data.stream import DiskSplit
    from reproductions.self_pretraining.tasks import load_lra

    assert isinstance(load_lra("text", ctx).x_train, DiskSplit)  # streamed from disk, read per batch
    assert ref.provenance == "paper"  # read from the release formats, not a fixture fallback
    for t in cfg.lra_tasks:
        for arch in ("transformer", "s4d"):
            for mode in ("scratch", "spt"):
                assert 0.0 <= m[f"lra_{t}_{arch}_{mode}_acc_pct"] <= 100.0


def test_lra_hyperparameters_pinned_to_the_readme_table():
    """The README's table of the official LRA configs and experiment.LRA_HP agree value for value."""
    from pathlib import Path

    from reproductions.self_pretraining.experiment import LRA_HP

    text = (Path(__file__).parent / "README.md").read_text()
    body = text.split("<!-- spt-config-table -->")[1].split("<!-- /spt-config-table -->")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.strip().splitlines()[2:]]
    assert sorted((r[0], r[1]) for r in rows) == sorted(LRA_HP)
    sched = {"const": "constant", "cos": "cosine"}
    for r in rows:
        hp = LRA_HP[(r[0], r[1])]
        same = lambda v, ft: ft if v == "=" else v  # noqa: E731
        table = dict(d_model=int(r[2]), n_layers=int(r[3]), batch_size=int(r[6]), lr=float(r[7]),
                     weight_decay=float(r[8]), ft_epochs=int(r[9]), warmup_steps=int(r[10]), schedule=sched[r[11]],
                     pre_epochs=int(r[12]), pre_batch=int(same(r[13], r[6])), pre_warmup=int(same(r[14], r[10])),
                     pre_schedule=sched[same(r[15], r[11])])
        ours = dict(d_model=hp.d_model, n_layers=hp.n_layers, batch_size=hp.batch_size, lr=hp.lr,
                    weight_decay=hp.weight_decay, ft_epochs=hp.ft_epochs, warmup_steps=hp.warmup_steps,
                    schedule=hp.schedule, pre_epochs=hp.pre_epochs, pre_batch=hp.pre_batch_size or hp.batch_size,
                    pre_warmup=hp.warmup_steps if hp.pre_warmup_steps is None else hp.pre_warmup_steps,
                    pre_schedule=hp.pre_schedule or hp.schedule)
        table.update(pool=r[21], head={"nli": "linear"}.get(r[22], r[22]), dropout=float(r[23]),
                     tie_dropout={"true": True, "false": False}[r[24]])
        ours.update(pool=hp.pool, head=hp.head, dropout=hp.dropout, tie_dropout=hp.tie_dropout)
        assert (r[22] == "nli") == (r[1] == "retrieval")  # the dual model's NLI head (aan pipeline), no LRAHP.head
        if r[0] == "transformer":
            table.update(heads=int(r[4]), ff=float(r[5]), positions="sinusoidal")
            ours.update(heads=hp.heads, ff=float(hp.mlp_ratio), positions=hp.positions)
        else:
            table.update(ssm_lr=float(r[16]), lr_dt=None if r[17] == "-" else float(r[17]), norm=r[18],
                         prenorm={"true": True, "false": False}[r[19]], n_ssm=None if r[20] == "H" else int(r[20]))
            ours.update(ssm_lr=hp.ssm_lr, lr_dt=hp.lr_dt, norm=hp.norm, prenorm=hp.prenorm, n_ssm=hp.n_ssm)
        assert ours == table, f"{r[0]} {r[1]}: code {ours} != README {table}"


def test_sinusoidal_positions_are_fixed():
    from reproductions.self_pretraining.encoders import EncoderConfig, TransformerEncoder, sinusoids

    enc = TransformerEncoder(EncoderConfig(vocab=10, max_len=16, d_model=8, n_layers=1, heads=2, positions="sinusoidal"))
    assert torch.equal(enc.lm.pos_emb.weight, sinusoids(16, 8)) and not enc.lm.pos_emb.weight.requires_grad
    assert sinusoids(4, 6)[1, 0] == pytest.approx(math.sin(1.0)) and sinusoids(4, 6)[1, 1] == pytest.approx(math.cos(1.0))


# --------------------------------------------------------------------------- issue 17: the official pretraining
# loss per task and no gradient clipping (IdoAmos/not-from-scratch @f919137)

def test_pixel_classes_are_the_8bit_values():
    from reproductions.self_pretraining.masking import pixel_classes

    k = torch.arange(256)
    assert torch.equal(pixel_classes(k.float() / 255.0), k)  # the 8-bit value k of a pixel read as k/255
    assert torch.equal(pixel_classes(k.to(torch.uint8).float() / 255.0), k)


def test_lra_pretraining_loss_per_task_is_the_official_one(tmp_path):
    """Official ``*-lra-<task>-mlm.yaml``: ``lm_loss: ce`` for ListOps, Text, Retrieval, Pathfinder, Path-X;
    ``lm_loss: l1`` (``masked_mae``) for Image only. Read through the loaders (fixtures written by a dry run)."""
    from reproductions.self_pretraining.method import decoder_outputs
    from reproductions.self_pretraining.tasks import LRA_TASKS, load_lra

    assert {t: s.lm_loss for t, s in LRA_TASKS.items()} == {
        "listops": "ce", "text": "ce", "retrieval": "ce", "image": "l1", "pathfinder": "ce", "pathx": "ce"}
    ctx = for_tests("full", 0, tmp=tmp_path / "run", data_root=tmp_path / "data", dry_run=True)
    for name, loss, outs in (("pathfinder", "ce", 256), ("pathx", "ce", 256), ("image", "l1", 1)):
        task = load_lra(name, ctx)
        assert (task.kind, task.lm_loss, decoder_outputs(task)) == ("pixels", loss, outs), name


def _pixel_task(lm_loss: str) -> TaskData:
    x = torch.randint(0, 256, (6, 20), generator=torch.Generator().manual_seed(0)).float() / 255.0
    return TaskData("px", x, torch.zeros(6).long(), x, torch.zeros(6).long(), 2, "pixels", 0, None, False,
                    DatasetRef("px", "stand-in"), lm_loss)


@pytest.mark.parametrize("variant", ["paper", "loss_all_positions"])
def test_pixel_ce_pretraining_is_masked_intensity_cross_entropy(variant):
    """Pathfinder / Path-X (``lm_loss='ce'``): input [x(1-m), m], 256-way CE on the intensity class
    ``round(255 x)`` at masked pixels only (official ``PathFinderLMDataset``); the L1 of the old code differs."""
    import torch.nn.functional as F

    from reproductions.self_pretraining.method import decoder_outputs, denoising_loss

    task = _pixel_task("ce")
    model = PretrainModel(build_encoder(encoder_config(task, EncoderConfig(d_model=8, heads=2), True), 0),
                          decoder_outputs(task))
    assert model.decoder.out_features == 256
    with torch.no_grad():
        loss = denoising_loss(model, task.x_train, task, 0.5, variant, torch.Generator().manual_seed(3))
        inp, _, m = mask_pixels(task.x_train, 0.5, torch.Generator().manual_seed(3))  # the same mask
        logits = model(inp)
    cls = (task.x_train * 255).round().long()
    keep = torch.ones_like(m) if variant == "loss_all_positions" else m
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits[keep], cls[keep])), rel=1e-5)
    assert float(loss) > 3.0  # ~ln 256 at init; an L1 on values in [0, 1] is far smaller


def test_image_pretraining_keeps_the_masked_l1():
    from reproductions.self_pretraining.method import decoder_outputs, denoising_loss

    task = _pixel_task("l1")
    model = PretrainModel(build_encoder(encoder_config(task, EncoderConfig(d_model=8, heads=2), True), 0),
                          decoder_outputs(task))
    with torch.no_grad():
        loss = denoising_loss(model, task.x_train, task, 0.5, "paper", torch.Generator().manual_seed(3))
        inp, tgt, m = mask_pixels(task.x_train, 0.5, torch.Generator().manual_seed(3))
        assert float(loss) == pytest.approx(float(masked_l1(model(inp).squeeze(-1), tgt, m)), rel=1e-6)
    with pytest.raises(ConfigError):  # tokens are always CE
        replace(_tiny_task(), lm_loss="l1")


def test_no_gradient_clipping_in_any_phase(tmp_path, monkeypatch):
    """Official ``configs/trainer/default.yaml``: ``gradient_clip_val: 0.0``, set by no LRA experiment file. Every
    fit of a run (pretraining and fine-tuning; the smoke/small path and the LRA path on a Pathfinder fixture, which
    also pretrains with the pixel CE end to end) runs without clipping, and every preset resolves to 0.0."""
    from reproductions.self_pretraining import experiment, method
    from suite.data import lra as lra_data

    for scale in ("smoke", "small", "full"):
        assert config.resolve(registry.get("self_pretraining"), scale).grad_clip == 0.0, scale
    seen = []
    real_fit = method.fit

    def spy(model, loss_fn, data, cfg, **kw):
        seen.append(cfg.grad_clip)
        return real_fit(model, loss_fn, data, cfg, **kw)

    monkeypatch.setattr(method, "fit", spy)
    _run(tmp_path / "smoke", archs=("transformer",))
    assert len(seen) == 5, seen  # 1 pretraining + 4 fine-tunings
    root = tmp_path / "data"
    lra_data.write_fixture_pathfinder(root / lra_data.PATHFINDER_DIR, per_file=6)
    tiny = experiment.LRAHP(8, 1, 2, 8, 1e-3, 1, 1, d_state=4, warmup_steps=0)
    monkeypatch.setattr(experiment, "LRA_HP", {k: tiny for k in experiment.LRA_HP})
    ctx = for_tests("full", 0, tmp=tmp_path / "run", data_root=root)
    m, _ = experiment.run_lra(Config(task="lra", lra_tasks=("pathfinder",), archs=("s4d",)), ctx)
    assert len(seen) == 8, seen  # + 1 pretraining + 2 fine-tunings
    assert all(not c for c in seen), seen
    assert m["lra_pathfinder_s4d_mlm_loss_after"] > 1.0  # a 256-way CE; the old masked L1 was below 1 here


# --------------------------------------------------------------------------- issue 17 (second pass): the S4 files'
# block and decoder per task, the Transformer's Path-X max pooling, Pathfinder / Path-X pixels in [-1, 1]

# read from IdoAmos/not-from-scratch @f919137, configs/experiment/lra/s4-lra-<task>.yaml (model.norm, model.prenorm,
# model.layer.n_ssm: ${..d_model}, 256 = d_model and null all mean one (A, B) per channel) and decoder.mode
OFFICIAL_S4_BLOCK = {  # task: (norm, prenorm, n_ssm (None = H), decoder mode)
    "listops": ("batch", False, None, "mean"), "text": ("batch", True, None, "mean"),
    "retrieval": ("batch", True, None, "mean"), "image": ("layer", False, 2, "mean"),
    "pathfinder": ("batch", True, None, "last"), "pathx": ("batch", True, None, "mean")}


@pytest.mark.parametrize("task", sorted(OFFICIAL_S4_BLOCK))
def test_lra_s4d_block_per_task_is_the_official_one(task):
    """The full S4D encoder is built with the official file's norm kind, pre/post-norm, n_ssm, a final norm after
    pre-norm stacks only (official SequenceModel) and the file's decoder mode (old code: pre-LN LayerNorm and mean
    pooling on every task)."""
    from torch import nn

    from reproductions.self_pretraining.experiment import LRA_HP, _lra_encoder_cfg
    from suite.models.ssm import S4DBlock

    norm, prenorm, n_ssm, pool = OFFICIAL_S4_BLOCK[task]
    hp = replace(LRA_HP[("s4d", task)], d_model=8, n_layers=2, d_state=4)
    ec = replace(_lra_encoder_cfg("s4d", hp, task), vocab=0, d_input=1)
    enc = build_encoder(ec, 0)
    assert all(isinstance(b, S4DBlock) for b in enc.blocks) and len(enc.blocks) == 2
    for b in enc.blocks:
        assert (b.norm.kind, b.prenorm, b.layer.kernel.n_ssm) == (norm, prenorm, 8 if n_ssm is None else n_ssm)
        assert isinstance(b.norm.norm, nn.BatchNorm1d if norm == "batch" else nn.LayerNorm)
    assert isinstance(enc.norm, nn.Identity) != prenorm  # final norm only after pre-norm blocks
    assert ec.pool == pool


def test_lra_transformer_pools_like_the_official_files():
    """transformer-lra-pathx-small.yaml: ``decoder.mode: max``; every other transformer-lra file pools the mean."""
    from reproductions.self_pretraining.experiment import LRA_HP, _lra_encoder_cfg

    got = {t: _lra_encoder_cfg("transformer", LRA_HP[("transformer", t)], t).pool for t in OFFICIAL_S4_BLOCK}
    assert got == {t: ("max" if t == "pathx" else "mean") for t in OFFICIAL_S4_BLOCK}


@pytest.mark.parametrize("prenorm,norm", [(True, "batch"), (False, "batch"), (False, "layer")])
def test_s4d_encoder_block_computes_pre_or_post_norm(prenorm, norm):
    """Post-norm: h = norm(h + S4D(h)) and no final norm; pre-norm: h = h + S4D(norm(h)), then a final norm."""
    enc = build_encoder(replace(_cfg("s4d", d_input=1), norm=norm, prenorm=prenorm), 0).eval()
    x = torch.randn(3, 10, 1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = enc.embed(x)
        for b in enc.blocks:
            h = h + b.layer(b.norm(h)) if prenorm else b.norm(h + b.layer(h))
        want = enc.norm(h) if prenorm else h
        assert torch.allclose(enc(x), want, atol=1e-6)


@pytest.mark.parametrize("prenorm,norm", [(True, "batch"), (False, "batch"), (False, "layer")])
def test_classifier_ignores_padding_with_every_official_block(prenorm, norm):
    torch.manual_seed(0)
    enc = build_encoder(replace(_cfg("s4d", vocab=18), norm=norm, prenorm=prenorm), seed=3)
    clf = Classifier(enc, n_classes=4).eval()  # eval: BatchNorm uses its running statistics
    x = torch.randint(1, 17, (3, 12), generator=torch.Generator().manual_seed(4))
    x[0, 8:] = 0
    padded = torch.cat([x, torch.zeros(3, 7, dtype=torch.long)], 1)
    with torch.no_grad():
        assert torch.allclose(clf(x), clf(padded), atol=1e-5)


@pytest.mark.parametrize("pool", ["last", "max"])
def test_classifier_pooling_modes(pool):
    """Official SequenceDecoder: ``last`` = the last (real) position, ``max`` = max over positions, then the head."""
    enc = build_encoder(replace(_cfg("s4d", d_input=1), pool=pool), 0)
    clf = Classifier(enc, n_classes=3).eval()
    x = torch.randn(2, 9, 1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = enc(x)
        want = clf.head(h[:, -1] if pool == "last" else h.max(1).values)
        assert torch.allclose(clf(x), want, atol=1e-6)
    tok = Classifier(build_encoder(replace(_cfg("s4d", vocab=18), pool=pool), 0), n_classes=3).eval()
    t = torch.randint(1, 17, (2, 6), generator=torch.Generator().manual_seed(5))
    t[1, 4:] = 0
    with torch.no_grad():
        h = tok.encoder(t, t != 0)
        want = torch.stack([h[0, -1], h[1, 3]]) if pool == "last" else torch.stack([h[0].max(0).values,
                                                                                     h[1, :4].max(0).values])
        assert torch.allclose(tok.features(t), want, atol=1e-6)  # real tokens only


def test_pathfinder_and_pathx_pixels_are_read_in_minus_one_one(tmp_path, monkeypatch):
    """Official PathFinder / PathFinderLMDataset (src/dataloaders/lra.py): Normalize(mean=0.5, std=0.5) before
    masking; masked pixels read 0, the CE targets are the classes of the raw pixels; Image is not normalised.
    The old code fed [0, 1] (no negative input value)."""
    from reproductions.self_pretraining import method
    from reproductions.self_pretraining.tasks import LRA_TASKS, load_lra

    assert {t: s.normalize for t, s in LRA_TASKS.items()} == {
        "listops": False, "text": False, "retrieval": False, "image": False, "pathfinder": True, "pathx": True}
    ctx = for_tests("full", 0, tmp=tmp_path / "run", data_root=tmp_path / "data", dry_run=True)
    assert load_lra("pathfinder", ctx).normalize and load_lra("pathx", ctx).normalize
    assert not load_lra("image", ctx).normalize
    task = replace(_pixel_task("ce"), normalize=True)
    x = task.x_train
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, inp, key_mask=None):
            seen["inp"] = inp
            return torch.zeros(*inp.shape[:-1], 256)

    real_ce = method.masked_ce
    monkeypatch.setattr(method, "masked_ce", lambda logits, tgt: (seen.__setitem__("tgt", tgt), real_ce(logits, tgt))[1])
    method.denoising_loss(Spy(), x, task, 0.5, "paper", torch.Generator().manual_seed(3))
    inp, tgt = seen["inp"], seen["tgt"]
    m = inp[..., 1].bool()
    assert torch.equal(inp[..., 0][m], torch.zeros(int(m.sum())))  # masked pixels read 0
    assert torch.allclose(inp[..., 0][~m], (x[~m] - 0.5) / 0.5)  # the others in [-1, 1]
    assert float(inp[..., 0].min()) < 0
    assert torch.equal(tgt[m], (x[m] * 255).round().long())  # targets: the raw 8-bit classes
    assert torch.equal(tgt[~m], torch.full_like(tgt[~m], IGNORE))
    enc_cfg = EncoderConfig(d_model=8, heads=2)
    clf, _ = make_classifier(task, enc_cfg, 0, None)
    assert clf.normalize and torch.allclose(method._prep(x, clf), (2 * x - 1).unsqueeze(-1))
    plain, _ = make_classifier(_pixel_task("ce"), enc_cfg, 0, None)
    assert not plain.normalize and torch.equal(method._prep(x, plain), x.unsqueeze(-1))


# --------------------------------------------------------------------------- the official classifier head
# (``decoder._name_``) and the S4 files' tied dropout (``tie_dropout: true``), IdoAmos/not-from-scratch @f919137

# transformer-lra-{cifar,imdb}.yaml set ``decoder._name_: sequence_nonelinear``; listops sets ``sequence``,
# pathfinder / pathx-small comment it out (the cifar pipeline's ``sequence``); aan uses the ``retrieval`` NLI head;
# no s4-lra file names a decoder (the pipelines' ``sequence``)
OFFICIAL_MLP_HEAD = {("transformer", "image"), ("transformer", "text")}


@pytest.mark.parametrize("arch", ["transformer", "s4d"])
def test_lra_classifier_head_per_task_is_the_official_decoder(arch):
    """``sequence_nonelinear`` (NoneLinearSequenceDecoder, type mlp, src/tasks/decoders.py): Linear(d, d) -> ReLU
    -> Linear(d, classes) on the pooled vector, for the Transformer's Image and Text only; one Linear elsewhere;
    Retrieval's dual NLI head untouched. Old code: one Linear on every task."""
    from torch import nn

    from reproductions.self_pretraining.experiment import LRA_HP, _lra_encoder_cfg
    from reproductions.self_pretraining.tasks import LRA_TASKS

    for task, spec in LRA_TASKS.items():
        hp = replace(LRA_HP[(arch, task)], d_model=8, n_layers=1, heads=2, d_state=4)
        ec = replace(_lra_encoder_cfg(arch, hp, task), vocab=0, d_input=1, max_len=16)
        assert ec.head == ("mlp" if (arch, task) in OFFICIAL_MLP_HEAD else "linear"), (arch, task)
        head = Classifier(build_encoder(ec, 0), spec.n_classes, None, spec.dual).head
        layout = [(type(m).__name__, getattr(m, "in_features", None), getattr(m, "out_features", None))
                  for m in (head if isinstance(head, nn.Sequential) else [head])]
        if spec.dual:
            want = [("Linear", 32, 8), ("GELU", None, None), ("Linear", 8, spec.n_classes)]
        elif (arch, task) in OFFICIAL_MLP_HEAD:
            want = [("Linear", 8, 8), ("ReLU", None, None), ("Linear", 8, spec.n_classes)]
        else:
            want = [("Linear", 8, spec.n_classes)]
        assert layout == want, (arch, task, layout)


def test_mlp_head_is_applied_after_the_pooling():
    """Official restrict (pool over the real positions) then output_transform: head(mean(h)), not mean(head(h))."""
    enc = build_encoder(_cfg("transformer", vocab=18, head="mlp"), 0)
    clf = Classifier(enc, n_classes=3).eval()
    x = torch.randint(1, 17, (3, 10), generator=torch.Generator().manual_seed(6))
    x[1, 6:] = 0
    with torch.no_grad():
        h = enc(x, x != 0)
        m = (x != 0).unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1)
        lin1, act, lin2 = clf.head
        assert isinstance(act, torch.nn.ReLU)
        want = lin2(torch.relu(lin1(pooled)))
        before = (clf.head(h) * m).sum(1) / m.sum(1)  # the head applied per position, then pooled
        assert torch.allclose(clf(x), want, atol=1e-6)
        assert not torch.allclose(want, before, atol=1e-4)  # the two orders differ (ReLU), so the test can tell


def test_head_and_tied_dropout_defaults_leave_smoke_and_small_unchanged():
    """Smoke / small build their encoders with the defaults: one Linear head, element-wise (here: no) dropout."""
    from reproductions.self_pretraining.experiment import _encoder_cfg

    cfg = config.resolve(registry.get("self_pretraining"), "small")
    for arch in ("transformer", "s4d"):
        ec = _encoder_cfg(cfg, arch)
        assert (ec.head, ec.tie_dropout, ec.dropout, ec.ssm.dropout, ec.ssm.tie_dropout) == ("linear", False, 0.0,
                                                                                           0.0, False)
    with pytest.raises(UnknownNameError):
        _cfg("transformer", head="mlp2")
    with pytest.raises(ConfigError):
        _cfg("transformer", tie_dropout=True)  # the Transformer trunk has no tied dropout
    with pytest.raises(ConfigError):
        Classifier(build_encoder(_cfg("s4d", vocab=18, head="mlp"), 0), 2, dual=True)


@pytest.mark.parametrize("task", sorted(OFFICIAL_S4_BLOCK))
def test_lra_s4d_dropout_is_tied_as_the_official_files(task):
    """configs/model/s4.yaml ``tie_dropout: true`` (every s4-lra file; dropout 0.1 on Image only): the residual
    dropout (SequenceResidualBlock) and the S4 layer's own dropout after its GELU (the layer's unset ``dropout`` is
    the model's) draw one mask per example and channel. Old code: element-wise residual dropout, none in the layer."""
    from torch import nn

    from reproductions.self_pretraining.experiment import LRA_HP, _lra_encoder_cfg
    from suite.models.ssm import TiedDropout

    p = 0.1 if task == "image" else 0.0
    hp = replace(LRA_HP[("s4d", task)], d_model=8, n_layers=2, d_state=4)
    ec = replace(_lra_encoder_cfg("s4d", hp, task), vocab=0, d_input=1)
    assert (hp.dropout, hp.tie_dropout, ec.tie_dropout) == (p, True, True)
    enc = build_encoder(ec, 0)
    for b in enc.blocks:
        assert isinstance(b.drop, TiedDropout) and b.drop.p == p
        assert (b.layer.cfg.dropout, b.layer.cfg.tie_dropout) == (p, True)
    assert not _lra_encoder_cfg("transformer", LRA_HP[("transformer", task)], task).tie_dropout
    if task == "image":  # in training, the residual branch's mask is the same at every position
        blk = enc.blocks[0].train()
        assert isinstance(blk.norm.norm, nn.LayerNorm) and not blk.prenorm
        x = torch.randn(4, 12, 8, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(1)
        with torch.no_grad():
            z = blk.layer.eval()(x)  # the layer's own dropout off: isolate the residual one
            d = blk.drop(z)
        keep = (d != 0).float()
        assert 0 < keep.mean() < 1 and torch.equal(keep, keep[:, :1].expand_as(keep))  # one mask per (example, channel)
        assert torch.allclose(d, z * keep / 0.9)

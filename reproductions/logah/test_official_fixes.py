"""The full path follows the official LoGAH code (Blackzxy/LoGAH @68c5a83) where it used to deviate by accident
(issue 17): GHN cosine-warmup schedule, LayerNorm on node embeddings, GHN-3's predicted-parameter normalisation,
fine-tune cosine schedule and gradient clipping. Each test fails on the old behaviour."""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from reproductions.logah import SCALES, Config
from reproductions.logah import experiment
from reproductions.logah.experiment import CosineWarmup, train_ghn
from reproductions.logah.method import GHN, MLP, make_arch


def test_full_ghn_schedule_is_the_official_cosine_warmup():
    """ghn3/trainer.py lr_lambda with 5 warm-up epochs from 1e-5, per epoch (782 steps), 300.5 epochs."""
    cfg = Config(**SCALES["full"])
    f = CosineWarmup(cfg.ghn_lr, cfg.ghn_warmup_lr, cfg.ghn_warmup_steps, cfg.ghn_epoch_steps, cfg.ghn_steps)
    assert (f.W, f.E) == (5, 301)
    ramp = [1e-5 / 3e-4 + k * (1 - 1e-5 / 3e-4) / 4 for k in range(4)]        # np.linspace(1e-5/lr, 1, 5)[:4]
    for e in range(4):
        assert math.isclose(f(e * 782), ramp[e]) and math.isclose(f(e * 782 + 781), ramp[e])  # constant per epoch
    assert math.isclose(f(4 * 782), 0.5 * (1 + math.cos(math.pi * -1 / 296)))  # e = W-1: progress -1/(E-W)
    assert f(5 * 782) == 1.0
    assert math.isclose(f(150 * 782), 0.5 * (1 + math.cos(math.pi * 145 / 296)))
    assert f(cfg.ghn_steps - 1) < 1e-3


def test_train_ghn_warms_up_from_1e5_then_decays():
    """train_ghn's actual lrs: the first step runs at the official init_lr 1e-5 (old CosineAnnealingLR: at ghn_lr)."""
    torch.manual_seed(0)
    from suite.context import for_tests
    cfg = Config(n_archs=4, ghn_steps=12, ghn_warmup_steps=4, meta_batch=1, batch_size=8)
    archs = [make_arch([16]), make_arch([16, 24])]
    lrs: list[float] = []
    train_ghn(GHN(8, 1, 2, 4, 64), archs, torch.randn(32, 64), torch.randint(10, (32,)), cfg, for_tests(), lrs)
    assert len(lrs) == 12 and math.isclose(lrs[0], 1e-5)
    assert lrs[0] < lrs[1] < lrs[2] < lrs[3] and math.isclose(lrs[4], 1e-3)     # ramp, then the peak lr
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))                        # cosine decay


def test_node_embeddings_are_layer_normed():
    """official --ln: LayerNorm(d) on the Graphormer's output node embeddings (old: none, pre-norm layers only)."""
    torch.manual_seed(0)
    ghn = GHN(16, 2, 2, 4, 300, "lowrank")
    assert isinstance(ghn.ln, torch.nn.LayerNorm) and ghn.ln.normalized_shape == (16,)
    h = ghn.ln(ghn.enc(make_arch([32, 48])))
    assert torch.allclose(h.mean(1), torch.zeros(len(h)), atol=1e-5)
    assert torch.allclose(h.var(1, unbiased=False), torch.ones(len(h)), atol=1e-3)
    ghn.ln = torch.nn.Identity()                  # the old encoder output is not normalised
    h0 = ghn.enc(make_arch([32, 48]))
    assert not torch.allclose(h0.var(1, unbiased=False), torch.ones(len(h0)), atol=1e-3)


def test_predicted_params_use_ghn3_normalisation():
    """official `_normalize` (-n): w * sqrt(2 / fan_in) for every 2-D weight (classifier too), bias tanh(0.2 b)
    (old: w / rms(w) * sqrt(2 or 1 / fan_in), raw bias)."""
    torch.manual_seed(0)
    for dec in ("lowrank", "tiled"):
        ghn = GHN(16, 1, 2, 4, 300, dec)
        shapes = make_arch([40, 24])
        with torch.no_grad():
            p = ghn(shapes)
            h = ghn.ln(ghn.enc(shapes))
            for i, ((o, n_in), (w, b)) in enumerate(zip(shapes, p)):
                raw_w, raw_b = ghn.dec(h[i + 1], o, n_in), ghn.bias(h[i + 1])[:o]
                assert torch.allclose(w, raw_w * (2.0 / n_in) ** 0.5, rtol=1e-5, atol=1e-7)
                assert torch.allclose(b, torch.tanh(0.2 * raw_b), rtol=1e-5, atol=1e-7)


def test_finetune_uses_cosine_and_clip_5(monkeypatch):
    """official train_vit.py: CosineAnnealingLR over the fine-tune and --grad_clip 5 (old: constant lr, no clip)."""
    seen = {}

    def fake_fit(model, loss, data, tc, **kw):
        seen["tc"] = tc

    monkeypatch.setattr(experiment, "fit", fake_fit)
    from suite.context import for_tests
    x, y = torch.randn(16, 64), torch.randint(10, (16,))
    for scale in ("smoke", "small", "full"):
        cfg = Config(**SCALES[scale])
        experiment.finetune(MLP(make_arch([8])), x, y, x, y, replace(cfg, ft_steps=1), for_tests(), "t")
        assert seen["tc"].schedule == "cosine" and seen["tc"].grad_clip == 5.0 and seen["tc"].warmup_steps == 0


def test_warmup_shrinks_with_the_budget():
    """The warm-up is the same share of the GHN budget at every scale (full: 5 of 300.5 epochs)."""
    share = {s: Config(**SCALES[s]).ghn_warmup_steps / Config(**SCALES[s]).ghn_steps for s in SCALES}
    assert abs(share["small"] - share["full"]) < 1e-3
    assert Config(**SCALES["smoke"]).ghn_warmup_steps == 1     # 0.5 step rounds up to the minimum

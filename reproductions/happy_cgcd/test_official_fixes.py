"""happy_cgcd follows the official code (mashijie1028/Happy-CGCD @ 55fc93f) where it had deviated by accident
(issue 17): projector depth and input, frozen final norm, weight-decay groups, HAP pseudo-feature count, the `imagenet`
transform. Each test fails on the old behaviour (checked by reverting the change)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import reproductions.happy_cgcd as H
from reproductions.happy_cgcd.method import CGCDNet
from reproductions.happy_cgcd.stages import IMAGENET_MEAN, IMAGENET_STD, image_preprocess, image_view
from suite import config as suite_config, registry
from suite.context import for_tests


def test_projector_has_three_linear_layers_at_every_scale():
    """Official `args.num_mlp_layers = 3` (train_happy.py) → DINOHead.mlp: Linear, GELU, Linear, GELU, Linear."""
    r = registry.get("happy_cgcd")
    for scale in ("smoke", "small", "full"):
        assert suite_config.resolve(r, scale).proj_layers == 3
    net = CGCDNet(nn.Identity(), 8, 3, proj_dim=4, proj_hidden=16)
    lin = [m for m in net.proj if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(8, 16), (16, 16), (16, 4)]
    assert sum(isinstance(m, nn.GELU) for m in net.proj) == 2


def test_projector_reads_the_backbone_output_before_normalisation():
    """Official `DINOHead.forward`: `x_proj = self.mlp(x)` on the backbone output, then `x = normalize(x)` for
    the cosine layer only. Scaling the backbone output changes the projection, not the feature or the logits."""
    torch.manual_seed(0)
    net = CGCDNet(nn.Identity(), 8, 3, proj_dim=4, proj_hidden=16)
    x = torch.randn(5, 8)
    (f1, z1, c1), (f2, z2, c2) = net(x), net(5 * x)
    assert torch.allclose(z1, torch.nn.functional.normalize(net.proj(x), dim=1))
    assert not torch.allclose(z1, z2, atol=1e-3)
    assert torch.allclose(f1, f2, atol=1e-6) and torch.allclose(c1, c2, atol=1e-6)


def test_vit_trains_block_11_only_and_keeps_the_final_norm_frozen():
    """Official name filter: `'block' in name` and block index >= grad_from_block (11); `norm.*` has no "block"
    in its name, so it stays frozen (as do the patch embedding, CLS token and positional embedding)."""
    from reproductions.happy_cgcd.backbone import ViTFeatures

    m = ViTFeatures(32)
    trainable = {n for n, p in m.vit.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("blocks.11.") for n in trainable), sorted(trainable)[:5]
    assert {n for n, _ in m.vit.named_parameters() if n.startswith("blocks.11.")} == trainable
    assert not any(p.requires_grad for n, p in m.vit.named_parameters() if n.startswith("norm."))


def test_fits_get_decay_groups_and_hap_draws_n_views_x_batch(monkeypatch, tmp_path):
    """Every fit gets the official `get_params_groups` split (biases / 1-D parameters without weight decay), and
    the HAP loss draws n_views × batch_size pseudo-features per step (official `ProtoAugManager(feat_dim,
    args.n_views * args.batch_size, ...)`), on the smoke path (MLP backbone). `fit` is replaced by a recorder
    that evaluates the loss on a full and on a short batch."""
    calls, hap_n = [], []
    real_hap = H.hap_loss

    def hap_spy(head, protos, labels, radius, n, probs):
        hap_n.append(n)
        return real_hap(head, protos, labels, radius, n, probs)

    def fake_fit(model, loss_fn, data, tc, **kw):
        trainable = {id(p) for p in model.parameters() if p.requires_grad}  # now: the head grows later
        calls.append((trainable, kw.get("param_groups"), kw.get("name")))
        for rows in (tc.batch_size, 5):
            batch = tuple(t[:rows] for t in data) if isinstance(data, tuple) else data[:rows]
            loss_fn(model, batch)

    monkeypatch.setattr(H, "fit", fake_fit)
    monkeypatch.setattr(H, "hap_loss", hap_spy)
    cfg = suite_config.resolve(registry.get("happy_cgcd"), "smoke", {"weight_decay": 5e-5})
    torch.manual_seed(0)
    H.run(cfg, for_tests("smoke", 0, tmp=tmp_path))
    assert [c[2] for c in calls] == ["stage0", "happy-stage1", "happy-stage2"]
    for want, groups, name in calls:
        assert groups is not None, f"{name}: fit got no parameter groups"
        got = [id(p) for g in groups for p in g["params"]]
        assert sorted(got) == sorted(want), f"{name}: the groups are not the trainable parameters"
        for g in groups:
            wd = g.get("weight_decay", cfg.weight_decay)
            assert all((p.ndim > 1) == (wd == cfg.weight_decay) for p in g["params"]), name
            assert all(wd == 0.0 for p in g["params"] if p.ndim <= 1), f"{name}: a bias or 1-D weight is decayed"
    assert hap_n and set(hap_n) == {H.N_VIEWS * cfg.batch_size}, hap_n


def _pil_reference(x: torch.Tensor) -> torch.Tensor:
    """The official test transform on uint8 images: PIL bicubic Resize(256), CenterCrop(224), ToTensor, Normalize
    (what torchvision does with a PIL image, written out; torchvision is not installed here)."""
    from PIL import Image

    outs = []
    for im in x:
        p = Image.fromarray(im.permute(1, 2, 0).numpy()).resize((256, 256), Image.BICUBIC)
        outs.append(torch.tensor(np.array(p)).permute(2, 0, 1).float()[:, 16:240, 16:240] / 255)
    m, s = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (torch.stack(outs) - m) / s


def test_test_transform_is_resize_256_centre_crop_224():
    """White-noise 32-px images (the worst case for interpolation differences): mean |difference| to the PIL
    reference < 0.03 in [0, 1] pixel units (torch's bicubic kernel a = −0.75 vs PIL's −0.5). Resizing straight to
    224 (the old test transform) is 0.23 away."""
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    got = image_preprocess(224)(x)
    assert got.shape == (3, 3, 224, 224)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert float(((got - _pil_reference(x)) * s).abs().mean()) < 0.03


def test_train_view_is_a_random_224_crop_of_the_256_resize_with_flip():
    """Official train transform after the resize: RandomCrop(224) + RandomHorizontalFlip. Every view is an exact
    224 crop (or its mirror) of the 256-px input; offsets and flips vary across images."""
    torch.manual_seed(0)
    n = 64
    x = torch.arange(n * 3 * 256 * 256, dtype=torch.float32).view(n, 3, 256, 256)
    v = image_view(x, 224)
    assert v.shape == (n, 3, 224, 224)
    offsets, flips = set(), 0
    for i in range(n):
        flipped = v[i, 0, 0, 0] > v[i, 0, 0, -1]
        crop = v[i].flip(-1) if flipped else v[i]
        rel = int(crop[0, 0, 0] - x[i, 0, 0, 0])
        top, left = divmod(rel, 256)
        assert torch.equal(crop, x[i, :, top:top + 224, left:left + 224]), i
        offsets.add((top, left))
        flips += int(flipped)
    assert len(offsets) > n // 2 and 0 < flips < n


def test_full_views_wire_the_official_transforms(tmp_path, monkeypatch):
    """At full (CIFAR-100 fixture, dry run): the training input is the 256-px resize, the test input its centre
    224 crop, and the two training views are 224 crops of it."""
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    cfg = suite_config.resolve(registry.get("happy_cgcd"), "full")
    assert cfg.crop_pct == 0.875 and cfg.image_size == 224
    ctx = for_tests("full", 0, data_root=tmp_path / "empty", dry_run=True)
    proto, views, shape, _ = H.load_protocol(cfg, ctx)
    xb = proto.stages[0].x[:2]
    big, test = views.train_pre(xb), views.pre(xb)
    assert big.shape == (2, 3, 256, 256) and test.shape == (2, 3, 224, 224) and shape == (3, 224, 224)
    assert torch.allclose(test, big[..., 16:240, 16:240])
    assert views.aug(big).shape == (2, 3, 224, 224)


@pytest.mark.parametrize("scale", ["smoke", "full"])
def test_weight_decay_groups_split_biases(scale):
    """`suite.train.decay_groups` on our network = the official `get_params_groups` rule (name ends with `.bias`
    or 1-D → no decay), on the MLP and on the ViT-B/16 model."""
    from suite.train import decay_groups

    cfg = suite_config.resolve(registry.get("happy_cgcd"), scale)
    if scale == "full":
        from reproductions.happy_cgcd.backbone import ViTFeatures
        bb, dim = ViTFeatures(32), 768
    else:
        from suite.models import MLP
        bb, dim = MLP(64, list(cfg.hidden), cfg.feat_dim), cfg.feat_dim
    net = CGCDNet(bb, dim, 5, cfg.proj_dim, cfg.proj_hidden, cfg.proj_layers)
    off = {id(p) for n, p in net.named_parameters() if p.requires_grad and (n.endswith(".bias") or p.ndim == 1)}
    g = decay_groups(net, 5e-5)
    assert {id(p) for p in g[1]["params"]} == off and g[1]["weight_decay"] == 0.0
    assert off and not off & {id(p) for p in g[0]["params"]}


def test_projector_starts_as_dino_heads_init():
    """Official `DINOHead._init_weights`: trunc_normal_(std=0.02) weights and zero biases (PyTorch's default init
    would give uniform weights of std 1/sqrt(3 fan_in) = 0.072 here, and non-zero biases)."""
    torch.manual_seed(0)
    proj = H.method.projector(64, 256, 128, 3)
    lins = [m for m in proj if isinstance(m, nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in lins)
    w = torch.cat([m.weight.flatten() for m in lins])
    assert abs(float(w.std()) - 0.02) < 0.001 and float(w.abs().max()) < 0.2


def test_stage0_teacher_temperature_is_the_official_epoch_schedule():
    """Official `DistillLoss`: np.linspace(0.07, 0.04, 30) for the first 30 of 100 epochs, then 0.04, indexed by
    epoch (it moves once per epoch, not per step)."""
    cfg = suite_config.resolve(registry.get("happy_cgcd"), "full")
    want = np.concatenate((np.linspace(0.07, 0.04, 30), np.full(70, 0.04)))
    got = np.array([H.teacher_temperature(cfg, e) for e in range(cfg.stage0_epochs)])
    assert np.allclose(got, want, rtol=0, atol=1e-12)


def test_every_fit_steps_the_lr_per_epoch_and_drops_the_last_partial_batch(monkeypatch, tmp_path):
    """Official train_happy.py: CosineAnnealingLR stepped once per epoch, and training DataLoaders with
    drop_last=True (tensors: ``TrainConfig.drop_last``; an on-disk split: ``EpochLoader(drop_last=True)``)."""
    from suite.data import stream
    from suite.spec import DatasetRef
    from reproductions.happy_cgcd import streaming

    seen = []

    def fake_fit(model, loss_fn, data, tc, **kw):
        seen.append((kw.get("name"), tc.schedule_per_epoch, tc.drop_last))

    monkeypatch.setattr(H, "fit", fake_fit)
    cfg = suite_config.resolve(registry.get("happy_cgcd"), "smoke")
    H.run(cfg, for_tests("smoke", 0, tmp=tmp_path))
    assert seen and all(per_epoch and drop for _, per_epoch, drop in seen), seen
    split = stream.DiskSplit(np.zeros((10, 2), dtype=np.float32), torch.zeros(10, dtype=torch.long),
                             DatasetRef("toy", "stand-in"))
    loader = streaming.fit_data(split, None, 4, for_tests("smoke", 0, tmp=tmp_path))
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]

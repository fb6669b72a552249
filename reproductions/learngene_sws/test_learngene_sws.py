"""learngene_sws: mechanism tests (sharing, stage mapping, expansion, distillation) + one broken variant at smoke."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError

from . import SCALES, Config
from .checks import mechanism_metrics
from .distill import distill_loss
from .method import expand, learngene_layers, make_vit, n_params, share_stages, stage_mapping

SLUG = "learngene_sws"


def _vit(depth, dim=16):
    return make_vit(8, 2, 1, 10, dim, depth, 2, 2.0)


def test_mechanism_checks_are_exact():
    m = mechanism_metrics()
    assert m["share_err"] == 0 and m["expand_err"] == 0 and m["distill_err"] < 1e-10


def test_stage_sharing_one_tensor_per_stage_and_gradients_accumulate():
    torch.manual_seed(0)
    aux = share_stages(_vit(8), (3, 1, 4))
    assert aux.blocks[0] is aux.blocks[2] and aux.blocks[3] is not aux.blocks[2] and aux.blocks[4] is aux.blocks[7]
    assert n_params(aux) == 3 * n_params(_vit(1).blocks[0]) + n_params(_vit(0))
    assert aux.blocks[0].attn.qkv.weight.data_ptr() == aux.blocks[1].attn.qkv.weight.data_ptr()
    aux(torch.randn(4, 1, 8, 8)).sum().backward()
    assert aux.blocks[0].attn.qkv.weight.grad is not None
    with pytest.raises(ConfigError):
        share_stages(_vit(8), (2, 2))


def test_stage_mapping_known_answers():
    assert stage_mapping(12, 5) == (0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4)   # the released 12-layer Des-Net
    assert stage_mapping(4, 4) == (0, 1, 2, 3)
    assert stage_mapping(6, 4) == (0, 0, 1, 1, 2, 3)
    assert stage_mapping(8, 4) == (0, 0, 1, 1, 2, 2, 3, 3)
    with pytest.raises(ConfigError):
        stage_mapping(0, 4)


def test_expansion_copies_all_weights_as_independent_copies():
    torch.manual_seed(0)
    stages = (2, 2, 2, 2)
    aux = share_stages(_vit(8), stages)
    des = expand(aux, stages, 6, _vit(6))
    genes = learngene_layers(aux, stages)
    for l, s in enumerate(stage_mapping(6, 4)):
        for a, b in zip(des.blocks[l].state_dict().values(), genes[s].state_dict().values()):
            assert torch.equal(a, b)
    assert torch.equal(des.head.weight, aux.head.weight) and torch.equal(des.pos, aux.pos)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():   # copies, not aliases: tuning layer 0 leaves layer 1 and the Aux-Net unchanged
        des.blocks[0].attn.qkv.weight.add_(1.0)
    assert not torch.equal(des.blocks[0].attn.qkv.weight, des.blocks[1].attn.qkv.weight)
    assert not torch.equal(des.blocks[0].attn.qkv.weight, genes[0].attn.qkv.weight)
    # same function when every descendant layer maps to one learngene layer and the Aux-Net repeats it as often
    one = share_stages(_vit(3), (3,))
    with torch.no_grad():
        assert torch.allclose(expand(one, (3,), 3, _vit(3)).eval()(x), one.eval()(x), atol=1e-6)


def test_official_nets_no_class_token_pooling_and_drop_path():
    """SWS_vit.py (Aux: no class token, final norm then mean), des_models.py (Des: mean then fc_norm), drop path
    0.1 linear over the blocks (main.py --drop-path) at every scale; expand puts the Aux norm into the Des norm."""
    from .experiment import build_vit

    cfg = config.resolve(registry.get(SLUG), "small")
    shape = (1, 8, 8)
    torch.manual_seed(0)
    aux = share_stages(build_vit(cfg, 8, shape, 10, aux=True), (2, 2, 2, 2))
    des = expand(aux, (2, 2, 2, 2), 6, build_vit(cfg, 6, shape, 10))
    assert aux.cls is None and des.cls is None and aux.pos.shape[1] == des.pos.shape[1] == 16
    assert cfg.drop_path == 0.1 and aux.dpr[0] == 0.0 and abs(aux.dpr[-1] - 0.1) < 1e-7 and len(des.dpr) == 6
    with torch.no_grad():
        aux.norm.weight.normal_()   # a non-trivial final norm, so that its place matters
        aux.norm.bias.normal_()
        des = expand(aux, (2, 2, 2, 2), 6, des)
        assert torch.equal(des.norm.weight, aux.norm.weight)
        x = torch.randn(3, 1, 8, 8)
        aux.eval(), des.eval()
        assert torch.allclose(aux.features(x), aux.norm(aux.tokens(x)).mean(1), atol=1e-6)
        assert torch.allclose(des.features(x), des.norm(des.tokens(x).mean(1)), atol=1e-6)
        assert not torch.allclose(des.features(x), des.norm(des.tokens(x)).mean(1), atol=1e-4)


def test_full_recipe_augmenter_and_off_at_small():
    """Full preset: DeiT's random erasing + mixup/CutMix + label smoothing on every student batch; small: none."""
    from .experiment import augmenter

    r = registry.get(SLUG)
    assert augmenter(config.resolve(r, "small"), 10) is None and augmenter(config.resolve(r, "smoke"), 10) is None
    f = config.resolve(r, "full")
    assert (f.mixup, f.cutmix, f.label_smoothing, f.reprob, f.warmup_epochs) == (0.8, 1.0, 0.1, 0.25, 5)
    aug = augmenter(f, 10)
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    for _ in range(5):
        xa, t = aug(x, y)
        assert xa.shape == x.shape and t.shape == (8, 10) and torch.allclose(t.sum(1), torch.ones(8))
        assert t.min() >= 0.1 / 10 - 1e-7 and t.max() <= 1 - 0.1 + 0.1 / 10 + 1e-7   # smoothed
        assert not torch.equal(xa, x)


def test_online_distillation_teacher_sees_the_augmented_batch():
    from .experiment import augmenter, online_kd

    seen = {}

    class Probe(torch.nn.Module):
        def __init__(self, key):
            super().__init__()
            self.key, self.lin = key, torch.nn.Linear(48, 10)

        def forward(self, x):
            seen[self.key] = x
            return self.lin(x.flatten(1))

    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 4, 4), torch.arange(8)
    aug = augmenter(config.resolve(registry.get(SLUG), "full"), 10)
    loss = online_kd(Probe("s"), Probe("t"), (x, y), aug, 1.0, 1.0)
    assert torch.isfinite(loss) and seen["s"] is seen["t"] and not torch.equal(seen["s"], x)


def test_smoke_with_the_full_recipe_runs():
    """The augmented path at smoke size (per-batch teacher on the augmented input, warmup, soft targets)."""
    r = registry.get(SLUG)
    kw = ["mixup=0.8", "cutmix=1.0", "label_smoothing=0.1", "reprob=0.25", "warmup_epochs=1", "depths=2"]
    m = r.run(config.resolve(r, "smoke", kw), for_tests()).metrics
    assert all(torch.isfinite(torch.tensor(m[k])) for k in ("aux_acc", "acc_sws_mean", "acc_scratch_mean"))
    assert m["aux_steps"] > 0


def test_distill_loss_known_answers():
    z = torch.randn(4, 10)
    assert distill_loss(z, z).abs().item() < 1e-6                     # KL(p || p) = 0
    zs, zt = torch.zeros(1, 2), torch.tensor([[0.0, 1e4]])            # one-hot teacher: KL = log 2 at T=1
    assert abs(distill_loss(zs, zt).item() - torch.log(torch.tensor(2.0)).item()) < 1e-5
    y = torch.tensor([1])
    assert abs(distill_loss(zs, zt, y, alpha=0.0).item() - F.cross_entropy(zs, y).item()) < 1e-6
    mix = 0.3 * F.cross_entropy(zs, y) + 0.7 * distill_loss(zs, zt)
    assert abs(distill_loss(zs, zt, y, alpha=0.7).item() - mix.item()) < 1e-6
    zs.requires_grad_(True)
    distill_loss(zs, zt.requires_grad_(True)).backward()
    assert zt.grad is None                                             # the teacher gets no gradient


def test_config_errors_and_full_preset_pinned():
    r = registry.get(SLUG)
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["depths=2,3"])   # 4 stages need >= 4 layers
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["temperature=0"])
    f = config.resolve(r, "full")
    # released Aux-S / Des-S recipe (spec §3): width 384, 6 heads, 16 layers in stages (3,3,4,3,3), a=1, T=1,
    # AdamW 5e-4 wd 0.05, 150 epochs; descendants tuned 10 epochs at 5e-5
    assert (f.dim, f.heads, f.mlp_ratio, f.patch, f.stages) == (384, 6, 4.0, 16, (3, 3, 4, 3, 3))
    assert (f.alpha, f.temperature, f.aux_lr, f.weight_decay, f.aux_epochs) == (1.0, 1.0, 5e-4, 0.05, 150)
    assert (f.des_epochs, f.des_lr, f.batch_size, f.data) == (10, 5e-5, 512, "imagenet")
    assert SCALES["small"]["dim"] == 32 and Config().dim == 64


def test_broken_variant_untrained_aux_at_smoke():
    """Teeth at smoke size: 'untrained-aux' skips Stage 1, so the Aux-Net (hence SWS) is a random init."""
    r = registry.get(SLUG)
    kw = ["teacher_epochs=3", "aux_epochs=10", "batch_size=64", "des_epochs=1", "depths=2"]
    good = r.run(config.resolve(r, "smoke", kw), for_tests()).metrics
    bad = r.run(config.resolve(r, "smoke", kw + ["variant=untrained-aux"]), for_tests()).metrics
    assert good["aux_steps"] > 0 and bad["aux_steps"] == 0 and bad["aux_train_s"] == 0
    assert bad["aux_acc"] < good["aux_acc"] - 0.1, (bad["aux_acc"], good["aux_acc"])
    assert bad["acc_sws_mean"] < good["acc_sws_mean"], (bad["acc_sws_mean"], good["acc_sws_mean"])

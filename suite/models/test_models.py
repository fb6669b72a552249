"""Shape and hand-computed parameter-count tests of the shared models."""
from __future__ import annotations

import pytest
import torch

from suite.errors import ConfigError, UnknownNameError
from suite.models import (MLP, ConvNet, TransformerLM, ViT, conv2, conv4, conv6, count_params, lenet_300_100,
                          resnet18, resnet20, resnet32, resnet56, small_convnet)
from suite.models.resnet import CifarResNet


def lin(a: int, b: int) -> int:
    return a * b + b


def conv(a: int, b: int, k: int = 3, bias: bool = True) -> int:
    return a * b * k * k + (b if bias else 0)


def test_mlp_and_lenet() -> None:
    m = lenet_300_100()
    assert count_params(m) == lin(784, 300) + lin(300, 100) + lin(100, 10) == 266_610
    assert m(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    m2 = MLP(3072, (100, 100), 10, act="tanh", dropout=0.1)
    assert count_params(m2) == lin(3072, 100) + lin(100, 100) + lin(100, 10)
    assert len(m2.linears) == 3 and m2(torch.zeros(2, 3072)).shape == (2, 10)
    with pytest.raises(UnknownNameError, match="use one of"):
        MLP(2, (3,), 1, act="swish2")


def test_convnets() -> None:
    fc = lin(256, 256) + lin(256, 10)
    c2 = conv(3, 64) + conv(64, 64) + lin(16 * 16 * 64, 256) + fc
    c4 = conv(3, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128) + lin(8 * 8 * 128, 256) + fc
    c6 = c4 - lin(8 * 8 * 128, 256) + conv(128, 256) + conv(256, 256) + lin(4 * 4 * 256, 256)
    assert (count_params(conv2()), count_params(conv4()), count_params(conv6())) == (c2, c4, c6)
    assert (c2, c4, c6) == (4_301_642, 2_425_930, 2_262_602)
    x = torch.zeros(2, 3, 32, 32)
    assert conv6()(x).shape == (2, 10)
    s = small_convnet(10, 1, 8, width=16, depth=2)
    assert s(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    # conv (no bias, BN) x2 + linear head on 2x2x16
    assert count_params(s) == conv(1, 16, bias=False) + 32 + conv(16, 16, bias=False) + 32 + lin(64, 10)
    with pytest.raises(ConfigError, match="fewer stages"):
        ConvNet(1, 10, [(8,)] * 4, (), image_size=8)


def cifar_resnet_params(n: int, w: int = 16, classes: int = 10, option: str = "A") -> int:
    """Hand count: stem conv+BN, 3 stages of n blocks (2 convs + 2 BNs each), projections (B), head."""
    total = conv(3, w, bias=False) + 2 * w
    c = w
    for cw in (w, 2 * w, 4 * w):
        for _ in range(n):
            total += conv(c, cw, bias=False) + conv(cw, cw, bias=False) + 4 * cw
            if option == "B" and c != cw:
                total += c * cw + 2 * cw
            c = cw
    return total + lin(c, classes)


def test_cifar_resnets() -> None:
    assert count_params(resnet20()) == cifar_resnet_params(3) == 269_722
    assert count_params(resnet32()) == cifar_resnet_params(5)
    assert count_params(resnet56()) == cifar_resnet_params(9)
    assert count_params(resnet20(shortcut="B")) == cifar_resnet_params(3, option="B")
    m = resnet20(num_classes=7, in_channels=1, width=4).eval()
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 7) and m.features(torch.zeros(2, 1, 8, 8)).shape == (2, 16)
    with pytest.raises(ConfigError, match="6n\\+2"):
        CifarResNet(depth=21)
    with pytest.raises(UnknownNameError):
        resnet20(shortcut="C")


def test_option_a_shortcut_is_parameter_free_identity() -> None:
    blk = resnet20(width=4).blocks[3]  # first block of stage 2: 4 -> 8 channels, stride 2
    x = torch.randn(1, 4, 8, 8)
    s = blk.shortcut(x)
    assert s.shape == (1, 8, 4, 4)
    assert torch.equal(s[:, 2:6], x[:, :, ::2, ::2]) and s[:, :2].abs().sum() == 0 and s[:, 6:].abs().sum() == 0


def test_resnet18() -> None:
    assert count_params(resnet18(10)) == 11_173_962
    assert count_params(resnet18(1000, cifar_stem=False)) == 11_689_512
    small = resnet18(10, width=8).eval()
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_vit_shapes_and_params() -> None:
    d, depth, heads, ratio, p, classes = 32, 2, 4, 2.0, 2, 10
    m = ViT(image_size=8, patch_size=p, in_channels=1, num_classes=classes, dim=d, depth=depth, heads=heads,
            mlp_ratio=ratio)
    h = int(d * ratio)
    block = 2 * 2 * d + lin(d, 3 * d) + lin(d, d) + lin(d, h) + lin(h, d)  # 2 LNs, qkv, proj, fc1, fc2
    expected = conv(1, d, p) + d + 17 * d + depth * block + 2 * d + lin(d, classes)
    assert count_params(m) == expected
    assert m(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert m.tokens(torch.randn(3, 1, 8, 8)).shape == (3, 17, d)
    assert hasattr(m.blocks[0], "attn") and hasattr(m.blocks[0], "mlp")
    with pytest.raises(ConfigError, match="divisible"):
        ViT(image_size=8, patch_size=3)


def _reference_vit(seed: int, x: torch.Tensor, d: int, depth: int, heads: int, pool: str, train: bool):
    """The original ViT written out: modules created in the original order from ``seed``, then
    cat([CLS], patches) + pos -> blocks -> final norm -> [CLS] or mean over patch tokens -> head."""
    from torch import nn

    from suite.models.blocks import Block

    torch.manual_seed(seed)
    patch = nn.Conv2d(1, d, 2, 2)
    cls = torch.zeros(1, 1, d)
    pos = torch.randn(1, 17, d) * 0.02
    blocks = [Block(d, heads, 2.0, 0.0).train(train) for _ in range(depth)]
    norm, head = nn.LayerNorm(d), nn.Linear(d, 10)
    # own parameters first, then the submodules' (nn.Module.parameters order)
    params = [cls, pos, patch.weight, patch.bias] + [p for b in blocks for p in b.parameters()] + [
        norm.weight, norm.bias, head.weight, head.bias]
    with torch.no_grad():
        p = patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([cls.expand(p.shape[0], -1, -1), p], 1) + pos
        for b in blocks:
            h = b(h)
        h = norm(h)
        return head(h[:, 0] if pool == "cls" else h[:, 1:].mean(1)), params


def test_vit_defaults_are_the_original_model() -> None:
    """New options at their defaults: same parameters from the same seed, bit-identical forward."""
    x = torch.randn(3, 1, 8, 8)
    for pool in ("cls", "mean"):
        for train in (True, False):
            torch.manual_seed(5)
            m = ViT(image_size=8, patch_size=2, in_channels=1, num_classes=10, dim=16, depth=3, heads=2,
                    mlp_ratio=2.0, pool=pool).train(train)
            want, params = _reference_vit(5, x, 16, 3, 2, pool, train)
            assert len(list(m.parameters())) == len(params)
            assert all(torch.equal(a, b) for a, b in zip(m.parameters(), params))
            with torch.no_grad():
                assert torch.equal(m(x), want)
            assert m.dpr == [0.0, 0.0, 0.0] and m.cls is not None and not m.norm_after_pool


def test_vit_without_class_token_pools_the_patch_tokens() -> None:
    kw = dict(image_size=8, patch_size=2, in_channels=1, num_classes=10, dim=16, depth=2, heads=2, mlp_ratio=2.0)
    x = torch.randn(3, 1, 8, 8)
    base = ViT(**kw, pool="mean")
    m = ViT(**kw, pool="mean", class_token=False).eval()
    assert m.cls is None and m.pos.shape == (1, 16, 16)
    assert count_params(m) == count_params(base) - 16 - 16          # no [CLS] and one position fewer
    with torch.no_grad():
        t = m.tokens(x)
        assert t.shape == (3, 16, 16)                                  # patches only
        assert torch.allclose(m.features(x), m.norm(t).mean(1), atol=1e-6)   # norm, then mean (Aux-Net)
        m.norm_after_pool = True                                       # mean, then norm (timm fc_norm)
        assert torch.allclose(m.features(x), m.norm(t.mean(1)), atol=1e-6)
        assert not torch.allclose(m.norm(t.mean(1)), m.norm(t).mean(1), atol=1e-3)
    with pytest.raises(ConfigError, match="class_token"):
        ViT(**kw, pool="cls", class_token=False)


def test_drop_path_keep_rate_scaling_and_identity_in_eval() -> None:
    from suite.models.vit import drop_path

    x = torch.ones(40000, 3, 2)
    torch.manual_seed(0)
    y = drop_path(x, 0.3, True)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)   # one draw per sample
    kept = per_sample[:, 0] != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01                      # keep rate 1 - p
    assert torch.allclose(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.7))   # scaled by 1/(1-p)
    assert torch.equal(drop_path(x, 0.3, False), x) and torch.equal(drop_path(x, 0.0, True), x)


def test_vit_drop_path_rates_and_branches() -> None:
    kw = dict(image_size=8, patch_size=2, in_channels=1, num_classes=10, dim=16, depth=2, heads=2, mlp_ratio=2.0,
              pool="mean", class_token=False)
    assert ViT(**{**kw, "depth": 5}, drop_path=0.1).dpr == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])  # timm's dpr
    x = torch.randn(8, 1, 8, 8)
    torch.manual_seed(0)
    m = ViT(**kw, drop_path=0.9999)       # block 0: rate 0; block 1: both branches dropped (almost surely)
    ref = ViT(**kw)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(m.eval()(x), ref.eval()(x))                 # eval: the identity
        m.train()
        torch.manual_seed(1)
        h = m.blocks[0](m.patch(x).flatten(2).transpose(1, 2) + m.pos)
        assert torch.allclose(m.tokens(x), h, atol=1e-6)               # train: block 1 skipped, block 0 kept
        assert not torch.allclose(ref.train().tokens(x), h, atol=1e-3)
    with pytest.raises(ConfigError, match="drop_path"):
        ViT(**kw, drop_path=1.0)


def test_transformer_params_and_causality() -> None:
    v, t, d = 20, 16, 32
    m = TransformerLM(v, max_len=t, dim=d, depth=2, heads=4, causal=True)
    block = 4 * d + lin(d, 3 * d) + lin(d, d) + lin(d, 4 * d) + lin(4 * d, d)
    assert count_params(m) == v * d + t * d + 2 * block + 2 * d  # tied head adds nothing
    untied = TransformerLM(v, max_len=t, dim=d, depth=2, heads=4, tie_embeddings=False)
    assert count_params(untied) == count_params(m) + v * d
    x = torch.randint(0, v, (2, 10))
    out = m(x)
    assert out.shape == (2, 10, v)
    x2 = x.clone()
    x2[:, 6:] = (x2[:, 6:] + 1) % v  # changing the future leaves earlier causal logits unchanged
    assert torch.allclose(m(x2)[:, :6], out[:, :6], atol=1e-6)
    bi = TransformerLM(v, max_len=t, dim=d, depth=2, heads=4, causal=False)
    assert not torch.allclose(bi(x2)[:, :6], bi(x)[:, :6])
    # key padding: padded keys do not change the real positions' outputs
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, 8:] = False
    x3 = x.clone()
    x3[:, 8:] = 0
    assert torch.allclose(bi(x3, mask)[:, :8], bi(x[:, :8])[:, :8], atol=1e-5)
    left = torch.tensor([[False, False, True, True], [True, True, True, True]])  # left-padded causal batch
    assert torch.isfinite(m(torch.randint(0, v, (2, 4)), left)).all()
    with pytest.raises(ConfigError, match="max_len"):
        m(torch.zeros(1, t + 1, dtype=torch.long))


def test_generate_greedy_topk_and_eos() -> None:
    torch.manual_seed(0)
    m = TransformerLM(12, max_len=8, dim=16, depth=1, heads=2)
    prompt = torch.tensor([[1, 5, 6]])
    g1 = m.generate(prompt, 10, temperature=0)
    # greedy == argmax recomputed by hand with the cropped context
    seq = prompt
    for _ in range(10):
        seq = torch.cat([seq, m(seq[:, -8:])[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(g1, seq) and g1.shape == (1, 13)
    s1 = m.generate(prompt.repeat(4, 1), 5, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, g1[:, :8].repeat(4, 1))  # top-1 sampling is greedy
    a = m.generate(prompt, 5, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = m.generate(prompt, 5, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    eos = int(g1[0, 3])
    e = m.generate(prompt, 10, temperature=0, eos_id=eos)
    assert e.shape[1] == 4 and e[0, -1] == eos
    with pytest.raises(ConfigError, match="causal"):
        TransformerLM(12, causal=False).generate(prompt, 2)


def test_tiny_lm_learns_a_pattern() -> None:
    """Training the causal LM on a periodic sequence drives greedy generation to continue it."""
    from suite.train import TrainConfig, fit

    torch.manual_seed(0)
    seq = torch.tensor([5, 6, 7, 8] * 8)
    windows = seq.unfold(0, 9, 1)  # (24, 9)
    m = TransformerLM(10, max_len=16, dim=32, depth=1, heads=2)
    fit(m, lambda mod, b: mod.loss(b), windows, TrainConfig(steps=80, batch_size=8, lr=3e-3, log_every=0))
    out = m.generate(torch.tensor([[5, 6, 7]]), 6, temperature=0)
    assert out[0].tolist() == [5, 6, 7, 8, 5, 6, 7, 8, 5]


def test_rope_lm_is_translation_invariant_and_learned_is_not() -> None:
    """Rotary embeddings make attention depend on relative positions only (Su et al. 2021 §3.4.1):
    shifting every position by the same offset leaves the logits unchanged."""
    torch.manual_seed(0)
    x = torch.randint(0, 20, (2, 12))
    shift = torch.arange(12) + 7
    rope = TransformerLM(20, max_len=32, dim=32, depth=2, heads=4, pos_encoding="rope").eval()
    learned = TransformerLM(20, max_len=32, dim=32, depth=2, heads=4).eval()
    with torch.no_grad():
        assert torch.allclose(rope(x), rope(x, positions=shift), atol=1e-5)
        assert not torch.allclose(learned(x), learned(x, positions=shift), atol=1e-3)
        assert rope.pos_emb is None
        # order still matters under rope: a permuted prefix changes the last logits
        assert not torch.allclose(rope(x)[:, -1], rope(x.flip(1))[:, -1], atol=1e-3)

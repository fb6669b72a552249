"""Tied dropout of suite.models.ssm: the S4 repo's ``DropoutNd(tie=True)`` (src/models/nn/components.py), used by
the residual block (``S4DBlock(tie_dropout=True)``) and inside the S4D layer (``SSMConfig.tie_dropout``) where the
official configs set ``tie_dropout: true``; the default block keeps element-wise ``nn.Dropout``."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError
from suite.models.ssm import S4D, S4DBlock, SSMConfig, TiedDropout, tied_dropout


def test_tied_dropout_hand_made_case(monkeypatch):
    """x (2 examples, 4 positions, 3 channels), p = 0.5, uniform draws fixed by hand: one draw per (example,
    channel), kept where the draw exceeds p, the same at every position, kept values times 1/(1-p) = 2."""
    draws = torch.tensor([[[0.9, 0.1, 0.6]], [[0.2, 0.7, 0.3]]])  # keep [[1, 0, 1], [0, 1, 0]]
    asked = []

    def fake_rand(*shape, **kw):
        asked.append(tuple(shape[0]) if len(shape) == 1 else shape)
        return draws

    x = torch.arange(1.0, 25.0).reshape(2, 4, 3)
    monkeypatch.setattr(torch, "rand", fake_rand)
    out = TiedDropout(0.5)(x)
    assert asked == [(2, 1, 3)]  # one draw per example and channel, none per position
    want = torch.tensor([[[2.0, 0.0, 6.0], [8.0, 0.0, 12.0], [14.0, 0.0, 18.0], [20.0, 0.0, 24.0]],
                         [[0.0, 28.0, 0.0], [0.0, 34.0, 0.0], [0.0, 40.0, 0.0], [0.0, 46.0, 0.0]]])
    assert torch.equal(out, want)


def test_tied_mask_is_shared_over_positions_and_differs_per_channel_and_example():
    torch.manual_seed(0)
    x = torch.randn(8, 50, 16).abs() + 0.1  # no zeros: a zero of the output is a dropped entry
    out = tied_dropout(x, 0.5, True, seq_dim=1)
    keep = out != 0
    assert torch.equal(keep, keep[:, :1].expand_as(keep))  # the same mask at every position
    assert torch.allclose(out[keep], x[keep] / 0.5)  # scaled by 1/(1-p)
    per = keep[:, 0]  # (example, channel)
    assert (per.any(1) & ~per.all(1)).all()  # within every example some channels kept, some dropped
    assert not torch.equal(per[0], per[1])  # examples draw their own masks
    # (B, H, L) layout, the S4D layer's: the sequence is the last dimension
    out_t = tied_dropout(x.transpose(1, 2), 0.5, True, seq_dim=-1)
    k = out_t != 0
    assert torch.equal(k, k[..., :1].expand_as(k))


def test_tied_dropout_is_the_identity_in_eval_and_at_p_zero():
    x = torch.randn(3, 7, 5)
    drop = TiedDropout(0.3).eval()
    state = torch.random.get_rng_state()
    assert torch.equal(drop(x), x)
    assert torch.equal(tied_dropout(x, 0.0, True), x)
    assert torch.equal(torch.random.get_rng_state(), state)  # no random numbers drawn
    with pytest.raises(ConfigError):
        TiedDropout(1.0)


def _block(tie: bool, p: float = 0.5) -> S4DBlock:
    cfg = SSMConfig(d_state=4, bidirectional=True)
    return S4DBlock(6, cfg, norm="layer", prenorm=True, dropout=p, generator=torch.Generator().manual_seed(0),
                    tie_dropout=tie)


def test_block_tie_dropout_ties_the_residual_mask():
    """SequenceResidualBlock with ``tie_dropout``: x + DropoutNd(layer(norm(x))), mask per (example, channel)."""
    blk = _block(True).train()
    assert isinstance(blk.drop, TiedDropout) and blk.drop.p == 0.5
    x = torch.randn(4, 20, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    with torch.no_grad():
        y = blk(x)
        z = blk.layer(blk.norm(x))  # the layer has no dropout of its own here
    branch = y - x
    keep = branch.abs() > 1e-6
    assert 0 < keep.float().mean() < 1
    assert torch.equal(keep, keep[:, :1].expand_as(keep))
    assert torch.allclose(branch[keep], 2 * z[keep], atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(blk.eval()(x), x + z, atol=1e-6)  # identity in eval


def test_block_default_keeps_element_wise_dropout():
    """The default (``tie_dropout=False``, what s4d and self_pretraining's smoke / small use) is nn.Dropout:
    the same numbers as before the option existed."""
    blk = _block(False).train()
    assert type(blk.drop) is nn.Dropout
    x = torch.randn(4, 20, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    with torch.no_grad():
        y = blk(x)
        z = blk.layer(blk.norm(x))
        torch.manual_seed(2)
        want = x + F.dropout(z, 0.5, True)
    assert torch.equal(y, want)
    keep = (y - x).abs() > 1e-6
    assert not torch.equal(keep, keep[:, :1].expand_as(keep))  # element-wise: masks vary over positions


def test_s4d_layer_tied_dropout_after_the_activation():
    """The S4 layer (src/models/sequence/ss/s4.py): y = dropout(GELU(K * u + D u)), then the output map (GLU), the
    dropout tied over the sequence: one mask per (example, channel) of the (B, H, L) activations."""
    layer = S4D(6, SSMConfig(d_state=4, bidirectional=True, dropout=0.5, tie_dropout=True),
                generator=torch.Generator().manual_seed(0)).train()
    u = torch.randn(3, 15, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(4)
    with torch.no_grad():
        got = layer(u)
        g = F.gelu(layer.ssm(u.transpose(1, 2)))  # (B, H, L)
        torch.manual_seed(4)
        keep = torch.rand(3, 6, 1) > 0.5
        want = F.glu(layer.out(g * keep / 0.5), dim=1).transpose(1, 2)
    assert 0 < keep.float().mean() < 1
    assert torch.allclose(got, want, atol=1e-6)


def test_conv_dropout_is_element_wise_before_the_gelu():
    """``SSMConfig.conv_dropout`` (state-spaces/s4's FFTConv dropout, which S4Block gives the block's dropout
    untied): y = glu(out(gelu(dropout(K * u + D u)))) with an element-wise mask; none in eval."""
    cfg = SSMConfig(d_state=4, bidirectional=True, conv_dropout=0.5)
    layer = S4D(6, cfg, generator=torch.Generator().manual_seed(0)).train()
    u = torch.randn(3, 40, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(5)
        y = layer(u)
        z = layer.ssm(u.transpose(1, 2))
        torch.manual_seed(5)
        dropped = F.dropout(z, 0.5, True)
        want = F.glu(layer.out(F.gelu(dropped)), dim=1).transpose(1, 2)
        assert torch.allclose(y, want, atol=1e-6)
        kept = dropped != 0
        assert 0.3 < kept.float().mean() < 0.7
        assert not torch.equal(kept, kept[..., :1].expand_as(kept))  # not tied over the sequence
        plain = F.glu(layer.out(F.gelu(z)), dim=1).transpose(1, 2)
        assert not torch.allclose(y, plain, atol=1e-3)
        assert torch.allclose(layer.eval()(u), plain, atol=1e-6)  # identity in eval

import torch

from suite.data.augment import flip_crop, shift_flip


def test_flip_crop_is_a_shifted_maybe_flipped_window():
    torch.manual_seed(0)
    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).view(4, 3, 8, 8) + 1
    y = flip_crop(x, pad=2)
    assert y.shape == x.shape
    for i in range(4):  # each output is a window of the zero-padded input, maybe mirrored
        xp = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [xp[:, a:a + 8, b:b + 8] for a in range(5) for b in range(5)]
        assert any(torch.equal(y[i], w) or torch.equal(y[i], w.flip(-1)) for w in windows)
    same = flip_crop(x, pad=0)  # no padding: only the flip remains, and both outcomes occur
    kinds = [torch.equal(same[i], x[i]) for i in range(4)]
    assert all(k or torch.equal(same[i], x[i].flip(-1)) for i, k in enumerate(kinds))


def test_shift_flip_shapes_seeded_and_identity_at_zero():
    x = torch.rand(6, 3, 10, 12)
    for whole in (True, False):
        a = shift_flip(x, 2, whole_pixels=whole, mode="bilinear", generator=torch.Generator().manual_seed(1))
        b = shift_flip(x, 2, whole_pixels=whole, mode="bilinear", generator=torch.Generator().manual_seed(1))
        assert a.shape == x.shape and torch.equal(a, b)
        assert not torch.equal(a, x)
        same = shift_flip(x, 0, flip=False, whole_pixels=whole, mode="bilinear")  # no shift, no flip
        assert torch.allclose(same, x, atol=1e-6)
    assert torch.equal(shift_flip(x, 0, flip=False), x)  # nearest: exact


def test_shift_flip_whole_pixels_is_a_zero_filled_shift_or_its_mirror():
    x = torch.arange(1, 4 * 1 * 6 * 6 + 1, dtype=torch.float32).view(4, 1, 6, 6)
    y = shift_flip(x, 1, padding_mode="zeros", generator=torch.Generator().manual_seed(0))
    for i in range(4):
        xp = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        windows = [xp[:, a:a + 6, b:b + 6] for a in range(3) for b in range(3)]
        assert any(torch.equal(y[i], w) or torch.equal(y[i], w.flip(-1)) for w in windows)

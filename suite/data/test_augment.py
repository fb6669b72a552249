import torch

from suite.data.augment import flip_crop


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

import torch

from suite.data.augment import flip_crop, mixup_cutmix, mixup_target, random_erasing, shift_flip


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


def test_mixup_target_known_answer():
    t = mixup_target(torch.tensor([0, 1]), 4, lam=0.7, smoothing=0.1)   # on = 0.925, off = 0.025
    assert torch.allclose(t[0], torch.tensor([0.7 * 0.925 + 0.3 * 0.025, 0.7 * 0.025 + 0.3 * 0.925, 0.025, 0.025]))
    assert torch.allclose(t[1], torch.tensor([0.3 * 0.925 + 0.7 * 0.025, 0.3 * 0.025 + 0.7 * 0.925, 0.025, 0.025]))
    assert torch.allclose(t.sum(1), torch.ones(2))


def _lam(t, y):   # lam recovered from unsmoothed targets (labels of i and B-1-i differ)
    return t[0, y[0]].item()


def test_mixup_blends_with_the_reversed_batch_and_beta_lam():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 6, 6), torch.tensor([0, 1, 2, 3])
    lams = []
    for _ in range(400):
        xm, t = mixup_cutmix(x, y, 4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)
        lam = _lam(t, y)
        assert torch.allclose(xm, lam * x + (1 - lam) * x.flip(0), atol=1e-6)
        lams.append(lam)
    lams = torch.tensor(lams)
    assert abs(lams.mean().item() - 0.5) < 0.04 and abs(lams.var().item() - 1 / (4 * 2.6)) < 0.02   # Beta(.8, .8)
    xm, t = mixup_cutmix(x, y, 4, prob=0.0)                      # no mixing: smoothed one-hot targets only
    assert torch.equal(xm, x) and torch.allclose(t, mixup_target(y, 4, 1.0, 0.1))


def test_cutmix_pastes_a_box_and_lam_is_its_complement_and_switch_is_half():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 8, 8) + 10, torch.tensor([0, 1, 2, 3])
    for _ in range(50):
        xm, t = mixup_cutmix(x, y, 4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
        pasted = (xm != x).any(1)[0]                             # image 0's pixels taken from image 3
        assert torch.equal(xm[0][:, pasted], x[3][:, pasted]) and torch.equal(xm[0][:, ~pasted], x[0][:, ~pasted])
        rows, cols = pasted.any(1).nonzero(), pasted.any(0).nonzero()
        if len(rows):                                             # a rectangle
            assert pasted.sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert abs(_lam(t, y) - (1 - pasted.float().mean().item())) < 1e-6   # correct_lam
    cut = 0
    for _ in range(400):                                          # both on: CutMix with probability 0.5
        xm, _ = mixup_cutmix(x, y, 4)
        cut += int(bool(((xm == x) | (xm == x.flip(0))).all()))   # pixels copied, none blended
    assert abs(cut / 400 - 0.5) < 0.08


def test_random_erasing_boxes_of_noise_at_rate_p():
    torch.manual_seed(0)
    x = torch.zeros(4000, 3, 16, 16)
    y = random_erasing(x, p=0.25)
    hit = (y != 0).flatten(1).any(1)
    assert abs(hit.float().mean().item() - 0.25) < 0.02
    y = random_erasing(x[:300], p=1.0)
    for img in y:
        box = (img != 0).any(0)
        assert ((img != 0) == box).all()                          # every channel noised in the box
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        assert box.sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        frac = box.float().mean().item()
        assert 0.02 - 0.01 <= frac <= 1 / 3 + 0.05                # area in [0.02, 1/3] of the image (rounding)
        assert 0.3 / 1.5 <= len(rows) / len(cols) <= 1.5 / 0.3   # aspect in [0.3, 1/0.3] (rounding)
    noise = y[(y != 0)]
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1) < 0.05   # N(0, 1) per pixel
    assert torch.equal(random_erasing(x[:10], p=0.0), x[:10])
    flat = random_erasing(torch.zeros(2000, 1, 6, 40), p=1.0)[:, 0] != 0   # many draws do not fit a 6-pixel height
    rows, cols = flat.any(2).sum(1), flat.any(1).sum(1)
    assert rows.max() < 6 and cols.max() < 40 and (rows > 0).float().mean() > 0.9   # the first draw that fits

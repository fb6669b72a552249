"""suite.data.randaugment: timm's RandAugment on uint8 tensors. Hand-computed op values on tiny images, timm's
magnitude -> argument mapping (inc1 set, mstd noise clipped to [0, 10]), the config-string parser, the draws per
image, and pixel equality with the PIL calls timm makes."""
from __future__ import annotations

import math

import pytest
import torch

from suite.data import randaugment as R
from suite.errors import ConfigError

FILL = R.IMAGENET_FILL


def _img(rows, c=1):
    return torch.tensor(rows, dtype=torch.uint8)[None].repeat(c, 1, 1)


# --------------------------------------------------------------------------- geometry

def test_translate_moves_content_left_by_pct_of_width_and_fills_with_the_mean():
    """timm translate_x_rel: output x samples input x + pct * W; pct 0.25 of W = 4 is one whole pixel."""
    img = _img([[10, 20, 30, 40], [50, 60, 70, 80]], c=3)
    out = R.translate_x_rel(img, 0.25)
    for c in range(3):
        assert out[c].tolist() == [[20, 30, 40, FILL[c]], [60, 70, 80, FILL[c]]]
    out = R.translate_x_rel(img, -0.25)   # negative: content moves right
    assert out[0].tolist() == [[124, 10, 20, 30], [124, 50, 60, 70]]
    out = R.translate_y_rel(img, 0.5)     # 0.5 of H = 2 is one row: row 1 moves up
    assert out[1].tolist() == [[50, 60, 70, 80], [116] * 4]


def test_shear_x_shifts_row_y_by_factor_times_its_centre():
    """timm shear_x: AFFINE (1, f, 0, 0, 1, 0): output (x, y) samples input x + f (y + 0.5); f = 2 shifts row 0 by
    1 pixel and row 1 by 3 (whole pixels, so the bicubic sample is the pixel itself)."""
    img = _img([[1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16]])
    out = R.shear_x(img, 2.0, fill=(0,))
    assert out.tolist() == [[[2, 3, 4, 5, 6, 0], [14, 15, 16, 0, 0, 0]]]
    tall = img.transpose(-1, -2).contiguous()             # shear_y: the same along the other axis
    assert R.shear_y(tall, 2.0, fill=(0,)).transpose(-1, -2).tolist() == out.tolist()


def test_rotate_is_counter_clockwise_about_the_centre_with_fill_outside():
    img = _img([[1, 2], [3, 4]])
    assert R.rotate(img, 90)[0].tolist() == [[2, 4], [1, 3]]        # PIL: 90 degrees counter-clockwise
    assert R.rotate(img, -90)[0].tolist() == [[3, 1], [4, 2]]
    assert R.rotate(img, 180)[0].tolist() == [[4, 3], [2, 1]]
    # 45 degrees on a flat 4x4 image: the bicubic of a constant is that constant; the four corner pixels' centres
    # map outside the source (e.g. (0.5, 0.5) -> (2, 2 - 3 / sqrt 2)) and get the fill
    flat = torch.full((3, 4, 4), 50, dtype=torch.uint8)
    out = R.rotate(flat, 45)
    corner = torch.zeros(4, 4, dtype=torch.bool)
    corner[0, 0] = corner[0, 3] = corner[3, 0] = corner[3, 3] = True
    for c in range(3):
        assert (out[c][corner] == FILL[c]).all() and (out[c][~corner] == 50).all()


def test_affine_bicubic_is_pillows_a_minus_one_cubic():
    """Geometry.c's BICUBIC is the a = -1 cubic convolution, truncated to uint8, taps clamped at the border.
    Row 10 50 200 40 sampled a quarter pixel right of pixel 1 (d = 0.25): p1 = 50, p2 = 200 - 10 = 190,
    p3 = 2 (10 - 50) + 200 - 40 = 80, p4 = -10 + 50 - 200 + 40 = -120: 50 + d (190 + d (80 + d (-120))) = 100.625
    -> 100 (the a = -0.5 cubic gives 87.0, linear 87.5)."""
    img = _img([[10, 50, 200, 40]])
    out = R.affine(img, (1, 0, 0.25, 0, 1, 0), fill=(9,))
    assert out[0, 0, 1].item() == 100
    # pixel 3 samples 3.75 (< 4: inside): taps 2, 3, 4, 5 clamp to 200 40 40 40 -> 40 + d (-160 + d (320 - 40 d))
    assert out[0, 0, 3].item() == 17
    step = R.affine(_img([[0, 0, 255, 255]]), (1, 0, 0.5, 0, 1, 0), fill=(9,))   # half a pixel on a step
    assert step.tolist() == [[[0, 127, 255, 9]]]


# --------------------------------------------------------------------------- pixel ops

def test_solarize_posterize_invert_solarize_add_values():
    img = _img([[0, 127, 128, 255]])
    assert R.solarize(img, 128).tolist() == [[[0, 127, 127, 0]]]
    assert R.solarize(img, 256).tolist() == img.tolist()              # SolarizeIncreasing at m = 0: no change
    assert R.solarize(img, 0).tolist() == [[[255, 128, 127, 0]]]       # m = 10: every value inverted
    assert R.posterize(img, 1).tolist() == [[[0, 0, 128, 128]]]
    assert R.posterize(img, 4).tolist() == [[[0, 112, 128, 240]]]
    assert R.posterize(img, 0).tolist() == [[[0, 0, 0, 0]]]            # PosterizeIncreasing at m = 10
    assert R.posterize(img, 8).tolist() == img.tolist()
    assert R.invert(img).tolist() == [[[255, 128, 127, 0]]]
    assert R.solarize_add(img, 99).tolist() == [[[99, 226, 128, 255]]]  # below 128: + add, capped at 255


def test_equalize_values_by_hand():
    """512 + 510 pixels at 10 and 20, 2 at 30: step = (1024 - 2) // 255 = 4; lut[v] = (step // 2 + pixels below v)
    // step: 10 -> 2 // 4 = 0, 20 -> 514 // 4 = 128, 30 -> 1024 // 4 = 256, clipped to 255 (PIL's point)."""
    img = torch.cat([torch.full((512,), 10), torch.full((510,), 20), torch.full((2,), 30)]).to(torch.uint8)
    img = img.view(1, 32, 32)
    out = R.equalize(img).view(-1)
    assert out[0] == 0 and out[600] == 128 and out[-1] == 255
    one = torch.full((1, 4, 4), 7, dtype=torch.uint8)
    assert torch.equal(R.equalize(one), one)                            # one value only: unchanged


def test_autocontrast_and_enhance_values_by_hand():
    img = _img([[0, 10, 51]])
    assert R.auto_contrast(img).tolist() == [[[0, 50, 255]]]             # lo..hi = 0..51 -> 0..255, scale 5
    rgb = torch.tensor([[[200]], [[100]], [[0]]], dtype=torch.uint8)     # L = (19595*200 + 38470*100 + 0x8000) >> 16
    lum = (19595 * 200 + 38470 * 100 + 0x8000) >> 16
    assert lum == 118
    assert R.color(rgb, 0.0).view(-1).tolist() == [118, 118, 118]
    assert R.color(rgb, 0.5).view(-1).tolist() == [int(118 + 0.5 * 82), int(118 - 0.5 * 18), int(118 - 0.5 * 118)]
    assert R.brightness(rgb, 1.5).view(-1).tolist() == [255, 150, 0]     # clipped at 255
    flat = torch.full((1, 3, 3), 60, dtype=torch.uint8)
    assert torch.equal(R.sharpness(flat, 1.9), flat) and torch.equal(R.contrast(flat, 0.1), flat)


# --------------------------------------------------------------------------- magnitude -> argument

def test_inc1_level_mapping_at_magnitude_9_10_and_0():
    """timm LEVEL_TO_ARG for the increasing set: m / 10 of each op's range."""
    la = R.level_args
    assert la("Rotate", 9) == (pytest.approx(27.0),) and la("Rotate", 9, negate=True) == (pytest.approx(-27.0),)
    assert la("PosterizeIncreasing", 9) == (1,) and la("PosterizeIncreasing", 10) == (0,)
    assert la("PosterizeIncreasing", 0) == (4,) and la("Posterize", 9) == (3,)
    assert la("SolarizeIncreasing", 9) == (26,) and la("SolarizeIncreasing", 0) == (256,)
    assert la("Solarize", 9) == (230,)
    assert la("SolarizeAdd", 9) == (99,) and la("SolarizeAdd", 10) == (110,)
    assert la("ColorIncreasing", 9) == (pytest.approx(1.81),)
    assert la("ContrastIncreasing", 9, negate=True) == (pytest.approx(0.19),)
    assert la("BrightnessIncreasing", 10, negate=True) == (pytest.approx(0.1),)
    assert la("Sharpness", 9) == (pytest.approx(1.72),)
    assert la("ShearX", 9, negate=True) == (pytest.approx(-0.27),)
    assert la("TranslateYRel", 9) == (pytest.approx(0.405),)
    assert la("Equalize", 9, negate=True) == () and la("Invert", 3) == ()
    with pytest.raises(ConfigError):
        la("Cutout", 9)


def test_magnitude_noise_is_gaussian_and_clipped_to_0_10():
    ra = R.RandAugment("rand-m9-mstd0.5-inc1")
    g = torch.Generator().manual_seed(0)
    ms = torch.tensor([ra.magnitude(g) for _ in range(4000)])
    assert ms.max() == 10.0 and ms.min() >= 0.0                  # clipped, and the clip is reached (P(z > 2))
    assert 0.005 < (ms == 10.0).float().mean() < 0.05
    inner = ms[ms < 10]
    assert abs(inner.mean() - 8.97) < 0.05 and abs(inner.std() - 0.47) < 0.05   # N(9, 0.5) below the clip
    wide = R.RandAugment("rand-m5-mstd50")
    ws = torch.tensor([wide.magnitude(g) for _ in range(1000)])
    assert (ws == 0).any() and (ws == 10).any() and ws.min() >= 0 and ws.max() <= 10
    assert R.clip_magnitude(10.7, ra.spec) == 10.0 and R.clip_magnitude(-0.3, ra.spec) == 0.0
    assert R.clip_magnitude(11.0, R.parse("rand-m9-mmax12")) == 11.0
    uni = R.RandAugment("rand-m9-mstd101")                        # timm: mstd > 100 -> uniform in [0, m]
    us = torch.tensor([uni.magnitude(g) for _ in range(1000)])
    assert us.min() >= 0 and us.max() <= 9 and abs(us.mean() - 4.5) < 0.3
    assert R.RandAugment("rand-m9").magnitude(g) == 9.0           # no mstd: the fixed magnitude


# --------------------------------------------------------------------------- config string

def test_parse_timm_config_strings():
    s = R.parse("rand-m9-mstd0.5-inc1")
    assert s == R.RandAugmentSpec(magnitude=9, num_layers=2, prob=0.5, magnitude_std=0.5, increasing=True)
    assert s.ops == R.RAND_INCREASING_TRANSFORMS and len(s.ops) == 15
    assert R.parse("rand") == R.RandAugmentSpec() and R.parse("rand").ops == R.RAND_TRANSFORMS
    assert R.parse("rand-n3-m7-p0.7-inc0") == R.RandAugmentSpec(magnitude=7, num_layers=3, prob=0.7)
    assert R.parse("rand-mstd101").magnitude_std == math.inf
    assert R.parse("rand-mmax12").magnitude_max == 12
    assert R.parse("") is None and R.parse("  ") is None


@pytest.mark.parametrize("bad", ["rand-m9-x3", "rand-m9-tweights", "augmix-m5", "rand-m", "rand-m9.5",
                                 "rand-p1.5", "rand--m9"])
def test_parse_rejects_unknown_or_malformed_sections_with_one_line_fix(bad):
    with pytest.raises(ConfigError) as e:
        R.parse(bad)
    msg = str(e.value)
    assert "\n" not in msg and "rand-m9-mstd0.5-inc1" in msg


# --------------------------------------------------------------------------- the transform

def test_plan_draws_n_ops_with_replacement_each_kept_with_prob_p():
    g = torch.Generator().manual_seed(1)
    always = R.RandAugment("rand-m9-mstd0.5-inc1-p1")
    plans = [always.plan(g) for _ in range(1500)]
    assert all(len(p) == 2 for p in plans)
    same = sum(p[0][0] == p[1][0] for p in plans) / len(plans)
    assert 0.03 < same < 0.11                                   # with replacement: 1 / 15 of the pairs repeat
    names = {n for p in plans for n, _ in p}
    assert names == set(R.RAND_INCREASING_TRANSFORMS)
    half = R.RandAugment("rand-m9-mstd0.5-inc1")
    kept = sum(len(half.plan(g)) for _ in range(1500)) / (2 * 1500)
    assert 0.45 < kept < 0.55
    signs = [a[0] < 0 for p in plans for n, a in p if n == "Rotate"]
    assert 0.35 < sum(signs) / len(signs) < 0.65                # a random sign for the signed ops


def test_randaugment_applies_its_plan_and_keeps_dtype():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 12, 10), dtype=torch.uint8)
    ra = R.RandAugment("rand-m9-mstd0.5-inc1")
    out = ra(img, torch.Generator().manual_seed(5))
    plan = ra.plan(torch.Generator().manual_seed(5))
    ref = img
    for name, args in plan:
        ref = R.apply_op(ref, name, args)
    assert out.dtype == torch.uint8 and torch.equal(out, ref)
    f = ra(img.float() / 255, torch.Generator().manual_seed(5))
    assert f.dtype == torch.float32 and torch.equal((f * 255).round().to(torch.uint8), out)
    assert torch.equal(R.RandAugment("rand-p0")(img), img)       # p = 0: no op applied
    with pytest.raises(ConfigError):
        R.RandAugment("")


# --------------------------------------------------------------------------- against PIL (what timm calls)

def test_every_op_gives_pils_pixels():
    pil = pytest.importorskip("PIL")
    import numpy as np
    from PIL import Image, ImageEnhance, ImageOps

    del pil
    g = torch.Generator().manual_seed(0)
    cubic = Image.Resampling.BICUBIC

    def to_pil(t):
        return Image.fromarray(t.permute(1, 2, 0).numpy())

    for trial, (h, w) in enumerate([(7, 9), (12, 12), (5, 16), (16, 11)]):
        lo, hi = (0, 256) if trial % 2 == 0 else (40, 90)         # full range and a low-contrast image
        img = torch.randint(lo, hi, (3, h, w), dtype=torch.uint8, generator=g)
        im = to_pil(img)
        u = torch.rand(4, generator=g).tolist()
        f, deg, sh, tr = 0.1 + 1.8 * u[0], 60 * u[1] - 30, 0.6 * u[2] - 0.3, 0.9 * u[3] - 0.45
        kw = dict(resample=cubic, fillcolor=FILL)
        cases = {
            "AutoContrast": (R.auto_contrast(img), ImageOps.autocontrast(im)),
            "Equalize": (R.equalize(img), ImageOps.equalize(im)),
            "Invert": (R.invert(img), ImageOps.invert(im)),
            "Posterize": (R.posterize(img, 2), ImageOps.posterize(im, 2)),
            "Solarize": (R.solarize(img, 77), ImageOps.solarize(im, 77)),
            "SolarizeAdd": (R.solarize_add(img, 60), im.point([min(255, i + 60) if i < 128 else i
                                                                for i in range(256)] * 3)),
            "Color": (R.color(img, f), ImageEnhance.Color(im).enhance(f)),
            "Contrast": (R.contrast(img, f), ImageEnhance.Contrast(im).enhance(f)),
            "Brightness": (R.brightness(img, f), ImageEnhance.Brightness(im).enhance(f)),
            "Sharpness": (R.sharpness(img, f), ImageEnhance.Sharpness(im).enhance(f)),
            "Rotate": (R.rotate(img, deg), im.rotate(deg, **kw)),
            "ShearX": (R.shear_x(img, sh), im.transform(im.size, Image.AFFINE, (1, sh, 0, 0, 1, 0), **kw)),
            "ShearY": (R.shear_y(img, sh), im.transform(im.size, Image.AFFINE, (1, 0, 0, sh, 1, 0), **kw)),
            "TranslateXRel": (R.translate_x_rel(img, tr),
                              im.transform(im.size, Image.AFFINE, (1, 0, tr * w, 0, 1, 0), **kw)),
            "TranslateYRel": (R.translate_y_rel(img, tr),
                              im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, tr * h), **kw)),
        }
        if h == w:
            cases["Rotate90"] = (R.rotate(img, 90), im.rotate(90, **kw))
        for name, (mine, ref) in cases.items():
            ref = torch.from_numpy(np.array(ref)).permute(2, 0, 1)
            assert torch.equal(mine, ref), (name, trial, (mine.int() - ref.int()).abs().max().item())

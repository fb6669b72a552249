"""RandAugment as timm runs it (``timm.data.auto_augment.rand_augment_transform``), on uint8 image tensors.

DeiT-style recipes pass timm a config string such as ``rand-m9-mstd0.5-inc1``: 2 ops per image (``n``), each
drawn uniformly from the op set *with replacement* (``RandAugment.__call__``: ``np.random.choice(...,
replace=True)``) and applied with probability 0.5 (``p``); every applied op draws its magnitude from
N(``m``, ``mstd``) clipped to [0, 10] (``AugmentOp.__call__``; ``mmax`` moves the upper bound), and turns it into
its argument by timm's ``LEVEL_TO_ARG`` functions (a random sign for the signed ones). ``inc1`` picks timm's
"increasing" set (``_RAND_INCREASING_TRANSFORMS``: posterize / solarize / colour / contrast / brightness /
sharpness grow more severe with the magnitude). timm's ``create_transform`` gives the ops the ImageNet-mean
fill ``(124, 116, 104)`` and the training interpolation (bicubic in DeiT) and a translate of 0.45 of the width.

timm applies the ops as PIL calls; here every op is written in torch on ``(..., C, H, W)`` uint8 tensors with
PIL's arithmetic (read from Pillow's C sources: ``Geometry.c`` bicubic affine sampling with its a = -1 cubic,
pixel-centre coordinates, edge clamping and fill outside the source; ``Blend.c``; ``Filter.c`` SMOOTH for
sharpness; ``Convert.c`` RGB -> L; ``ImageOps`` autocontrast / equalize / posterize / solarize), so an op gives
PIL's pixels (``test_randaugment.py`` compares them). A :class:`RandAugment` is applied per image (in the
DataLoader workers, after the random-resized crop and flip, before ``ToTensor``/normalisation, as in timm's
``transforms_imagenet_train``). Nothing is copied from timm or Pillow.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from suite.errors import ConfigError

LEVEL_DENOM = 10.0            # timm _LEVEL_DENOM: magnitude m -> fraction m / 10 of an op's range
IMAGENET_FILL = (124, 116, 104)   # timm create_transform: round(255 * IMAGENET_DEFAULT_MEAN)
TRANSLATE_PCT = 0.45          # timm _translate_rel_level_to_arg default: up to 45 % of the image side

# timm _RAND_TRANSFORMS / _RAND_INCREASING_TRANSFORMS (same order)
RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
                   "TranslateYRel")
RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                              "TranslateYRel")
SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
                    "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"})
_FIX = ("use timm's RandAugment string: 'rand' then sections m<int> n<int> p<float> mstd<float> mmax<int> inc<0|1> "
        "(e.g. rand-m9-mstd0.5-inc1), or '' for off")


# --------------------------------------------------------------------------- config string

@dataclass(frozen=True)
class RandAugmentSpec:
    """What a timm RandAugment string says (``rand_augment_transform``'s defaults where a section is absent)."""

    magnitude: int = 10               # 'm'
    num_layers: int = 2               # 'n': ops per image
    prob: float = 0.5                 # 'p': probability of each chosen op
    magnitude_std: float = 0.0        # 'mstd': Gaussian magnitude noise (inf: uniform in [0, m])
    magnitude_max: float | None = None   # 'mmax': upper clip of the noisy magnitude (None: 10)
    increasing: bool = False          # 'inc': the increasing-severity op set

    @property
    def ops(self) -> tuple[str, ...]:
        return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


def parse(config: str) -> RandAugmentSpec | None:
    """timm's config string (``rand_augment_transform``) -> :class:`RandAugmentSpec`; ``''`` -> None (off).
    Sections are ``<key><number>`` joined by ``-`` after ``rand``; an unknown key raises a one-line ConfigError.
    ``inc`` is read as an integer flag (timm's ``bool(val)`` would read ``inc0`` as on too)."""
    config = config.strip()
    if not config:
        return None
    head, *sections = config.split("-")
    if head != "rand":
        raise ConfigError(f"RandAugment config {config!r} must start with 'rand'; {_FIX}")
    kw: dict[str, float | int | bool | None] = {}
    for sec in sections:
        key, val = re.split(r"(\d.*)", sec, maxsplit=1)[:2] if re.search(r"\d", sec) else (sec, "")
        try:
            if key == "m":
                kw["magnitude"] = int(val)
            elif key == "n":
                kw["num_layers"] = int(val)
            elif key == "p":
                kw["prob"] = float(val)
            elif key == "mstd":
                std = float(val)
                kw["magnitude_std"] = math.inf if std > 100 else std   # timm: > 100 means uniform sampling
            elif key == "mmax":
                kw["magnitude_max"] = int(val)
            elif key == "inc":
                kw["increasing"] = int(val) != 0
            else:
                raise ConfigError(f"RandAugment config {config!r}: unknown section {sec!r}; {_FIX}")
        except ValueError:
            raise ConfigError(f"RandAugment config {config!r}: section {sec!r} has no valid number; {_FIX}") from None
    spec = RandAugmentSpec(**kw)  # type: ignore[arg-type]
    if spec.num_layers < 0 or not 0 <= spec.prob <= 1 or spec.magnitude < 0 or spec.magnitude_std < 0:
        raise ConfigError(f"RandAugment config {config!r}: need n >= 0, 0 <= p <= 1, m >= 0, mstd >= 0; {_FIX}")
    return spec


# --------------------------------------------------------------------------- magnitude -> op argument

def clip_magnitude(magnitude: float, spec: RandAugmentSpec) -> float:
    """timm ``AugmentOp.__call__``: the (noisy) magnitude clipped to [0, mmax or 10]."""
    return max(0.0, min(magnitude, spec.magnitude_max or LEVEL_DENOM))


def level_args(name: str, magnitude: float, negate: bool = False, translate_pct: float = TRANSLATE_PCT
               ) -> tuple[float, ...]:
    """timm ``LEVEL_TO_ARG[name](magnitude)``; ``negate``: the outcome of ``_randomly_negate`` (signed ops)."""
    f = magnitude / LEVEL_DENOM
    sign = -1.0 if negate and name in SIGNED else 1.0
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (sign * (f * 30.0),)
    if name == "Posterize":
        return (int(f * 4),)
    if name == "PosterizeIncreasing":
        return (4 - int(f * 4),)
    if name == "Solarize":
        return (min(256, int(f * 256)),)
    if name == "SolarizeIncreasing":
        return (256 - min(256, int(f * 256)),)
    if name == "SolarizeAdd":
        return (min(128, int(f * 110)),)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (f * 1.8 + 0.1,)
    if name.endswith("Increasing"):   # Color/Contrast/Brightness/SharpnessIncreasing: 1 -/+ 0.9 f, >= 0.1
        return (max(0.1, 1.0 + sign * (f * 0.9)),)
    if name in ("ShearX", "ShearY"):
        return (sign * (f * 0.3),)
    if name in ("TranslateXRel", "TranslateYRel"):
        return (sign * (f * translate_pct),)
    raise ConfigError(f"unknown RandAugment op {name!r}; pick one of {RAND_TRANSFORMS + RAND_INCREASING_TRANSFORMS}")


# --------------------------------------------------------------------------- ops (PIL arithmetic, uint8)

def _u8(img: torch.Tensor) -> torch.Tensor:
    if img.dtype != torch.uint8:
        raise TypeError(f"RandAugment ops take uint8 images, got {img.dtype}")
    return img


def _lut(img: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """``lut``: (256,) or (..., C, 256) integer table (clipped to 0..255 as PIL's ``point`` does)."""
    lut = lut.clamp(0, 255).to(torch.uint8)
    if lut.dim() == 1:
        return lut[img.long()]
    flat = img.flatten(-2).long()
    return torch.gather(lut.expand(*flat.shape[:-1], 256), -1, flat).view_as(img)


def invert(img: torch.Tensor) -> torch.Tensor:
    return 255 - _u8(img)


def posterize(img: torch.Tensor, bits: int) -> torch.Tensor:
    """ImageOps.posterize: keep the ``bits`` high bits; 0 bits gives black (the Pillow of timm's time; Pillow >=
    10 refuses bits = 0, which ``PosterizeIncreasing`` reaches at magnitude 10)."""
    if bits >= 8:
        return _u8(img)
    return _u8(img) & ((~(2 ** (8 - bits) - 1)) & 0xFF)


def solarize(img: torch.Tensor, thresh: int) -> torch.Tensor:
    """ImageOps.solarize: every value >= ``thresh`` becomes 255 - value."""
    return torch.where(_u8(img).int() >= thresh, 255 - img, img)   # int: a uint8 compare would wrap 256 to 0


def solarize_add(img: torch.Tensor, add: int, thresh: int = 128) -> torch.Tensor:
    """timm ``solarize_add``: values below ``thresh`` get ``+ add`` (capped at 255)."""
    return torch.where(_u8(img).int() < thresh, (img.int() + add).clamp(max=255).to(torch.uint8), img)


def _histogram(img: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) uint8 -> (..., C, 256) int64 counts."""
    flat = img.flatten(-2).long()
    return torch.zeros(*flat.shape[:-1], 256, dtype=torch.int64).scatter_add_(-1, flat, torch.ones_like(flat))


def auto_contrast(img: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast (cutoff 0), per channel: lo..hi -> 0..255 by ``int(ix * scale + offset)``."""
    flat = _u8(img).flatten(-2)
    lo, hi = flat.amin(-1).double(), flat.amax(-1).double()
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)   # a true division (255.0 / t is a reciprocal)
    offset = -lo * scale
    ix = torch.arange(256, dtype=torch.float64)
    lut = (ix * scale[..., None] + offset[..., None]).trunc().clamp(0, 255)
    lut = torch.where((hi > lo)[..., None], lut, ix)
    return _lut(img, lut.long())


def equalize(img: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize, per channel: step = (pixels - count of the highest value) // 255,
    lut[i] = (step // 2 + pixels below i) // step; identity when one value only or step = 0."""
    h = _histogram(_u8(img))
    nonzero = h > 0
    last = 255 - nonzero.flip(-1).long().argmax(-1, keepdim=True)          # highest value present
    step = (h.sum(-1, keepdim=True) - h.gather(-1, last)) // 255
    below = h.cumsum(-1) - h                                                # pixels with a value < i
    lut = (step // 2 + below) // step.clamp(min=1)
    keep = (nonzero.sum(-1, keepdim=True) <= 1) | (step == 0)
    return _lut(img, torch.where(keep, torch.arange(256), lut))


def _luma(img: torch.Tensor) -> torch.Tensor:
    """Convert.c rgb2l: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16; an L image is its own luma."""
    if img.shape[-3] == 1:
        return img.int()
    r, g, b = img.int().unbind(-3)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[..., None, :, :]


def blend(degenerate: torch.Tensor, img: torch.Tensor, factor: float) -> torch.Tensor:
    """Image.blend(degenerate, img, factor) (Blend.c): float32 ``in1 + alpha * (in2 - in1)``, clipped, truncated."""
    alpha = torch.tensor(factor, dtype=torch.float32)
    d = degenerate.float()
    return (d + alpha * (img.float() - d)).clamp(0, 255).trunc().to(torch.uint8)


def color(img: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Color: blend with the image's grey (L) version."""
    return blend(_luma(_u8(img)).expand_as(img), img, factor)


def contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Contrast: blend with a flat grey at ``int(mean(L) + 0.5)``."""
    lum = _luma(_u8(img)).flatten(-3)
    mean = (lum.sum(-1, dtype=torch.int64).double() / lum.shape[-1] + 0.5).floor()
    return blend(mean[..., None, None, None].expand_as(img), img, factor)


def brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return blend(torch.zeros_like(_u8(img)), img, factor)


def smooth(img: torch.Tensor) -> torch.Tensor:
    """ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, / 13) as Filter.c computes it: float32 sums row by row
    (next, this, previous) from 0.5, truncated; the border rows and columns keep their values."""
    _u8(img)
    H, W = img.shape[-2:]
    if H < 3 or W < 3:
        return img.clone()
    k1, k5 = torch.tensor(1.0 / 13, dtype=torch.float32), torch.tensor(5.0 / 13, dtype=torch.float32)
    f = img.float()

    def row(dy: int, kc: torch.Tensor) -> torch.Tensor:
        r = f[..., 1 + dy:H - 1 + dy, :]
        return (r[..., :-2] * k1 + r[..., 1:-1] * kc) + r[..., 2:] * k1

    ss = ((torch.tensor(0.5, dtype=torch.float32) + row(1, k1)) + row(0, k5)) + row(-1, k1)
    out = img.clone()
    out[..., 1:-1, 1:-1] = ss.clamp(0, 255).trunc().to(torch.uint8)
    return out


def sharpness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Sharpness: blend with the SMOOTH-filtered image."""
    return blend(smooth(img), img, factor)


def _cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Geometry.c BICUBIC (cubic convolution with a = -1): its coefficients p1..p4, then Horner in ``d``, in float64
    in Pillow's order (on integer taps the coefficients are exact, so they may be formed in integers)."""
    p1 = v2
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    if not p1.is_floating_point():
        p1, p2, p3, p4 = (p.double() for p in (p1, p2, p3, p4))
    return p1 + d * (p2 + d * (p3 + d * p4))


def affine(img: torch.Tensor, matrix: Sequence[float], fill: Sequence[int] = IMAGENET_FILL) -> torch.Tensor:
    """Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor=fill): output pixel (x, y) samples the input at
    (a x' + b y' + c, d x' + e y' + f), x' = x + 0.5 (pixel centres). A sample point outside the input gets
    ``fill``; inside, the 4x4 bicubic taps are clamped to the border (Geometry.c ``bicubic_filter32RGB``)."""
    a, b, c, d, e, f = (float(v) for v in matrix)
    _u8(img)
    C, H, W = img.shape[-3:]
    ys = torch.arange(H, dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(W, dtype=torch.float64)[None, :] + 0.5
    xin = a * xs + b * ys + c
    yin = d * xs + e * ys + f
    inside = (xin >= 0) & (xin < W) & (yin >= 0) & (yin < H)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = xin.floor(), yin.floor()
    dx, dy = xin - x0, yin - y0
    # a tap offset d = 0 everywhere (a shear along the other axis, an integer shift) leaves BICUBIC's p1, the
    # centre tap, exactly: only the needed taps are gathered
    xt = torch.arange(-1, 3) if bool((dx != 0).any()) else torch.zeros(1, dtype=torch.long)
    yt = torch.arange(-1, 3) if bool((dy != 0).any()) else torch.zeros(1, dtype=torch.long)
    cols = (x0.long() + xt[:, None, None]).clamp_(0, W - 1)        # (kx, H, W): columns x0-1 .. x0+2
    rows = (y0.long() + yt[:, None, None]).clamp_(0, H - 1) * W    # (ky, H, W)
    idx = (rows[:, None] + cols[None, :]).flatten()                # (ky, kx, H, W)
    v = img.flatten(-2)[..., idx].view(*img.shape[:-2], len(yt), len(xt), H, W).to(torch.int16)
    out = _cubic(*v.unbind(-3), dx) if len(xt) == 4 else v[..., 0, :, :]          # along x, per tap row
    out = _cubic(*out.unbind(-3), dy) if len(yt) == 4 else out[..., 0, :, :]      # then along y
    out = (out.clamp(0, 255).trunc() if out.is_floating_point() else out).to(torch.uint8)
    fill_t = torch.tensor(list(fill)[:C] if len(fill) >= C else [fill[0]] * C, dtype=torch.uint8)[:, None, None]
    return torch.where(inside, out, fill_t)


def rotate(img: torch.Tensor, degrees: float, fill: Sequence[int] = IMAGENET_FILL) -> torch.Tensor:
    """Image.rotate(degrees, BICUBIC, fillcolor=fill): counter-clockwise about the centre (w/2, h/2), size kept;
    0 / 180 (and 90 / 270 on a square) are exact transposes, as in PIL."""
    H, W = img.shape[-2:]
    angle = degrees % 360.0
    if angle == 0:
        return _u8(img).clone()
    if angle == 180:
        return _u8(img).flip(-1, -2)
    if angle in (90, 270) and H == W:
        return torch.rot90(_u8(img), 1 if angle == 90 else -1, (-2, -1))
    t = -math.radians(angle)
    m = [round(math.cos(t), 15), round(math.sin(t), 15), 0.0, round(-math.sin(t), 15), round(math.cos(t), 15), 0.0]
    cx, cy = W / 2, H / 2
    m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx
    m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy
    return affine(img, m, fill)


def shear_x(img: torch.Tensor, factor: float, fill: Sequence[int] = IMAGENET_FILL) -> torch.Tensor:
    return affine(img, (1, factor, 0, 0, 1, 0), fill)


def shear_y(img: torch.Tensor, factor: float, fill: Sequence[int] = IMAGENET_FILL) -> torch.Tensor:
    return affine(img, (1, 0, 0, factor, 1, 0), fill)


def translate_x_rel(img: torch.Tensor, pct: float, fill: Sequence[int] = IMAGENET_FILL) -> torch.Tensor:
    """timm translate_x_rel: the output at x samples the input at x + pct * width (content moves left for pct > 0)."""
    return affine(img, (1, 0, pct * img.shape[-1], 0, 1, 0), fill)


def translate_y_rel(img: torch.Tensor, pct: float, fill: Sequence[int] = IMAGENET_FILL) -> torch.Tensor:
    return affine(img, (1, 0, 0, 0, 1, pct * img.shape[-2]), fill)


_GEOMETRIC: dict[str, Callable[..., torch.Tensor]] = {
    "Rotate": rotate, "ShearX": shear_x, "ShearY": shear_y, "TranslateXRel": translate_x_rel,
    "TranslateYRel": translate_y_rel}
_PIXEL: dict[str, Callable[..., torch.Tensor]] = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Posterize": posterize,
    "PosterizeIncreasing": posterize, "Solarize": solarize, "SolarizeIncreasing": solarize,
    "SolarizeAdd": solarize_add, "Color": color, "ColorIncreasing": color, "Contrast": contrast,
    "ContrastIncreasing": contrast, "Brightness": brightness, "BrightnessIncreasing": brightness,
    "Sharpness": sharpness, "SharpnessIncreasing": sharpness}


def apply_op(img: torch.Tensor, name: str, args: tuple[float, ...], fill: Sequence[int] = IMAGENET_FILL
             ) -> torch.Tensor:
    """timm ``NAME_TO_OP[name](img, *args)`` on a uint8 ``(..., C, H, W)`` tensor."""
    if name in _GEOMETRIC:
        return _GEOMETRIC[name](img, *args, fill=fill)
    return _PIXEL[name](img, *args)


# --------------------------------------------------------------------------- the transform

class RandAugment:
    """timm ``RandAugment(rand_augment_ops(...), num_layers)`` for one image: ``ra(img) -> img``.

    ``img``: a ``(C, H, W)`` uint8 tensor (a float one in [0, 1] is quantised to uint8 and returned as float).
    Random draws come from ``generator`` (default: torch's global RNG, seeded per DataLoader worker), in timm's
    order: the ``n`` ops (uniform, with replacement), then per op: apply? (``u > p`` skips), the magnitude noise,
    the sign."""

    def __init__(self, config: str | RandAugmentSpec, *, fill: Sequence[int] = IMAGENET_FILL,
                 translate_pct: float = TRANSLATE_PCT) -> None:
        spec = parse(config) if isinstance(config, str) else config
        if spec is None:
            raise ConfigError("RandAugment('') is off: build none (the empty config string means no RandAugment)")
        self.spec, self.fill, self.translate_pct = spec, tuple(int(v) for v in fill), float(translate_pct)

    def magnitude(self, generator: torch.Generator | None = None) -> float:
        """One op's magnitude: m + mstd * N(0, 1) (or U(0, m) for mstd = inf), clipped (timm AugmentOp)."""
        m, std = float(self.spec.magnitude), self.spec.magnitude_std
        if std == math.inf:
            m = float(torch.rand((), generator=generator)) * m
        elif std > 0:
            m = m + std * float(torch.randn((), generator=generator))
        return clip_magnitude(m, self.spec)

    def plan(self, generator: torch.Generator | None = None) -> list[tuple[str, tuple[float, ...]]]:
        """The ops one image gets, with their arguments: ``n`` ops uniform with replacement, each kept with
        probability ``p``, its magnitude noised and clipped, its sign drawn (the draws of timm's ``__call__``)."""
        ops, out = self.spec.ops, []
        for k in torch.randint(len(ops), (self.spec.num_layers,), generator=generator).tolist():
            if self.spec.prob < 1.0 and float(torch.rand((), generator=generator)) > self.spec.prob:
                continue
            name = ops[k]
            mag = self.magnitude(generator)
            negate = name in SIGNED and float(torch.rand((), generator=generator)) > 0.5
            out.append((name, level_args(name, mag, negate, self.translate_pct)))
        return out

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        as_float = img.is_floating_point()
        x = (img * 255).round().clamp(0, 255).to(torch.uint8) if as_float else img
        for name, args in self.plan(generator):
            x = apply_op(x, name, args, self.fill)
        return x.float() / 255.0 if as_float else x

    def __repr__(self) -> str:
        return f"RandAugment({self.spec})"


__all__ = ["RandAugment", "RandAugmentSpec", "parse", "clip_magnitude", "level_args", "apply_op", "affine",
           "rotate", "shear_x", "shear_y", "translate_x_rel", "translate_y_rel", "auto_contrast", "equalize",
           "invert", "posterize", "solarize", "solarize_add", "color", "contrast", "brightness", "sharpness",
           "smooth", "blend", "IMAGENET_FILL", "RAND_TRANSFORMS", "RAND_INCREASING_TRANSFORMS"]

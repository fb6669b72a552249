"""Image tokens -> pixels at full scale: the VQGAN decoder of the AR model's image tokenizer.

Lumina-mGPT tokenises images with Chameleon's VQGAN (``ckpts/chameleon/tokenizer/vqgan.yaml`` +
``vqgan.ckpt``; 8192 codes, 16x down-sampling, so 768 px = 48 x 48 tokens). Decoding is
``decoder(post_quant_conv(codebook[codes]))`` with the taming-transformers decoder (Esser et al., 2021,
§3.1: conv_in, a middle ResNet-attention-ResNet block, ``num_res_blocks + 1`` ResNet blocks per level
with nearest x2 up-sampling between levels, GroupNorm-swish-conv out). Written here from that
architecture; the state-dict names are the checkpoint's, so ``vqgan.ckpt`` loads without renaming.
Pixels come out in [-1, 1] and are quantised to uint8 like the repo's saved PNGs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError, CorruptDataError, DataNotFoundError

FILES = ("vqgan.yaml", "vqgan.ckpt")


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 q/k/v/out projections."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = _norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (f(n).reshape(b, c, h * w).transpose(1, 2) for f in (self.q, self.k, self.v))
        o = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(o.transpose(1, 2).reshape(b, c, h, w))


class Upsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, ch: int, out_ch: int, ch_mult: list[int], num_res_blocks: int, attn_resolutions: list[int],
                 resolution: int, z_channels: int, **_: Any) -> None:
        super().__init__()
        levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = (ResnetBlock(block_in, block_in), AttnBlock(block_in),
                                                               ResnetBlock(block_in, block_in))
        ups: list[nn.Module] = []
        for level in reversed(range(levels)):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if res in attn_resolutions:
                    up.attn.append(AttnBlock(block_in))
            if level != 0:
                up.upsample = Upsample(block_in)
                res *= 2
            ups.insert(0, up)  # indexed by level, as in the checkpoint
        self.up = nn.ModuleList(ups)
        self.norm_out, self.conv_out = _norm(block_in), nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[i](h)
            if level != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQDecoder(nn.Module):
    """Codebook lookup, ``post_quant_conv`` and the decoder of a taming/Chameleon ``VQModel``."""

    def __init__(self, n_embed: int, embed_dim: int, ddconfig: dict[str, Any]) -> None:
        super().__init__()
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(n_embed, embed_dim)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        self.decoder = Decoder(**ddconfig)
        self.n_embed = n_embed

    @torch.no_grad()
    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` (B, h, w) long -> uint8 images (B, 3, f h, f w), f = 2^(levels-1) (16 for Chameleon);
        as the repo saves them: clamp to [-1, 1], (x + 1) / 2 * 255, truncated to uint8."""
        z = self.quantize.embedding(codes).permute(0, 3, 1, 2)
        x = self.decoder(self.post_quant_conv(z)).float().clamp(-1, 1)
        return ((x + 1) / 2 * 255).to(torch.uint8)


def load_vq_decoder(folder: Path, device: torch.device) -> VQDecoder:
    """The decoder half of ``vqgan.ckpt`` with the architecture of ``vqgan.yaml`` (model.params)."""
    import yaml

    for f in FILES:
        if not (folder / f).is_file():
            raise DataNotFoundError(f"{folder / f} missing; copy Chameleon's tokenizer/vqgan.yaml and vqgan.ckpt "
                                    f"(Lumina-mGPT ckpts/chameleon/tokenizer/) there")
    try:
        params = yaml.safe_load((folder / "vqgan.yaml").read_text())["model"]["params"]
        dec = VQDecoder(int(params["n_embed"]), int(params["embed_dim"]), dict(params["ddconfig"]))
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise CorruptDataError(f"{folder / 'vqgan.yaml'} is not a VQGAN config ({err}); copy it again") from None
    try:
        ckpt = torch.load(folder / "vqgan.ckpt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a Lightning checkpoint may pickle more than tensors
        ckpt = torch.load(folder / "vqgan.ckpt", map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    wanted = {k: v for k, v in state.items() if k.split(".")[0] in ("decoder", "post_quant_conv", "quantize")}
    missing, _ = dec.load_state_dict(wanted, strict=False)
    if missing:
        raise CorruptDataError(f"{folder / 'vqgan.ckpt'} lacks {len(missing)} decoder weights (e.g. {missing[0]}); "
                               f"it does not match vqgan.yaml")
    return dec.to(device).eval()


def code_map(kind: str, lo: int, hi: int, tokenizer: Any | None) -> torch.Tensor:
    """VQ code of each sampled offset k (token id lo + k): ``offset`` (code = k) or ``chameleon`` (the
    tokenizer's ``IMGIMG<letters>`` names, letters A..J = digits 0..9, as in Chameleon's vocabulary)."""
    if kind == "offset":
        return torch.arange(hi - lo)
    if kind != "chameleon":
        raise ConfigError(f"image_codes={kind!r}: use offset or chameleon")
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    digits = {chr(ord("A") + i): str(i) for i in range(10)}
    out = torch.full((hi - lo,), -1, dtype=torch.long)
    for name, tid in vocab.items():
        if name.startswith("IMGIMG") and lo <= tid < hi:
            out[tid - lo] = int("".join(digits.get(c, c) for c in name[len("IMGIMG"):-1]))
    if (out < 0).any():
        raise ConfigError(f"image_codes=chameleon: {int((out < 0).sum())} ids in [image_token_lo, image_token_hi) = "
                          f"[{lo}, {hi}) are not IMGIMG tokens of the tokenizer; set the range from the tokenizer")
    return out


def write_fixture(folder: Path, n_embed: int = 8192) -> None:
    """A tiny random VQGAN in Chameleon's file layout (dry runs and rehearsals; stand-in)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    dd = {"double_z": False, "z_channels": 4, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
          "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    (folder / "vqgan.yaml").write_text(yaml.safe_dump(
        {"model": {"target": "VQModel", "params": {"n_embed": n_embed, "embed_dim": 4, "ddconfig": dd}}}))
    torch.manual_seed(0)
    dec = VQDecoder(n_embed, 4, dd)
    torch.save({"state_dict": dec.state_dict()}, folder / "vqgan.ckpt")

"""Backbones for happy_cgcd: the CPU MLP (spec §6) and DINO ViT-B/16 on the suite's ViT (spec §3/§5).

DINO weights cannot be downloaded at run time: the full config names the checkpoint
(``dino_vitbase16_pretrain.pth``, the file published by facebookresearch/dino) and it is read from the data
root. Its timm-style keys map one-to-one onto :class:`suite.models.ViT` (``patch_embed.proj`` → ``patch``,
``cls_token`` → ``cls``, ``pos_embed`` → ``pos``; blocks, ``norm`` identical; qkv packed the same way).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from suite.errors import CorruptDataError, DataNotFoundError
from suite.models import MLP, ViT

DINO_FILE = "pretrained/dino_vitbase16_pretrain.pth"
DINO_HOW = ("download dino_vitbase16_pretrain.pth from the facebookresearch/dino README "
            "(ViT-B/16, backbone only) into <data root>/pretrained/")
_RENAME = {"patch_embed.proj.weight": "patch.weight", "patch_embed.proj.bias": "patch.bias",
           "cls_token": "cls", "pos_embed": "pos"}


class ViTFeatures(nn.Module):
    """ViT-B/16 returning the (final-normed) CLS feature; ``grad_from_block``: earlier blocks frozen."""

    def __init__(self, image_size: int = 224, grad_from_block: int = 11) -> None:
        super().__init__()
        self.vit = ViT(image_size=image_size, patch_size=16, num_classes=1, dim=768, depth=12, heads=12)
        self.vit.head = nn.Identity()
        for m in self.vit.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = 1e-6  # DINO/timm LayerNorm eps
        self.grad_from_block = grad_from_block
        self.freeze()

    def freeze(self) -> None:
        for name, p in self.vit.named_parameters():
            blk = int(name.split(".")[1]) if name.startswith("blocks.") else -1
            p.requires_grad = blk >= self.grad_from_block or name.startswith("norm.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.features(x)


def dino_to_suite(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a DINO ViT checkpoint's keys to :class:`suite.models.ViT`'s (the head is dropped)."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.").removeprefix("backbone.")
        if k.startswith("head."):
            continue
        out[_RENAME.get(k, k)] = v
    return out


def load_dino(model: ViTFeatures, path: Path) -> None:
    """Load DINO ViT-B/16 weights (positional embeddings interpolated if the image size differs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - foreign or truncated file
        raise CorruptDataError(f"{path} is not a readable torch checkpoint ({type(e).__name__}); "
                               f"re-download it: {DINO_HOW}") from None
    state = dino_to_suite(state.get("state_dict", state) if isinstance(state, dict) else state)
    pos = state.get("pos")
    want = model.vit.pos.shape
    if pos is not None and pos.shape != want:
        side_old, side_new = int((pos.shape[1] - 1) ** 0.5), int((want[1] - 1) ** 0.5)
        grid = pos[:, 1:].reshape(1, side_old, side_old, -1).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=(side_new, side_new), mode="bicubic", align_corners=False)
        state["pos"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, side_new ** 2, -1)], 1)
    missing, unexpected = model.vit.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith("head.")]
    if missing or unexpected:
        raise CorruptDataError(f"{path}: keys do not match ViT-B/16 (missing {missing[:3]}, unexpected "
                               f"{unexpected[:3]}); use the DINO ViT-B/16 backbone checkpoint")


def build_backbone(name: str, in_dim: int, hidden: tuple[int, ...], feat_dim: int, image_size: int,
                   weights: Path | None, dry_run: bool) -> tuple[nn.Module, int, str]:
    """(backbone, feature dim, description of the weights used)."""
    if name == "mlp":
        return MLP(in_dim, list(hidden), feat_dim, act="relu"), feat_dim, "random init, pre-trained in the job"
    if name == "vit_b16_dino":
        m = ViTFeatures(image_size)
        if weights is not None and weights.exists():
            load_dino(m, weights)
            return m, 768, f"DINO ViT-B/16 from {weights}"
        if dry_run:
            return m, 768, "RANDOM ViT-B/16 (dry run: DINO weights absent)"
        raise DataNotFoundError(f"DINO weights not found at {weights}; {DINO_HOW}")
    raise DataNotFoundError(f"unknown backbone {name!r}; use 'mlp' or 'vit_b16_dino'")

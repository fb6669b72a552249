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
    """ViT-B/16 returning the (final-normed) CLS feature; ``grad_from_block``: earlier blocks and the final norm
    frozen."""

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
        """Train blocks ``grad_from_block``.. only. As in the official name filter (``'block' in name``), the
        patch embedding, CLS token, positional embedding and the final ``norm`` stay frozen."""
        for name, p in self.vit.named_parameters():
            blk = int(name.split(".")[1]) if name.startswith("blocks.") else -1
            p.requires_grad = blk >= self.grad_from_block

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


def write_dino_fixture(folder: Path, file: str = Path(DINO_FILE).name, image_size: int = 224) -> None:
    """A stand-in for ``dino_vitbase16_pretrain.pth`` in its published format: a plain state dict with DINO's
    (timm) key names and ViT-B/16 shapes at 224 px (``pos_embed`` (1, 197, 768), ...), random values.
    Every tensor is a view into one shared random buffer (torch.save stores a shared storage once), so the
    file is ~10 MB instead of the checkpoint's 343 MB; loading copies the values out as from the real file."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in ViT(image_size=image_size, patch_size=16, num_classes=1, dim=768, depth=12,
                                              heads=12).state_dict().items() if not k.startswith("head.")}
    back = {v: k for k, v in _RENAME.items()}
    g = torch.Generator().manual_seed(0)
    spare = 1 << 16
    store = torch.randn(max(s.numel() for s in shapes.values()) + spare, generator=g) * 0.02
    offsets = torch.randint(spare, (len(shapes),), generator=g).tolist()
    state = {back.get(k, k): store[o:o + s.numel()].view(s) for (k, s), o in zip(shapes.items(), offsets)}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / file)


def dino_weights(ctx, weights: str) -> Path:  # noqa: ANN001
    """The DINO checkpoint ``<data root>/<weights>`` (a published-format stand-in in dry runs and rehearsals)."""
    from suite.data.external import locate

    rel = Path(weights)
    folder, _ = locate(ctx, "dino-vitb16", str(rel.parent), [rel.name], DINO_HOW,
                       fixture=lambda f: write_dino_fixture(f, rel.name))
    return folder / rel.name


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
        raise DataNotFoundError(f"DINO weights not found at {weights}; {DINO_HOW}")
    raise DataNotFoundError(f"unknown backbone {name!r}; use 'mlp' or 'vit_b16_dino'")

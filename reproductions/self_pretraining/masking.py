"""The denoising objectives of self-pretraining (§3 step 1 of the spec).

- Token tasks: masked language modelling. Each real (non-pad) position is masked i.i.d. with
  probability ``p``; masked inputs are replaced by the ``<mask>`` id and the targets of unmasked
  (and pad) positions are set to ``IGNORE`` (-100), so the cross-entropy counts masked positions only.
- Pixel tasks: the input becomes two channels ``[value * (1 - m), m]`` (the value with masked
  pixels zeroed, and the mask indicator). The loss is the task's ``lm_loss`` (official
  ``*-lra-<task>-mlm.yaml``): ``'l1'`` = L1 on the masked pixels only (Image, ``lm_loss: l1``,
  ``masked_mae``), or ``'ce'`` = cross-entropy over the 256 intensity classes of the masked pixels
  (Pathfinder, Path-X, ``lm_loss: ce``: the official ``PathFinderLMDataset`` target is
  ``(pixel * 255).long()``, -100 at unmasked pixels, and the decoder has 256 outputs).

``loss_on_all_positions=True`` is the TEST-ONLY wrong wiring of spec §6 (targets kept everywhere).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from suite.errors import ConfigError

IGNORE = -100


def bernoulli_mask(shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """i.i.d. Bernoulli(p) mask (True = masked)."""
    if not 0.0 < p < 1.0:
        raise ConfigError(f"mask probability must be in (0, 1), got {p}; use e.g. mask_p=0.5")
    u = torch.rand(shape, generator=generator, device="cpu" if generator is not None else device)
    return (u < p).to(device) if device is not None else (u < p)


def mask_tokens(x: torch.Tensor, p: float, mask_id: int, pad_id: int | None = 0,
                generator: torch.Generator | None = None,
                loss_on_all_positions: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MLM corruption of token ids ``x`` (..., L): returns ``(inputs, targets, masked)``.

    ``masked`` never includes padding; ``inputs`` = ``mask_id`` where masked, else ``x``;
    ``targets`` = ``x`` where masked, else ``IGNORE`` (pad stays ``IGNORE`` even in the broken mode).
    """
    if pad_id is not None and mask_id == pad_id:
        raise ConfigError(f"<mask> id {mask_id} equals <pad> id; give <mask> its own id (spec §7)")
    x = x.long()
    real = torch.ones_like(x, dtype=torch.bool) if pad_id is None else x != pad_id
    m = bernoulli_mask(x.shape, p, generator, x.device) & real
    inputs = torch.where(m, torch.full_like(x, mask_id), x)
    keep = real if loss_on_all_positions else m
    targets = torch.where(keep, x, torch.full_like(x, IGNORE))
    return inputs, targets, m


def mask_pixels(x: torch.Tensor, p: float, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel corruption of real values ``x`` (B, L): ``(inputs (B, L, 2), targets (B, L), masked)``.

    Channel 0 = ``x * (1 - m)``, channel 1 = ``m`` (the repo's masked-image wrapper)."""
    m = bernoulli_mask(x.shape, p, generator, x.device)
    mf = m.to(x.dtype)
    return torch.stack([x * (1 - mf), mf], -1), x, m


PIXEL_CLASSES = 256  # the official pixel CE target: intensity 0..255 (``d_output = 256`` of ``PathFinderLM``)


def pixel_classes(x: torch.Tensor) -> torch.Tensor:
    """Intensity class 0..255 of pixels ``x`` in [0, 1] (the official ``(sample * 255).long()`` of a
    ``ToTensor`` image, i.e. the 8-bit value; rounded, so a float ``k/255`` maps back to ``k``)."""
    return (x.float() * 255.0).round().clamp(0, PIXEL_CLASSES - 1).long()


def pixel_ce_targets(x: torch.Tensor, masked: torch.Tensor, loss_on_all_positions: bool = False) -> torch.Tensor:
    """CE targets of a masked pixel batch: the intensity class at masked pixels, ``IGNORE`` elsewhere
    (official ``target * mask - 100 * (1 - mask)``; kept everywhere in the broken mode)."""
    cls = pixel_classes(x)
    return cls if loss_on_all_positions else torch.where(masked, cls, torch.full_like(cls, IGNORE))


def masked_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over positions whose target is not ``IGNORE``."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE)


def masked_l1(pred: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
              loss_on_all_positions: bool = False) -> torch.Tensor:
    """L1 regression on masked pixels only (all pixels in the broken mode)."""
    err = (pred.float() - targets.float()).abs()
    if loss_on_all_positions:
        return err.mean()
    w = masked.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


__all__ = ["IGNORE", "PIXEL_CLASSES", "bernoulli_mask", "mask_tokens", "mask_pixels", "pixel_classes",
           "pixel_ce_targets", "masked_ce", "masked_l1"]

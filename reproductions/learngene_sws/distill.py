"""Teacher-distillation loss (Hinton et al. 2015; DeiT's soft distillation), shareable by other papers.

loss = (1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))   (spec §3, Stage 1)
The released SWS Aux-Net uses alpha = 1.0 (pure soft distillation), T = 1.0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None,
                 alpha: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """Batch-mean soft distillation; ``targets`` is needed only when ``alpha < 1``."""
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits.detach() / t, -1),
                  reduction="batchmean", log_target=True) * (t * t)
    if alpha >= 1.0:
        return kl
    if targets is None:
        raise ValueError("distill_loss: alpha < 1 needs targets for the CE term")
    return (1.0 - alpha) * F.cross_entropy(student_logits, targets) + alpha * kl

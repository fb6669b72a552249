"""AR "image" models behind the black-box interface of :mod:`reproductions.sjd.method` (spec §6).

- :class:`NGramModel`: an exact order-n Markov chain; probabilities in closed form (model (a)).
- :class:`GridMarkovModel`: p(x_ij | left, above) fitted by counting on procedural images.
- :class:`LMProbModel`: a causal transformer (suite ``TransformerLM``) on 8x8 token images (model (b)).
- :class:`HFProbModel`: a Hugging Face causal LM with CFG over an image-token id range (full scale).
Every model returns *processed* probabilities: top-k and temperature applied once (pitfall §7).
"""
from __future__ import annotations

from typing import Any

import torch


def process(logits: torch.Tensor, top_k: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """Processed next-token distribution: logits / temperature, keep the top-k, softmax (§3)."""
    z = logits / temperature
    if 0 < top_k < z.shape[-1]:
        kth = z.topk(top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    return torch.softmax(z, dim=-1)


class NGramModel:
    """Order-``n`` Markov chain over ``vocab`` tokens; ``table[c_1..c_{n-1}]`` is a processed row.

    Context slots before the sequence start hold ``bos = vocab``.
    """

    def __init__(self, table: torch.Tensor) -> None:
        self.vocab = table.shape[-1]
        self.order = table.dim()
        self.bos = self.vocab
        self.table = table

    @classmethod
    def random(cls, vocab: int, order: int, gen: torch.Generator, peak: float = 3.0, top_k: int = 0,
               temperature: float = 1.0) -> "NGramModel":
        """Random peaked n-gram: logits ~ peak * N(0, 1), then processed."""
        logits = peak * torch.randn((vocab + 1,) * (order - 1) + (vocab,), generator=gen, dtype=torch.float64)
        return cls(process(logits, top_k, temperature))

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        pad = torch.full((seq.shape[0], self.order - 2), self.bos, dtype=torch.long)
        s = torch.cat([pad, seq], 1)
        ctx = [s[:, i:i + seq.shape[1]] for i in range(self.order - 1)]
        return self.table[tuple(ctx)]


def blob_stripe_images(n: int, side: int, colours: int, gen: torch.Generator) -> torch.Tensor:
    """Procedural ``side`` x ``side`` token images (spec §6 model (b)): half blobs, half stripes.

    A blob image is a smooth random field (sum of Gaussian bumps) quantised to ``colours`` levels;
    a stripe image is a quantised sinusoid with random angle, frequency and phase. (n, side*side).
    """
    yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    k = 3
    cx, cy = torch.rand(n, k, 1, 1, generator=gen) * side, torch.rand(n, k, 1, 1, generator=gen) * side
    w = torch.randn(n, k, 1, 1, generator=gen)
    s = 1.0 + 2.0 * torch.rand(n, k, 1, 1, generator=gen)
    blob = (w * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s ** 2))).sum(1)
    ang = torch.rand(n, 1, 1, generator=gen) * torch.pi
    freq = 0.4 + 0.8 * torch.rand(n, 1, 1, generator=gen)
    ph = torch.rand(n, 1, 1, generator=gen) * 2 * torch.pi
    stripe = torch.sin(freq * (xx * torch.cos(ang) + yy * torch.sin(ang)) + ph)
    field = torch.where(torch.arange(n)[:, None, None] % 2 == 0, blob, stripe)
    lo, hi = field.amin((1, 2), keepdim=True), field.amax((1, 2), keepdim=True)
    img = ((field - lo) / (hi - lo + 1e-8) * colours).long().clamp(max=colours - 1)
    return img.reshape(n, side * side)


class GridMarkovModel:
    """p(x_t | left neighbour, upper neighbour) on a ``side``-wide raster, counted with add-alpha."""

    def __init__(self, table: torch.Tensor, side: int) -> None:
        self.vocab, self.side, self.bos, self.table = table.shape[-1], side, table.shape[-1], table

    @classmethod
    def fit(cls, images: torch.Tensor, side: int, vocab: int, alpha: float = 0.5, top_k: int = 0,
            temperature: float = 1.0) -> "GridMarkovModel":
        n, t = images.shape
        idx = torch.arange(t)
        left = torch.where(idx % side > 0, images[:, (idx - 1).clamp(min=0)], vocab)
        up = torch.where(idx >= side, images[:, (idx - side).clamp(min=0)], vocab)
        counts = torch.zeros((vocab + 1) * (vocab + 1) * vocab, dtype=torch.float64)
        counts.index_add_(0, ((left * (vocab + 1) + up) * vocab + images).reshape(-1),
                          torch.ones(n * t, dtype=torch.float64))
        logits = (counts.reshape(vocab + 1, vocab + 1, vocab) + alpha).log()
        return cls(process(logits, top_k, temperature), side)

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        b, t = seq.shape  # output column j predicts image token j
        j = torch.arange(t)
        left = torch.where(j % self.side > 0, seq[:, j.clamp(max=t - 1)], self.bos)
        up_col = (j - self.side + 1).clamp(min=0)
        up = torch.where(j >= self.side, seq[:, up_col], self.bos)
        return self.table[left, up]


class LMProbModel:
    """A causal ``TransformerLM`` with input vocabulary ``vocab + 1`` (last id = start token)."""

    def __init__(self, lm: Any, vocab: int, top_k: int = 0, temperature: float = 1.0) -> None:
        self.lm, self.vocab, self.bos, self.top_k, self.temperature = lm, vocab, vocab, top_k, temperature

    @torch.no_grad()
    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        dev = next(self.lm.parameters()).device
        logits = self.lm(seq.to(dev))[..., : self.vocab].float()
        return process(logits, self.top_k, self.temperature).cpu()


class HFProbModel:
    """A Hugging Face causal LM decoding image tokens ``[lo, hi)`` after a text prompt, with CFG.

    CFG (§3): logits = u + s * (c - u) from a conditional (prompt) and an unconditional branch that
    receive the same image tokens (the batch is doubled, pitfall §7); then top-k and temperature.
    Batch size 1 (the paper's latency protocol); ``seq[:, 0]`` stands for the prompt.
    """

    def __init__(self, model: Any, prompt_ids: torch.Tensor, uncond_ids: torch.Tensor, lo: int, hi: int,
                 cfg_scale: float = 3.0, top_k: int = 2000, temperature: float = 1.0) -> None:
        self.model, self.lo, self.hi = model, lo, hi
        self.vocab, self.bos = hi - lo, hi - lo
        self.prompt_ids, self.uncond_ids = prompt_ids.long(), uncond_ids.long()
        self.cfg_scale, self.top_k, self.temperature = cfg_scale, top_k, temperature

    @torch.no_grad()
    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        img = seq[:, 1:] + self.lo
        cond = torch.cat([self.prompt_ids.expand(seq.shape[0], -1), img], 1)
        unc = torch.cat([self.uncond_ids.expand(seq.shape[0], -1), img], 1)
        c = self.model(input_ids=cond.to(dev)).logits[:, self.prompt_ids.shape[-1] - 1:, self.lo:self.hi]
        if self.cfg_scale != 1.0:
            u = self.model(input_ids=unc.to(dev)).logits[:, self.uncond_ids.shape[-1] - 1:, self.lo:self.hi]
            c = u + self.cfg_scale * (c - u)
        return process(c.float(), self.top_k, self.temperature).cpu()


def train_image_lm(images: torch.Tensor, vocab: int, max_len: int, steps: int, ctx: Any, dim: int = 64,
                   depth: int = 2, heads: int = 4, batch_size: int = 64, lr: float = 3e-3) -> Any:
    """Model (b) of spec §6: a tiny causal TransformerLM trained with the suite's ``fit`` on token
    images prefixed with the start token ``vocab``."""
    import torch.nn.functional as F

    from suite.models import TransformerLM
    from suite.train import TrainConfig, fit

    lm = TransformerLM(vocab + 1, max_len=max_len, dim=dim, depth=depth, heads=heads)
    seqs = torch.cat([torch.full((images.shape[0], 1), vocab, dtype=torch.long), images], 1)

    def loss(m: Any, b: torch.Tensor) -> torch.Tensor:
        logits = m(b[:, :-1])[..., :vocab]
        return F.cross_entropy(logits.reshape(-1, vocab), b[:, 1:].reshape(-1))

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer="adamw", schedule="cosine",
                      warmup_steps=min(100, steps // 10), log_every=max(1, steps // 5), bf16=False)
    res = fit(lm, loss, seqs, cfg, ctx=ctx, name="image_lm")
    lm.eval()
    lm.final_loss = res.history[-1]["loss"] if res.history else float("nan")
    return lm

"""AR "image" models behind the black-box interface of :mod:`reproductions.sjd.method` (spec §6).

- :class:`NGramModel`: an exact order-n Markov chain; probabilities in closed form (model (a)).
- :class:`GridMarkovModel`: p(x_ij | left, above) fitted by counting on procedural images.
- :class:`LMProbModel`: a causal transformer (suite ``TransformerLM``) on 8x8 token images (model (b)).
- :class:`HFProbModel`: a Hugging Face causal LM with CFG over an image-token id range (full scale).
Every model returns *processed* probabilities: top-k and temperature applied once (pitfall §7).
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

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

    def __call__(self, seq: torch.Tensor, start: int = 0) -> torch.Tensor:
        pad = torch.full((seq.shape[0], self.order - 2), self.bos, dtype=torch.long)
        s = torch.cat([pad, seq], 1)
        ctx = [s[:, i:i + seq.shape[1]] for i in range(self.order - 1)]
        return self.table[tuple(ctx)][:, start:]


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

    def __call__(self, seq: torch.Tensor, start: int = 0) -> torch.Tensor:
        b, t = seq.shape  # output column j predicts image token j
        j = torch.arange(t)
        left = torch.where(j % self.side > 0, seq[:, j.clamp(max=t - 1)], self.bos)
        up_col = (j - self.side + 1).clamp(min=0)
        up = torch.where(j >= self.side, seq[:, up_col], self.bos)
        return self.table[left, up][:, start:]


class LMProbModel:
    """A causal ``TransformerLM`` with input vocabulary ``vocab + 1`` (last id = start token)."""

    def __init__(self, lm: Any, vocab: int, top_k: int = 0, temperature: float = 1.0) -> None:
        self.lm, self.vocab, self.bos, self.top_k, self.temperature = lm, vocab, vocab, top_k, temperature

    @torch.no_grad()
    def __call__(self, seq: torch.Tensor, start: int = 0) -> torch.Tensor:
        dev = next(self.lm.parameters()).device
        logits = self.lm(seq.to(dev))[..., : self.vocab].float()
        return process(logits, self.top_k, self.temperature).cpu()[:, start:]


class HFProbModel:
    """A Hugging Face causal LM decoding image tokens ``[lo, hi)`` after a text prompt, with CFG and a KV cache.

    CFG (§3): logits = u + s * (c - u) from a conditional (prompt) and an unconditional branch that
    receive the same image tokens (pitfall §7); then top-k and temperature. Batch size 1 (the paper's
    protocol); ``seq[:, 0]`` stands for the prompt, ``seq[:, 1:]`` are image-token offsets (id - lo).

    The model's own sequence per branch is ``prompt + prefix_ids + image ids``, with ``row_end_id``
    inserted after every ``row_len`` image tokens (Lumina-mGPT's row separators) when both are set;
    those inserted tokens are fixed, so the image-token distribution the samplers see is unchanged.

    KV cache (``kv_cache=True``): each branch keeps the keys/values of the model tokens it has seen.
    A call keeps the longest cached prefix that agrees with the new sequence (and lies before the
    first position whose logits are asked for), crops the rest, and forwards only the new tokens.
    For SJD this is Alg. 1's bookkeeping: the accepted prefix x_{1:a} stays cached, the rejected
    window drafts after the first mismatch are cut (the repo's ``delete_false_key_value``), and the
    next pass forwards only [resampled token, new window]. Keys/values at a position depend on the
    tokens up to it only (causal attention), so cached and uncached passes give the same logits.
    ``tokens_forwarded`` counts model-token computations summed over branches.
    """

    def __init__(self, model: Any, prompt_ids: torch.Tensor, uncond_ids: torch.Tensor, lo: int, hi: int,
                 cfg_scale: float = 3.0, top_k: int = 2000, temperature: float = 1.0, *, kv_cache: bool = True,
                 prefix_ids: Sequence[int] = (), row_len: int = 0, row_end_id: int = -1) -> None:
        self.model, self.lo, self.hi = model, lo, hi
        self.vocab, self.bos = hi - lo, hi - lo
        pre = torch.tensor(list(prefix_ids), dtype=torch.long)
        self.branches = [torch.cat([prompt_ids.long().reshape(-1), pre])]
        if cfg_scale != 1.0:
            self.branches.append(torch.cat([uncond_ids.long().reshape(-1), pre]))
        self.cfg_scale, self.top_k, self.temperature = cfg_scale, top_k, temperature
        self.kv_cache = kv_cache
        self.row_len, self.row_end_id = (row_len, row_end_id) if row_len > 0 and row_end_id >= 0 else (0, -1)
        self.tokens_forwarded = 0
        # the cache argument was renamed past_key_values -> cache in transformers 5
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.reset()

    def reset(self) -> None:
        """Forget the cache (each sampler pays its own prefill)."""
        self._cache: list[Any] = [None] * len(self.branches)
        self._cached: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long) for _ in self.branches]

    def _model_ids(self, prompt: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        """``prompt + image ids`` (1-D) with a row-end token after every complete row."""
        ids = img + self.lo
        if self.row_len:
            n = ids.numel()
            pos = torch.arange(n) + torch.arange(n) // self.row_len  # image token j sits at j + j // row_len
            out = torch.full((n + n // self.row_len,), self.row_end_id, dtype=torch.long)
            out[pos] = ids
            ids = out
        return torch.cat([prompt, ids])

    def _logit_pos(self, prompt_len: int, t: torch.Tensor) -> torch.Tensor:
        """Model position whose logits predict image token ``t``."""
        return prompt_len - 1 + t + (t // self.row_len if self.row_len else 0)

    def _branch_logits(self, b: int, img: torch.Tensor, start: int) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        prompt = self.branches[b]
        ids = self._model_ids(prompt, img)
        want = self._logit_pos(prompt.numel(), torch.arange(start, img.numel() + 1))
        need = int(want[0])  # inputs from here on must be forwarded
        keep, past = 0, None
        if self.kv_cache and self._cache[b] is not None:
            old = self._cached[b]
            n = min(old.numel(), ids.numel())
            diff = torch.nonzero(old[:n] != ids[:n])
            common = int(diff[0, 0]) if diff.numel() else n
            keep = min(common, need)
            if keep > 0:
                past = self._cache[b]
                cut = past.get_seq_length() - keep
                if cut > 0:
                    past.crop(-cut)  # roll back rejected drafts (pitfall §7)
        out = self.model(input_ids=ids[keep:][None].to(dev), use_cache=self.kv_cache, **{self._cache_kw: past})
        self.tokens_forwarded += ids.numel() - keep
        if self.kv_cache:
            self._cache[b] = out["cache"] if "cache" in out else out["past_key_values"]
            self._cached[b] = ids
        z = out.logits[0, (want - keep).to(dev), self.lo:self.hi]
        return z if z.dtype == torch.float64 else z.float()  # CFG and processing in float32 (bf16 models)

    @torch.no_grad()
    def __call__(self, seq: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Processed probabilities (1, T - start, V) for image tokens ``start .. T-1`` of ``seq`` (1, T)."""
        if seq.shape[0] != 1:
            raise ValueError("HFProbModel decodes at batch size 1 (spec §5, pitfall §7)")
        img = seq[0, 1:]
        c = self._branch_logits(0, img, start)
        if len(self.branches) > 1:
            u = self._branch_logits(1, img, start)
            c = u + self.cfg_scale * (c - u)
        return process(c, self.top_k, self.temperature).cpu()[None]


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

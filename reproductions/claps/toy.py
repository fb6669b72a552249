"""The two CPU black boxes of spec §6.

(A) ``Stub``: an analytic task LM. Token embeddings have a family structure (centres + noise); each token
    has an influence weight a_v ~ Pareto; class logits = W x; the correct class gets + sum_{v in prompt} a_v g(x).
(B) ``TinyTask``: a tiny frozen transformer classifier over [prompt slot][sentence][MARK] -> verbalizer,
    trained (suite.train.fit) on a synthetic sentiment task in which ``n_key`` of the ``n_instr``
    instruction tokens decide the label mapping: with a key token in the random prompt prefix the target is
    the true sentiment's verbalizer, without one it is always the first verbalizer. A good prompt must therefore
    contain a key token, which ClaPS has to discover through black-box queries only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from suite.models import TransformerLM
from suite.spec import DatasetRef
from suite.train import TrainConfig, fit

from .method import EMPTY

STUB_REF = DatasetRef("claps-analytic-stub", "stand-in")
TINY_REF = DatasetRef("claps-synthetic-sentiment", "stand-in")


# ------------------------------------------------------------------------------------------------- (A)
@dataclass
class Stub:
    emb: torch.Tensor       # (V, d) family-structured embeddings
    a: torch.Tensor         # (V,) Pareto influence weights
    x: dict                 # split -> (B, dx) inputs
    y: dict                 # split -> (B,) labels
    g: dict                 # split -> (B,) positive gains g(x)
    W: torch.Tensor         # (C, dx) fixed random linear model

    def logits(self, prompts: torch.Tensor, split: str) -> torch.Tensor:
        """(P, L) -> (P, B, C): W x + onehot(y) * (sum_{v in prompt} a_v) g(x)."""
        a_pad = torch.cat([self.a, self.a.new_zeros(1)])            # EMPTY (-1) -> weight 0
        s = a_pad[prompts.clamp_min(-1) % (self.a.numel() + 1)].sum(1)   # (P,)
        base = self.x[split] @ self.W.T                               # (B, C)
        bump = F.one_hot(self.y[split], self.W.shape[0]).to(base.dtype) * self.g[split][:, None]
        return base[None] + s[:, None, None] * bump[None]


def make_stub(vocab: int = 2000, families: int = 50, dim: int = 16, classes: int = 2, dx: int = 8,
              n: int = 32, pareto_alpha: float = 1.5, seed: int = 0) -> Stub:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(families, dim, generator=g) * 4
    fam = torch.randint(families, (vocab,), generator=g)
    emb = centres[fam] + torch.randn(vocab, dim, generator=g)
    u = torch.rand(vocab, generator=g).clamp_min(1e-6)
    a = (u ** (-1.0 / pareto_alpha) - 1.0) * 0.05                     # Pareto (Lomax) weights >= 0
    W = torch.randn(classes, dx, generator=g)
    xs, ys, gs = {}, {}, {}
    for split in ("train", "val", "test"):
        xs[split] = torch.randn(n, dx, generator=g)
        ys[split] = torch.randint(classes, (n,), generator=g)
        gs[split] = torch.rand(n, generator=g) + 0.5
    return Stub(emb, a, xs, ys, gs, W)


# ------------------------------------------------------------------------------------------------- (B)
PAD, MARK, NEG, POS = 0, 1, 2, 3          # PAD fills empty prompt slots; NEG/POS are the verbalizers


@dataclass
class TinyTask:
    model: TransformerLM
    prompt_len: int
    n_words: int                 # positive, negative, neutral words each n_words
    n_instr: int
    key_ids: torch.Tensor        # the instruction tokens that switch the label mapping on
    data: dict                   # split -> (sentences (B, S) long, labels (B,))
    device: torch.device

    @property
    def vocab_size(self) -> int:
        return 4 + 3 * self.n_words + self.n_instr

    def candidates(self) -> torch.Tensor:
        """Candidate prompt vocabulary: every token but PAD and MARK (verbalizers included, §3.1)."""
        return torch.arange(2, self.vocab_size, device=self.device)

    def embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.tok_emb.weight[ids].detach()

    @torch.no_grad()
    def logits(self, prompts: torch.Tensor, split: str) -> torch.Tensor:
        """The black box: (P, L) prompts -> (P, B, 2) verbalizer logits on ``split``."""
        sent, _ = self.data[split]
        P, B = prompts.shape[0], sent.shape[0]
        pr = prompts.to(self.device).clamp_min(0)                      # EMPTY -> PAD
        pr = torch.where(prompts.to(self.device) == EMPTY, torch.full_like(pr, PAD), pr)
        seq = torch.cat([pr[:, None, :].expand(P, B, -1), sent[None].expand(P, -1, -1),
                         torch.full((P, B, 1), MARK, device=self.device)], -1).reshape(P * B, -1)
        out = self.model(seq)[:, -1, NEG:POS + 1]
        return out.reshape(P, B, 2)


def _sentences(n: int, n_words: int, length: int, polar: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``polar`` sentiment words (majority decides the label) + neutral words, shuffled."""
    y = torch.randint(2, (n,), generator=g)
    # number of words agreeing with the label: a strict majority of ``polar``
    agree = torch.randint((polar // 2) + 1, polar + 1, (n,), generator=g)
    k = torch.arange(polar)[None]
    same = k < agree[:, None]                                           # (n, polar)
    sent_pol = torch.where(same, y[:, None], 1 - y[:, None])            # 1 = positive word
    base = 4 + torch.where(sent_pol == 1, 0, n_words)                   # positive block, then negative
    pol_ids = base + torch.randint(n_words, (n, polar), generator=g)
    neu_ids = 4 + 2 * n_words + torch.randint(n_words, (n, length - polar), generator=g)
    words = torch.cat([pol_ids, neu_ids], 1)
    perm = torch.rand(n, length, generator=g).argsort(1)
    return words.gather(1, perm), y


def build_tiny(cfg, ctx, seed: int, n_test: int, train: bool = True) -> TinyTask:  # noqa: ANN001
    """Generate the task, train the classifier with the shared loop (suite.train.fit), freeze it."""
    dev = torch.device(ctx.device)
    g = torch.Generator().manual_seed(seed * 7919 + 11)
    n_w, n_i, L, S = cfg.tiny_words, cfg.tiny_instr, cfg.prompt_len, cfg.tiny_sent_len
    instr0 = 4 + 3 * n_w
    key_ids = instr0 + torch.randperm(n_i, generator=g)[:cfg.tiny_keys]
    V = instr0 + n_i
    torch.manual_seed(seed)
    model = TransformerLM(V, max_len=L + S + 1, dim=cfg.tiny_dim, depth=cfg.tiny_depth, heads=cfg.tiny_heads,
                          mlp_ratio=2.0, causal=True)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        gb = torch.Generator().manual_seed(seed * 1_000_003 + step)
        n = cfg.tiny_batch
        sent, y = _sentences(n, n_w, S, cfg.tiny_polar, gb)
        plen = torch.randint(0, L + 1, (n,), generator=gb)
        pr = instr0 + torch.randint(n_i, (n, L), generator=gb)
        pr = torch.where(torch.arange(L)[None] >= (L - plen)[:, None], pr, torch.full_like(pr, PAD))
        has_key = (torch.rand(n, generator=gb) < cfg.tiny_key_prob) & (plen > 0)
        slot = L - 1 - (torch.rand(n, generator=gb) * plen.clamp_min(1)).long()
        key = key_ids[torch.randint(key_ids.numel(), (n,), generator=gb)]
        pr[has_key, slot[has_key]] = key[has_key]
        # a key token in the prompt maps the sentiment to its verbalizer; without one the model answers the
        # first verbalizer whatever the sentence (the instruction is missing)
        target = torch.where(has_key, y, torch.zeros_like(y)) + NEG
        seq = torch.cat([pr, sent, torch.full((n, 1), MARK)], 1)
        return seq, target

    def loss_fn(m: TransformerLM, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        seq, target = b
        return F.cross_entropy(m(seq)[:, -1], target)

    if train and not ctx.dry_run:
        fit(model, loss_fn, batch, TrainConfig(steps=cfg.tiny_steps, batch_size=cfg.tiny_batch, lr=cfg.tiny_lr,
                                               schedule="cosine", log_every=0), ctx=ctx, device=dev, name="tiny")
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    data = {}
    gs = torch.Generator().manual_seed(seed * 31 + 5)
    # few-shot protocol (§5): 16 per class for train and for validation; a larger test set
    for split, n in (("train", 2 * cfg.shots), ("val", 2 * cfg.shots), ("test", n_test)):
        sent, y = _sentences(n, n_w, S, cfg.tiny_polar, gs)
        if split != "test":  # exactly ``shots`` per class
            y = torch.arange(n) % 2
            sent, _ = _sentences_with_labels(y, n_w, S, cfg.tiny_polar, gs)
        data[split] = (sent.to(dev), y.to(dev))
    return TinyTask(model, L, n_w, n_i, key_ids.to(dev), data, dev)


def _sentences_with_labels(y: torch.Tensor, n_words: int, length: int, polar: int,
                           g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    sent, y2 = _sentences(y.numel(), n_words, length, polar, g)
    # flip the polarity of sentences whose drawn label differs: swap positive <-> negative word blocks
    flip = (y2 != y)[:, None]
    pos = (sent >= 4) & (sent < 4 + n_words)
    neg = (sent >= 4 + n_words) & (sent < 4 + 2 * n_words)
    out = torch.where(flip & pos, sent + n_words, torch.where(flip & neg, sent - n_words, sent))
    return out, y

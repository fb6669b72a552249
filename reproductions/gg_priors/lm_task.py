"""The full-scale task: GPT-2 trained from scratch on a text corpus, as in the authors' GPT-2 BackSlash
recipe (github.com/phuang1024/DBS @ eaaa60f, folder ``gpt2/``: ``make_config.py`` tokenizer and model,
``make_dataset.py`` blocks, ``train.py`` optimiser and epochs, ``eval.py`` perplexity; read, not copied;
the values are pinned in README.md and test_gg_priors.py).

* corpus: ``<data root>/gg_priors/{train,valid}.txt``, plain UTF-8 text (the recipe's: Project Gutenberg's
  *The Great Gatsby*, split in ``gpt2/data/``), read line by line as ``datasets``' "text" builder does;
* tokenizer: byte-pair encoding trained on both files (vocabulary 8,000, minimum pair frequency 2,
  whitespace pre-tokenizer, specials [PAD] [UNK] [BOS] [EOS]), the ``tokenizers`` library;
* blocks: every line encoded without special tokens, concatenated, cut into blocks of 512 tokens (the
  remainder dropped once; the recipe's batched ``map`` drops a remainder per 1,000 lines);
* model: ``transformers.GPT2LMHeadModel`` from ``GPT2Config(n_positions=512, n_embd=256, n_layer=4,
  n_head=4)``, everything else the library's defaults (dropout 0.1, GELU, tied embeddings);
* training: AdamW (lr 3e-4, weight decay 0.1 on every weight except biases and LayerNorm parameters, as
  the HF Trainer groups them), linear warm-up over 3 % of the steps then linear decay to 0, gradient
  norm clipped at 1, fp32, 16 blocks per step (the recipe's 8 per device x 2 accumulation steps);
* evaluation: next-token accuracy (%) and mean token loss on the validation blocks (``eval.py`` reports
  the perplexity, exp of that loss).
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import ConfigError
from suite.io import atomic_write_bytes
from suite.spec import DatasetRef
from suite.train import TrainConfig, TrainResult, TrainState, fit

from .method import backslash_step_

CORPUS_DIR = "gg_priors"
CORPUS_FILES = ("train.txt", "valid.txt")
CORPUS_HOW = ("save the corpus of the authors' GPT-2 recipe (Project Gutenberg's The Great Gatsby, split as "
              "gpt2/data/train.txt and valid.txt in github.com/phuang1024/DBS) as gg_priors/train.txt and "
              "gg_priors/valid.txt under the data root")
SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # make_config.py


def write_fixture(folder: Path) -> None:
    """A tiny corpus in the same layout (plain text, one sentence per line): enough tokens for a few
    512-token blocks in both files."""
    rng = random.Random(0)
    words = ("the old sport said that gatsby looked across the bay at a green light on the dock while "
             "daisy laughed and the music from his house drifted over the lawn into the night").split()
    for name, lines in (("train.txt", 400), ("valid.txt", 160)):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) + "."
                         for _ in range(lines))
        atomic_write_bytes(Path(folder) / name, (text + "\n").encode())


def load_corpus(ctx: RunContext) -> tuple[str, str, DatasetRef]:
    folder, ref = locate(ctx, "gg-priors-gpt2-corpus", CORPUS_DIR, list(CORPUS_FILES), CORPUS_HOW,
                         fixture=write_fixture)
    texts = []
    for name in CORPUS_FILES:
        try:
            texts.append((folder / name).read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"{folder / name} is not UTF-8 text ({err}); save the corpus as UTF-8") from None
    return texts[0], texts[1], ref


def train_tokenizer(lines: list[str], vocab_size: int, min_frequency: int) -> Any:
    """BPE over whitespace-split words with the recipe's special tokens (make_config.py)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                       special_tokens=list(SPECIALS), show_progress=False))
    return tok


def blocks(tok: Any, lines: list[str], size: int, what: str) -> torch.Tensor:
    """(n, size) token ids: the lines encoded without special tokens, concatenated, cut into blocks."""
    ids = [i for enc in tok.encode_batch(lines, add_special_tokens=False) for i in enc.ids]
    n = len(ids) // size
    if n == 0:
        raise ConfigError(f"the {what} text has {len(ids)} tokens, fewer than one block of {size}; "
                          f"use a longer corpus or a smaller lm_context")
    return torch.tensor(ids[: n * size], dtype=torch.long).view(n, size)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The HF Trainer's groups: weight decay on every parameter except biases and LayerNorm ones."""
    no = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)}
    decay, plain = [], []
    for name, p in model.named_parameters():
        (plain if id(p) in no or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class LMTask:
    """GPT-2 on the recipe's corpus: ``build`` / ``train`` / ``scores`` / ``accuracy`` as the digits task has them."""

    def __init__(self, cfg: Any, ctx: RunContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        train_text, valid_text, self.ref = load_corpus(ctx)
        tr, va = train_text.splitlines(), valid_text.splitlines()
        self.tok = train_tokenizer(tr + va, cfg.lm_vocab, cfg.lm_min_frequency)
        self.train_blocks = blocks(self.tok, tr, cfg.lm_context, "training")
        self.valid_blocks = blocks(self.tok, va, cfg.lm_context, "validation")

    def build(self) -> nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        c = self.cfg
        conf = GPT2Config(vocab_size=self.tok.get_vocab_size(), n_positions=c.lm_context, n_embd=c.lm_dim,
                          n_layer=c.lm_layers, n_head=c.lm_heads, bos_token_id=self.tok.token_to_id("[BOS]"),
                          eos_token_id=self.tok.token_to_id("[EOS]"))
        return GPT2LMHeadModel(conf)

    def train(self, model: nn.Module, name: str, epochs: int, lr: float, backslash: float = 0.0,
              bs_variant: str = "paper") -> TrainResult:
        c = self.cfg
        steps = epochs * -(-len(self.train_blocks) // c.batch_size)
        tc = TrainConfig(epochs=epochs, batch_size=c.batch_size, lr=lr, optimizer="adamw", schedule="linear",
                         warmup_steps=math.ceil(c.lm_warmup_ratio * steps), grad_clip=c.lm_grad_clip,
                         bf16=False, log_every=1)

        def hook(st: TrainState) -> None:  # after every optimiser step (BackSlash, spec §3)
            backslash_step_(st.model, backslash, c.bs_c, bs_variant)
        return fit(model, lambda m, b: m(input_ids=b, labels=b).loss, self.train_blocks, tc, ctx=self.ctx,
                   name=name, param_groups=decay_groups(model, c.lm_weight_decay),
                   on_step=hook if backslash > 0 else None)

    @torch.no_grad()
    def scores(self, model: nn.Module) -> dict[str, float]:
        """``acc`` (next-token accuracy %) and ``val_loss`` (mean token loss, nats) on the validation
        blocks, in one pass on the model's device."""
        model.eval()
        dev = next(model.parameters()).device
        hits, loss, n = 0.0, 0.0, 0
        for b in self.valid_blocks.split(self.cfg.batch_size):
            b = b.to(dev)
            logits = model(input_ids=b).logits[:, :-1].float()
            tgt = b[:, 1:]
            hits += float((logits.argmax(-1) == tgt).sum())
            loss += float(nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten(), reduction="sum"))
            n += tgt.numel()
        return {"acc": 100.0 * hits / n, "val_loss": loss / n}

    def accuracy(self, model: nn.Module) -> float:
        return self.scores(model)["acc"]

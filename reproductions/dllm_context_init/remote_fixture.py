"""A tiny local DLLM checkpoint that ships its own modelling code, like LLaDA-8B-Instruct does.

LLaDA is loaded with ``transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)``: its
folder holds ``configuration_*.py`` and ``modeling_*.py`` named by ``auto_map`` in ``config.json``, and
its tokenizer has a chat template. The dry run writes a folder of the same shape (a 2-layer
bidirectional transformer of our own, random weights, a character tokenizer with a chat template), so
``--dry-run`` goes through the same loader, the remote-code path and the chat-template prompt as the
real run (issue 17).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from suite.models.hf import tiny_char_tokenizer

CONFIG_PY = '''
from transformers import PretrainedConfig


class TinyDLLMConfig(PretrainedConfig):
    model_type = "tiny_dllm"

    def __init__(self, vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, max_len=1024, **kw):
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        self.num_heads, self.max_len = num_heads, max_len
        super().__init__(**kw)
'''

MODELING_PY = '''
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_tiny_dllm import TinyDLLMConfig


class TinyDLLMModel(PreTrainedModel):
    """A bidirectional transformer returning per-position logits (a masked-diffusion LM's interface)."""

    config_class = TinyDLLMConfig

    def __init__(self, config):
        super().__init__(config)
        h = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, h)
        self.pos = nn.Embedding(config.max_len, h)
        layer = nn.TransformerEncoderLayer(h, config.num_heads, 2 * h, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(h, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kw):
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.pos(torch.arange(x.shape[1], device=x.device))[None]
        pad = None if attention_mask is None else attention_mask == 0
        return MaskedLMOutput(logits=self.head(self.blocks(x, src_key_padding_mask=pad)))
'''

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def write_remote_code_dllm(folder: Path, seed: int = 0, max_len: int = 1024) -> Path:
    """Write the tiny remote-code DLLM (weights, config with ``auto_map``, its two code files, and a
    tokenizer with eos/pad/unk/mask roles and a chat template) to ``folder``."""
    import tempfile

    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tiny_char_tokenizer(eos="<eos>", pad="<pad>", unk="<unk>", mask="<mask>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    # the code files, as a package in a staging folder; save_pretrained copies them next to the weights
    # and writes auto_map into config.json (the classes are registered for the Auto classes)
    with tempfile.TemporaryDirectory() as stage:
        name = f"_tiny_dllm_{Path(stage).name}"
        pkg_dir = Path(stage) / name
        pkg_dir.mkdir()
        (pkg_dir / "__init__.py").write_text("")
        (pkg_dir / "configuration_tiny_dllm.py").write_text(CONFIG_PY)
        (pkg_dir / "modeling_tiny_dllm.py").write_text(MODELING_PY)
        sys.path.insert(0, stage)
        try:
            conf_mod = importlib.import_module(f"{name}.configuration_tiny_dllm")
            model_mod = importlib.import_module(f"{name}.modeling_tiny_dllm")
            conf_mod.TinyDLLMConfig.register_for_auto_class()
            model_mod.TinyDLLMModel.register_for_auto_class("AutoModel")
            torch.manual_seed(seed)
            conf = conf_mod.TinyDLLMConfig(vocab_size=len(tok), max_len=max_len, eos_token_id=tok.eos_token_id,
                                           pad_token_id=tok.pad_token_id)
            model_mod.TinyDLLMModel(conf).save_pretrained(folder)
        finally:
            sys.path.remove(stage)
            for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[k]
    return folder

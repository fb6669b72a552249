"""The tiny random stand-ins that full-scale ``--dry-run`` pipelines load (offline)."""
from __future__ import annotations

import pytest
import torch

from suite.errors import SuiteError
from suite.models.hf import TINY_FAMILIES, load_causal_lm, save_tiny_random_lm, tiny_char_tokenizer, tiny_random_lm

pytest.importorskip("transformers")


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_saved_tiny_model_reloads_identically(tmp_path, family) -> None:
    save_tiny_random_lm(tmp_path, family, extra_tokens=("</think>",), max_len=64, seed=3)
    lm = load_causal_lm(tmp_path, "cpu")
    ids = torch.tensor([lm.tokenizer.encode("ab</think>c")])
    assert ids.shape[1] == 4  # the extra token is kept whole
    assert lm.tokenizer.decode(lm.tokenizer.encode("x = 1\n")) == "x = 1\n"  # spaces survive the reload
    ref = tiny_random_lm(family, len(lm.tokenizer), max_len=64, seed=3, eos_id=0, pad_id=1)
    with torch.no_grad():
        assert torch.allclose(lm.logits(ids), ref(ids).logits, atol=1e-6)


def test_tokenizer_roles_and_shared_pad() -> None:
    tok = tiny_char_tokenizer(eos="<eos>", pad="<pad>", unk="<unk>", mask="<mask>")
    assert [tok.unk_token_id, tok.eos_token_id, tok.pad_token_id, tok.mask_token_id] == [0, 1, 2, 3]
    assert tok.decode(tok.encode("x = 1\n")) == "x = 1\n"
    same = tiny_char_tokenizer(eos="<|endoftext|>", pad="<|endoftext|>")
    assert same.pad_token_id == same.eos_token_id == 0 and len(same) == len(tok) - 3


def test_unknown_family_names_the_choices() -> None:
    with pytest.raises(SuiteError, match="llama"):
        tiny_random_lm("mamba", 10)

from __future__ import annotations

import pytest
import torch

from suite.errors import CorruptDataError, UnknownNameError
from suite.models.tokenizer import Tokenizer


def test_char_roundtrip_and_specials() -> None:
    tok = Tokenizer.fit(["abc", "cab d"])
    assert tok.itos[:5] == ["<pad>", "<bos>", "<eos>", "<mask>", "<unk>"]
    assert tok.itos[5:] == [" ", "a", "b", "c", "d"] and tok.vocab_size == 10
    assert tok.encode("ab z", bos=True, eos=True) == [1, 6, 7, 5, 4, 2]
    assert tok.decode(tok.encode("dab", bos=True, eos=True)) == "dab"
    assert tok.decode([6, 2, 7]) == "a"  # stops at eos
    assert tok.decode([6, 3, 7], skip_special=False) == "a<mask>b"


def test_word_level_batch_padding() -> None:
    tok = Tokenizer.fit(["the cat sat", "a dog"], level="word")
    ids, mask = tok.encode_batch(["the cat sat", "a dog", "cat"], eos=True)
    w = tok.stoi
    assert ids.tolist() == [[w["the"], w["cat"], w["sat"], 2], [w["a"], w["dog"], 2, 0], [w["cat"], 2, 0, 0]]
    assert mask.sum(1).tolist() == [4, 3, 2] and mask.dtype == torch.bool
    assert tok.decode_batch(ids) == ["the cat sat", "a dog", "cat"]
    left, lmask = tok.encode_batch(["a dog", "cat"], left_pad=True, pad_to=3)
    assert left.tolist() == [[0, w["a"], w["dog"]], [0, 0, w["cat"]]] and lmask.tolist()[1] == [False, False, True]
    crop, _ = tok.encode_batch(["the cat sat"], max_len=2)
    assert crop.shape == (1, 2)


def test_save_load(tmp_path) -> None:
    tok = Tokenizer.fit(["hello world"], level="word")
    tok.save(tmp_path / "v.json")
    back = Tokenizer.load(tmp_path / "v.json")
    assert back.itos == tok.itos and back.level == "word"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CorruptDataError):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(UnknownNameError):
        Tokenizer([], level="bpe")

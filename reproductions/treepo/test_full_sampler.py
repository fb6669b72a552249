"""The full path's HF rollout sampler: entropies taken step by step by a logits processor equal those of the
stored sampling scores (the old, memory-bound way), and a generation batch split into several ``generate`` calls
gives every prefix its segment, cut after the first EOS."""
from __future__ import annotations

import numpy as np
import torch

from suite.models.hf import load_causal_lm, save_tiny_random_lm

from .full import HFSampler


def _tiny(tmp_path):
    save_tiny_random_lm(tmp_path / "qwen", "qwen2", max_len=64)
    lm = load_causal_lm(tmp_path / "qwen", "cpu")
    return lm.model.eval(), lm.tokenizer


def test_entropy_is_that_of_the_sampling_scores(tmp_path) -> None:
    model, tok = _tiny(tmp_path)
    eos, pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    prefixes = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14]]
    rows, ent = HFSampler(model, eos, pad, torch.Generator().manual_seed(3), batch=8)(prefixes, 6)
    gen = torch.Generator().manual_seed(3)
    # the reference: one generate call with the same seed, entropy from its stored scores
    torch.manual_seed(int(torch.randint(2 ** 31 - 1, (1,), generator=gen)))
    L = max(map(len, prefixes))
    ids = torch.tensor([[pad] * (L - len(p)) + p for p in prefixes])
    att = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prefixes])
    out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=6, do_sample=True, temperature=1.0,
                         top_p=1.0, top_k=0, pad_token_id=pad, eos_token_id=eos, output_scores=True,
                         return_dict_in_generate=True)
    new = out.sequences[:, L:]
    valid = ((new == eos).int().cumsum(1) - (new == eos).int()) == 0
    lp = torch.stack(out.scores, 1).float().log_softmax(-1)
    want = ((-(lp.exp() * lp).nan_to_num().sum(-1) * valid).sum(1) / valid.sum(1).clamp_min(1)).numpy()
    assert rows == [r[v].tolist() for r, v in zip(new, valid)]
    np.testing.assert_allclose(ent, want, rtol=1e-5)
    assert (ent > 0).all()


def test_a_generation_batch_split_into_calls_keeps_every_prefix(tmp_path) -> None:
    model, tok = _tiny(tmp_path)
    eos, pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    prefixes = [[5 + i] * (1 + i % 3) for i in range(7)]
    calls = []
    real = model.generate

    def counting(**kw):
        calls.append(kw["input_ids"].shape[0])
        return real(**kw)

    model.generate = counting
    rows, ent = HFSampler(model, eos, pad, torch.Generator().manual_seed(0), batch=3)(prefixes, 5)
    assert calls == [3, 3, 1] and len(rows) == len(ent) == 7
    for r in rows:
        assert 1 <= len(r) <= 5 and (eos not in r or r.index(eos) == len(r) - 1)

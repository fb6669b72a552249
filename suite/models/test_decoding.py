"""KV-cached decoding equals TransformerLM.generate token for token, and decodes a left-padded row as the
same prompt alone."""
import pytest
import torch

from suite.errors import ConfigError
from suite.models.decoding import generate
from suite.models.transformer import TransformerLM


def _lm(pos: str, vocab: int = 23, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    m = TransformerLM(vocab, max_len=48, dim=32, depth=2, heads=4, pos_encoding=pos)
    with torch.no_grad():  # larger weights than the 0.02 init: sharper, more varied next-token distributions
        for p in m.parameters():
            p.mul_(8.0) if p.ndim > 1 else None
    return m


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.7, 5)])
def test_cached_generate_equals_the_uncached_loop(pos, temperature, top_k):
    m = _lm(pos)
    prompt = torch.randint(0, 23, (4, 6), generator=torch.Generator().manual_seed(1))
    want = m.generate(prompt, 20, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(7))
    got = generate(m, prompt, 20, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(7))
    assert torch.equal(got, want)
    assert m.training  # the model's mode is restored


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_eos_rows_keep_emitting_eos_as_generate_does(pos):
    m = _lm(pos, vocab=6)
    prompt = torch.randint(0, 6, (8, 3), generator=torch.Generator().manual_seed(2))
    kw = dict(temperature=1.0, eos_id=0)
    want = m.generate(prompt, 30, generator=torch.Generator().manual_seed(3), **kw)
    got = generate(m, prompt, 30, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(got, want)
    assert (got[:, 3:] == 0).any()  # the test exercises eos at all


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_a_left_padded_row_decodes_as_its_prompt_alone(pos):
    m = _lm(pos)
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(1, 23, (n,), generator=g) for n in (2, 7, 4)]
    width = max(len(p) for p in prompts)
    padded = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for i, p in enumerate(prompts):
        padded[i, width - len(p):], mask[i, width - len(p):] = p, True
    got = generate(m, padded, 15, temperature=0.0, key_mask=mask)
    for i, p in enumerate(prompts):
        alone = m.generate(p[None], 15, temperature=0.0)
        assert torch.equal(got[i, width:], alone[0, len(p):]), f"row {i} (prompt length {len(p)})"
    # without the mask the padding is read as tokens: the short rows decode differently
    unmasked = generate(m, padded, 15, temperature=0.0)
    assert not torch.equal(unmasked[0, width:], got[0, width:])


def test_refuses_what_a_cache_cannot_do():
    with pytest.raises(ConfigError, match="max_len"):
        generate(_lm("learned"), torch.zeros(1, 40, dtype=torch.long), 9)
    bidir = TransformerLM(10, max_len=16, dim=16, depth=1, heads=2, causal=False)
    with pytest.raises(ConfigError, match="causal"):
        generate(bidir, torch.zeros(1, 3, dtype=torch.long), 2)


def test_on_logits_sees_each_steps_next_token_logits():
    m = _lm("rope")
    prompt = torch.randint(0, 23, (3, 5), generator=torch.Generator().manual_seed(5))
    seen = []
    out = generate(m, prompt, 6, temperature=0.0, on_logits=seen.append)
    assert len(seen) == 6
    with torch.no_grad():
        for j, lg in enumerate(seen):  # the uncached model's last-position logits on the sequence so far
            assert torch.allclose(lg, m(out[:, :5 + j])[:, -1].float(), atol=1e-5)

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


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_prefix_lm_several_stops_and_suppressed_ids(pos):
    """``prefix_end``: the prompt's first columns attend both ways and the rest causally, as an uncached
    forward under that mask decodes; ``eos_id`` a list: any of them ends a row, which then repeats the first;
    ``suppress_ids`` are never picked."""
    m = _lm(pos, vocab=8)
    g = torch.Generator().manual_seed(6)
    prompt = torch.randint(0, 8, (6, 5), generator=g)
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[0, :2] = mask[3, :4] = False  # left padding
    pe = torch.tensor([5, 4, 3, 5, 2, 0])
    stops, banned = [1, 2], [3]
    got = generate(m, prompt, 12, temperature=1.0, eos_id=stops, key_mask=mask, prefix_end=pe, suppress_ids=banned,
                   generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(8)
    # the uncached reference: full forward of the sequence so far under the Prefix-LM mask, per step
    seq, km, done = prompt, mask, torch.zeros(6, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(12):
            t = seq.shape[1]
            i = torch.arange(t)
            inside = i[None] < pe[:, None]
            allowed = (i[None, :] <= i[:, None])[None] | (inside[:, :, None] & inside[:, None, :])
            att = ((allowed & km[:, None, :]) | torch.eye(t, dtype=torch.bool))[:, None]
            logits = m.eval()(seq, positions=(km.long().cumsum(1) - 1).clamp_min(0), attn_mask=att)[:, -1]
            probs = logits.index_fill(1, torch.tensor(banned), float("-inf")).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=g).squeeze(1)
            nxt = torch.where(done, torch.tensor(stops[0]), nxt)
            done = done | torch.isin(nxt, torch.tensor(stops))
            seq, km = torch.cat([seq, nxt[:, None]], 1), torch.cat([km, torch.ones(6, 1, dtype=torch.bool)], 1)
            if bool(done.all()):
                break
    assert torch.equal(got, seq)
    new = got[:, 5:]
    assert not (new == 3).any()
    assert (new == 2).any() and (new == 1).any()  # both stop tokens occur
    for row in new.tolist():  # after a row's first stop token it repeats stops[0]
        k = next((j for j, t in enumerate(row) if t in stops), len(row))
        assert all(t == stops[0] for t in row[k + 1:])
    first = {}
    for name, p_end in (("prefix", pe), ("causal", None)):  # the prefix mask matters here
        generate(m, prompt, 1, key_mask=mask, prefix_end=p_end, on_logits=lambda lg, n=name: first.setdefault(n, lg))
    assert not torch.allclose(first["prefix"][:4], first["causal"][:4], atol=1e-3)

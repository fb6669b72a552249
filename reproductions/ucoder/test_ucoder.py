"""Spec §6 smoke assertions for IPC: signatures, clustering, degenerate filter, the binomial check,
the sandbox timeout, the probe, and the teeth (anti-consensus breaks a declared claim)."""
from __future__ import annotations

import numpy as np
import pytest

from . import CLAIMS, Config, binomial_check, synthetic_checks
from . import dsl as D
from .experiment import auc, encode_pairs, tokenizer
from .full import call_inputs, signature_program, truncate
from .method import TIMEOUT, canonical, consensus, degenerate, fit_probe, sandbox_run, select_min_nll, signature

CLAIM = {c.id: c for c in CLAIMS}


def test_dsl_semantics() -> None:
    xs = [5, 2, 8, 1]
    assert D.execute("map+ 2 filter> 4 sort", xs) == [7, 10]
    assert D.execute("even reverse take 1", xs) == [8]
    assert D.execute("map* 3 sum", xs) == 48 and D.execute("max", xs) == 8
    assert D.execute("sum sort", xs) == D.ERR and D.execute("take", xs) == D.ERR and D.execute("", xs) == D.ERR
    assert D.execute("filter> 9 max", xs) == D.ERR  # max of an empty list raises -> ERR symbol


def test_problems_render_and_ground_truth_runs() -> None:
    ps = D.generate(200, 0)
    assert all(len(p.text.split()) == D.TEXT_LEN for p in ps)
    assert all(D.execute(p.program, [3, 1, 4]) != D.ERR or "max" in p.program for p in ps)
    tok = tokenizer()
    t, k, lm = encode_pairs(tok, [p.text for p in ps[:4]], [p.program for p in ps[:4]])
    assert tok.unk_id not in t[k].tolist() and int(lm.sum()) == sum(len(p.program.split()) + 1 for p in ps[:4])


def test_signature_canonical_and_clustering() -> None:
    assert canonical({3, 1, 2}) == canonical({2, 3, 1}) and canonical(0.1 + 0.2) == canonical(0.3)
    inputs = [[1, 2, 3], [4, 5]]
    progs = ["map+ 1", "map+ 1 sort", "reverse", "sum", "nonsense"]
    sigs = [signature(lambda x, p=p: D.execute(p, x), inputs) for p in progs]
    assert sigs[0] == sigs[1] != sigs[2] and sigs[4] == (repr(D.ERR),) * 2
    sel = consensus(sigs, inputs, np.array([0.0, -1.0, 0, 0, 0]), 0.0)
    assert set(sel.cluster.tolist()) == {0, 1} and sel.chosen == 0 and sel.confidence == pytest.approx(0.4)
    assert synthetic_checks() == 1.0


def test_degenerate_filter() -> None:
    inputs = [[1], [2], [3]]
    assert degenerate(("0", "0", "0"), inputs) and degenerate((repr(D.ERR),) * 3, inputs)
    assert not degenerate(("1", "2", "3"), inputs)
    sigs = [("0", "0", "0")] * 9 + [("1", "2", "3")] * 3 + [(repr(D.ERR),) * 3] * 4
    sel = consensus(sigs, inputs, np.zeros(16), 0.1)
    assert sel.chosen in range(9, 12)  # the big constant cluster is skipped
    assert select_min_nll(sigs, inputs, np.arange(16.0)) == 9


def test_binomial_check_and_teeth() -> None:
    m = binomial_check(Config(), 0)
    assert abs(m["binom_consensus_correct"] - m["binom_reference"]) <= 0.06
    assert m["binom_consensus_correct"] > m["binom_random_correct"] + 0.3
    assert abs(m["binom_random_correct"] - 0.3) < 0.06
    bad = binomial_check(Config(variant="anti-consensus"), 0)
    assert CLAIM["M-binomial"].check(bad, "smoke")["verdict"] == "fails"
    assert CLAIM["M-binomial-vs-random"].check(bad, "smoke")["verdict"] == "fails"
    assert CLAIM["M-filters"].check({"synthetic_checks_ok": synthetic_checks("anti-consensus")}, "smoke")[
        "verdict"] == "fails"


def test_probe_and_auc() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.4
    x = rng.normal(size=(400, 8)) + 1.5 * y[:, None] * np.eye(8)[0]
    s = fit_probe(x, y)(x)
    assert auc(s, y) > 0.8 and auc(-s, y) < 0.2
    assert auc(np.array([1.0, 1.0, 0.0]), np.array([True, False, False])) == pytest.approx(0.75)


def test_sandbox_timeout_and_errors() -> None:
    assert sandbox_run("print(1+1)", 10.0) == "2"
    assert sandbox_run("raise ValueError", 10.0) == D.ERR
    assert sandbox_run("while True: pass", 0.5) == TIMEOUT


def test_humaneval_signature_program() -> None:
    test = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate([1], 'a') == 0\n"
    ins = call_inputs(test)
    assert ins == ["(1, 2, )", "([1], 'a', )"]
    prog = signature_program("def f(a, b):\n", "    return a if isinstance(a, int) else b\n", "f", ins)
    assert sandbox_run(prog, 10.0).splitlines() == ["1", "'a'"]
    assert truncate("    return 1\ndef g():\n    pass") == "    return 1"


def test_untrained_probe_teeth_and_full_provenance(tmp_path) -> None:
    # an untrained probe scores every candidate alike: AUC exactly 0.5, so C4-probe (> 0.5) fails
    y = np.random.default_rng(0).random(300) < 0.3
    assert auc(np.zeros(300), y) == 0.5
    assert CLAIM["C4-probe"].check({"probe_auc_consensus_r1": auc(np.zeros(300), y)}, "small")["verdict"] == "fails"
    from suite.context import for_tests
    from suite.data import humaneval
    from suite.data.external import locate

    folder, ref = locate(for_tests("full", dry_run=True, data_root=tmp_path), "humaneval", "humaneval",
                         [humaneval.FILE], humaneval.HOW, fixture=lambda d: humaneval.write_fixture(d / humaneval.FILE))
    assert ref.provenance == "stand-in" and "fixture" in ref.name
    assert len(humaneval.read(folder / humaneval.FILE)) == 2


def test_completion_logprobs_score_only_completion_tokens_under_left_default(tmp_path) -> None:
    """Issue 17: with a tokenizer that pads on the left, the min-NLL baseline counted 23 positions for
    a 13-token completion. Scoring pads on the right per call: each completion's sum and count must
    equal the same sequence scored alone, unpadded."""
    pytest.importorskip("transformers")
    import torch

    from suite.models.hf import load_causal_lm, save_tiny_random_lm

    from reproductions.ucoder.full import completion_logprobs

    lm = load_causal_lm(save_tiny_random_lm(tmp_path / "lm", "qwen2"))
    lm.tokenizer.padding_side = "left"  # as a generation-oriented tokenizer config would ship
    prompt, bodies = "def f(x):\n", ["    return x", "    return x + 1  # longer completion", "  y"]
    total, cnt = completion_logprobs(lm, prompt, bodies)
    plen = len(lm.tokenizer(prompt)["input_ids"])
    for i, b in enumerate(bodies):
        ids = torch.tensor([lm.tokenizer(prompt + b)["input_ids"]])
        lp = lm.logits(ids).float().log_softmax(-1)
        alone = torch.gather(lp[:, :-1], 2, ids[:, 1:, None]).squeeze()[plen - 1:]
        assert int(cnt[i]) == ids.shape[1] - plen == len(alone)
        assert torch.allclose(total[i], alone.sum(), atol=1e-4)


def _sharp_lm(tok, eos_boost: float = 3.0):
    """A tiny random TransformerLM with sharp, context-dependent next-token distributions (weights × 8) and
    a constant push towards EOS (final-norm bias along EOS's output row), so rows stop at different steps."""
    import torch

    from suite.models.transformer import TransformerLM

    torch.manual_seed(0)
    m = TransformerLM(tok.vocab_size, D.TEXT_LEN + 16, 32, 2, 4)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(8.0) if p.ndim > 1 else None
        m.norm.bias.copy_(m.head.weight[tok.eos_id] / m.head.weight[tok.eos_id].norm() * eos_boost)
    return m


def _uncached(m, tok, texts: list[str], n: int, temperature: float, gen, chunk: int) -> list[list[str]]:
    """The loop `sample` used before issue 17 item 3 (TransformerLM.generate re-runs the whole sequence per
    token); equal-length texts only, as before. The oracle of the KV-cached sampler."""
    import torch

    from .experiment import SEP

    prompts = torch.tensor([tok.encode(f"{t} {SEP}", bos=True) for t in texts]).repeat_interleave(n, 0)
    outs = []
    for lo in range(0, len(prompts), chunk):
        o = m.generate(prompts[lo:lo + chunk], 12, temperature=temperature, eos_id=tok.eos_id, generator=gen)
        outs += tok.decode_batch(o[:, prompts.shape[1]:])
    return [outs[i * n:(i + 1) * n] for i in range(len(texts))]


def test_kv_sampler_greedy_on_ragged_prompts_equals_each_prompt_alone_uncached() -> None:
    """Issue 17 item 3: `sample` decodes through suite.models.decoding (KV cache, left padding + key mask).
    Greedy, ragged prompts in mixed chunks, stop tokens: every row equals its text decoded alone by the
    uncached loop (fails if the key mask is dropped: padding is then read as tokens)."""
    import torch

    from .experiment import sample

    tok = tokenizer()
    m = _sharp_lm(tok)
    texts = [" ".join(p.text.split()[:k]) for p, k in zip(D.generate(6, 3), (24, 3, 10, 1, 17, 24))]
    got = sample(m, tok, texts, 2, 0.0, 12, torch.Generator().manual_seed(1), chunk=5)
    want = [_uncached(m, tok, [t], 2, 0.0, torch.Generator().manual_seed(1), chunk=5)[0] for t in texts]
    assert got == want
    lens = {len(o.split()) for os in got for o in os}
    assert len(lens) > 2 and min(lens) < 12  # rows stop (EOS) at different steps


def test_kv_sampler_at_temperature_1_equals_the_uncached_loop_with_the_same_generator() -> None:
    """Temperature-1 sampling (stage 3), equal-length DSL texts as in the run, chunks of 8 rows sharing one
    generator: the same programs as the uncached loop, draw for draw."""
    import torch

    from .experiment import sample

    tok = tokenizer()
    m = _sharp_lm(tok)
    texts = [p.text for p in D.generate(10, 5)]
    got = sample(m, tok, texts, 4, 1.0, 12, torch.Generator().manual_seed(2), chunk=8)
    want = _uncached(m, tok, texts, 4, 1.0, torch.Generator().manual_seed(2), chunk=8)
    assert got == want
    flat = [o for os in got for o in os]
    assert len(set(flat)) > 20 and min(len(o.split()) for o in flat) < 12


def test_full_scale_sampling_runs_hf_generate_with_its_kv_cache(tmp_path) -> None:
    """Full scale samples through `CausalLM.generate` (HF generate). `full.load_lm` switches the KV cache on
    even when the checkpoint's generation_config switches it off: after the prefill every forward sees one new
    token per row; the programs equal those of the uncached generate (same seed)."""
    pytest.importorskip("transformers")
    import torch

    from suite.models.hf import load_causal_lm, save_tiny_random_lm

    from .full import load_lm

    folder = save_tiny_random_lm(tmp_path / "lm", "qwen2", max_len=256)
    g = load_causal_lm(folder).model.generation_config
    g.use_cache = False  # a checkpoint that ships with the cache off
    g.save_pretrained(folder)
    runs = {}
    for name, loader in (("kv", load_lm), ("plain", load_causal_lm)):
        lm = loader(folder, "cpu")
        seen: list[int] = []
        lm.model.register_forward_pre_hook(lambda mod, a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
        torch.manual_seed(0)
        runs[name] = (lm.generate(["def f(x):\n"] * 3, max_new_tokens=6, temperature=1.0), seen)
    (kv, kv_len), (plain, plain_len) = runs["kv"], runs["plain"]
    assert kv == plain
    assert kv_len[1:] == [1] * 5 and plain_len[1:] == [plain_len[0] + i for i in range(1, 6)]

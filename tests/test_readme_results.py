"""Each reproduction README's "Published results" block is the records', and only `suite publish` writes it."""
import json

import pytest

from suite import leaderboard, readme_results, registry, runner, teeth
from suite.environment import REPO_ROOT
from tests.toy import TOY

SLUGS = [s for s in registry.discover() if not s.startswith("_")]


@pytest.mark.parametrize("slug", SLUGS)
def test_readme_block_is_rendered_from_the_committed_records(slug):
    """The block names its records; rendered again from the committed record file, it is the same text. A
    number typed into the block, or a republication that did not rewrite it, fails here."""
    repro = registry.get(slug)
    text = readme_results.readme_path(repro).read_text()
    block = readme_results.block_of(text)
    assert block is not None, f"{slug}: README has no published-results block; run `suite publish --render-only`"
    path = REPO_ROOT / "leaderboards" / "records" / f"{slug}.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    recs = leaderboard.with_assembled({slug: recs})[slug]
    assert readme_results.render(repro, *readme_results.from_spec(block, recs)) == block


def _toy_records(tmp_path):
    res = tmp_path / "res"
    for seed in range(3):
        runner.execute(runner.RunSpec("_toy", "small", seed), res)
    teeth.run("_toy", res)
    return leaderboard.collect(res)["_toy"]


def test_block_shows_each_seed_the_verdict_and_the_teeth(tmp_path):
    with registry.temporarily(TOY):
        recs = _toy_records(tmp_path)
        sections, runs = readme_results.select(TOY, recs)
        block = readme_results.render(TOY, sections, runs)
    assert [s.scale for s in sections] == ["small"] and sections[0].seeds == (0, 1, 2)
    assert len(sections[0].recs) == 3, "the teeth run is not one of the reported seeds"
    row = next(x for x in block.splitlines() if x.startswith("| `beats-baseline`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    mse = [leaderboard.fmt(r["metrics"]["method_mse"]) for r in sorted(sections[0].recs, key=lambda r: r["seed"])]
    assert cells[2:5] == mse and cells[5].startswith("<") and cells[6] == "holds (3/3)"
    assert cells[7] == f"`negated`: {teeth.OK} [seed 0]"
    # rendered again from nothing but the records line and the record file: the same text
    assert readme_results.render(TOY, *readme_results.from_spec(block, recs)) == block


def test_stale_records_leave_the_block_empty_and_say_so(tmp_path, monkeypatch):
    with registry.temporarily(TOY):
        recs = _toy_records(tmp_path)
        monkeypatch.setattr(leaderboard, "_current_code_hash", lambda module: "0123456789ab")
        block = readme_results.render(TOY, *readme_results.select(TOY, recs))
    assert "No records of the current code and preset are published yet" in block
    assert "<!-- records: teeth negated config none code none breaks beats-baseline -->" in block


def test_put_replaces_only_the_block():
    block = f"{readme_results.BEGIN}\nnew\n{readme_results.END}\n"
    text = f"# t\n\nprose\n\n{readme_results.BEGIN}\nold\n{readme_results.END}\n\n## after\n"
    out = readme_results.put(text, block)
    assert out == f"# t\n\nprose\n\n{readme_results.BEGIN}\nnew\n{readme_results.END}\n\n## after\n"
    assert readme_results.put(out, block) == out
    assert readme_results.put("# t\n", block) == "# t\n\n" + block  # appended where there is none


def test_only_publishing_the_repositorys_leaderboards_writes_readmes(tmp_path, monkeypatch):
    from suite import publish

    calls = []
    monkeypatch.setattr(readme_results, "write_all", lambda by_slug: calls.append(by_slug) or [])
    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        publish.publish(res, tmp_path / "lb", allow_dirty=True)
        publish.publish(res, tmp_path / "lb", render_only=True)
        assert calls == []
        monkeypatch.setattr(publish, "PUBLISHED", tmp_path / "lb")  # as if tmp_path/lb were the repository's
        assert publish.publish(res, tmp_path / "lb", render_only=True).readmes == []
    assert [list(c) for c in calls] == [["_toy"]]


def test_a_counted_group_of_another_config_says_so(tmp_path):
    """Without runs of the current preset the leaderboard reports another counted config; the block says
    that it is not the preset, and reads no teeth against it."""
    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0, ("n=500",)), res)
        recs = leaderboard.collect(res)["_toy"]
        sections, runs = readme_results.select(TOY, recs)
        block = readme_results.render(TOY, sections, runs)
    assert [s.current for s in sections] == [False]
    assert "not the current preset" in block and "seeds 0 other-config |" in block.splitlines()[-2]
    assert readme_results.render(TOY, *readme_results.from_spec(block, recs)) == block

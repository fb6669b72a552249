"""`suite publish` is the only way into leaderboards/: it refuses smoke, rehearsal, dirty-tree and
other-code records with one line (exit 2) and writes nothing then."""
import json

import pytest

from suite import cli, publish, registry, runner
from tests.toy import TOY


@pytest.fixture(autouse=True)
def toy():
    with registry.temporarily(TOY):
        yield


def _run(res, scale="small", seed=0, edit=None):
    rec = runner.execute(runner.RunSpec("_toy", scale, seed), res)
    if edit:
        path = res / "_toy" / scale / f"{rec['config_hash']}-s{seed}" / "result.json"
        rec = json.loads(path.read_text())
        edit(rec)
        path.write_text(json.dumps(rec))
    return rec


def _publish(capsys, res, out, *extra):
    code = cli.main(["publish", "--results", str(res), "--out", str(out), *extra])
    return code, capsys.readouterr()


def _clean(rec):
    rec["env"]["git_dirty"] = False


def test_small_records_are_published_and_pages_rendered(tmp_path, capsys):
    _run(tmp_path / "res", edit=_clean)
    code, out = _publish(capsys, tmp_path / "res", tmp_path / "lb")
    assert code == 0, out.err
    assert len((tmp_path / "lb" / "records" / "_toy.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "lb" / "_toytrack.md").exists()


@pytest.mark.parametrize("case,needle", [
    ("smoke", "smoke-scale record"),
    ("dirty", "dirty tree"),
    ("other-code", "other than _toy's committed code"),
    ("rehearsal", "rehearsal"),
])
def test_refused_records_exit_2_with_one_line_and_write_nothing(case, needle, tmp_path, capsys):
    res = tmp_path / "res"
    _run(res, seed=1, edit=_clean)  # a good record beside the bad one: nothing is published either
    if case == "smoke":
        _run(res, scale="smoke", edit=_clean)
    elif case == "dirty":
        _run(res, edit=lambda r: r["env"].update(git_dirty=True))
    elif case == "other-code":
        _run(res, edit=lambda r: (_clean(r), r["env"].update(code_hash="feedfacecafe")))
    else:
        _run(res, edit=lambda r: (_clean(r), r.update(rehearsal=True)))
    code, out = _publish(capsys, res, tmp_path / "lb")
    assert code == 2 and needle in out.err and out.err.count("\n") == 1
    assert not (tmp_path / "lb").exists()


def test_dirty_records_pass_with_allow_dirty(tmp_path, capsys):
    _run(tmp_path / "res", edit=lambda r: r["env"].update(git_dirty=True))
    code, out = _publish(capsys, tmp_path / "res", tmp_path / "lb", "--allow-dirty")
    assert code == 0, out.err


def test_scale_filter_leaves_smoke_records_behind(tmp_path, capsys):
    _run(tmp_path / "res", scale="smoke", edit=_clean)
    _run(tmp_path / "res", edit=_clean)
    code, out = _publish(capsys, tmp_path / "res", tmp_path / "lb", "--scale", "small")
    assert code == 0, out.err
    recs = (tmp_path / "lb" / "records" / "_toy.jsonl").read_text().splitlines()
    assert [json.loads(r)["scale"] for r in recs] == ["small"]


def test_committed_code_hash_matches_a_clean_checkout():
    """For a reproduction whose files are committed and unchanged, HEAD's hash is the working tree's."""
    import subprocess

    from suite import environment

    slug = "fasterpam"
    module = registry.get(slug).module
    files = [str(f.relative_to(environment.REPO_ROOT)) for f in environment.code_files(module)]
    dirty = subprocess.run(["git", "-C", str(environment.REPO_ROOT), "status", "--porcelain", "--", *files],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        pytest.skip("fasterpam's code is modified in this checkout")
    assert publish.committed_code_hash(module) == environment.code_hash(module)


def test_a_republication_names_the_verdicts_it_changes(tmp_path, capsys):
    """A rerun that flips a claim says so (against the published record of the same scale, seed and overrides)."""
    _run(tmp_path / "res", edit=_clean)
    code, out = _publish(capsys, tmp_path / "res", tmp_path / "lb")
    assert code == 0 and "->" not in out.out  # nothing published before: nothing changed

    def flipped(rec):
        _clean(rec)
        rec["claims"]["beats-baseline"]["verdict"] = "fails"
        rec["started"] = "2999-01-01T00:00:00+00:00"  # a later rerun
        rec["config_hash"] = "0" * 12  # of another config: still the same run on the pages

    _run(tmp_path / "res2", edit=flipped)
    code, out = _publish(capsys, tmp_path / "res2", tmp_path / "lb")
    assert code == 0, out.err
    assert "_toy small seed 0: beats-baseline (paper) holds -> fails" in out.out
    assert "slope" not in out.out  # unchanged verdicts are not listed
    code, out = _publish(capsys, tmp_path / "res2", tmp_path / "lb")  # the same records again: nothing new
    assert "holds -> fails" not in out.out


def test_a_publication_names_the_teeth_readings_it_changes(tmp_path, capsys):
    """Records of a broken variant on more seeds change the teeth column: `suite publish` says which, from what
    to what; publishing the same records again changes nothing."""
    def variant_run(res, seed):
        rec = runner.execute(runner.RunSpec("_toy", "small", seed, ("variant=negated",)), res)
        path = res / "_toy" / "small" / f"{rec['config_hash']}-s{seed}" / "result.json"
        data = json.loads(path.read_text())
        _clean(data)
        path.write_text(json.dumps(data))

    for seed in range(3):
        _run(tmp_path / "res", seed=seed, edit=_clean)
    variant_run(tmp_path / "res", 0)
    code, out = _publish(capsys, tmp_path / "res", tmp_path / "lb")
    assert code == 0 and "_toy: beats-baseline (negated) not run -> fails as it should [seed 0]" in out.out
    for seed in (1, 2):
        variant_run(tmp_path / "res2", seed)
    code, out = _publish(capsys, tmp_path / "res2", tmp_path / "lb")
    assert code == 0, out.err
    assert ("_toy: beats-baseline (negated) fails as it should [seed 0] -> fails as it should [seeds 0, 1, 2]"
            in out.out)
    code, out = _publish(capsys, tmp_path / "res2", tmp_path / "lb")
    assert "->" not in out.out


def test_a_render_that_fails_puts_the_record_files_back(tmp_path, capsys, monkeypatch):
    """`suite publish` merges records, then renders the pages: when rendering fails, the record files are as
    they were (a record file ahead of its pages is what a half-done publication would leave)."""
    from suite import leaderboard

    _run(tmp_path / "res", edit=_clean)
    assert _publish(capsys, tmp_path / "res", tmp_path / "lb")[0] == 0
    path = tmp_path / "lb" / "records" / "_toy.jsonl"
    was = path.read_text()
    _run(tmp_path / "res", seed=1, edit=_clean)

    def broken(*a, **k):
        raise OverflowError("a page could not be rendered")
    monkeypatch.setattr(leaderboard, "render", broken)
    with pytest.raises(OverflowError):
        publish.publish(tmp_path / "res", tmp_path / "lb")
    assert path.read_text() == was

"""`suite verify`: rerun a published record with the same code, config and seed; exact comparison of every
non-timing metric and verdict, with the environment fields that differ."""
import json

import pytest

from suite import cli, registry, runner, verify
from suite.errors import SuiteError
from tests.toy import TOY


@pytest.fixture(autouse=True)
def toy():
    with registry.temporarily(TOY):
        yield


def _published(tmp_path, edit=None):
    rec = runner.execute(runner.RunSpec("_toy", "small", 0), tmp_path / "made")
    if edit:
        edit(rec)
    records = tmp_path / "records"
    records.mkdir(exist_ok=True)
    (records / "_toy.jsonl").write_text(json.dumps(rec) + "\n")
    return records


def test_a_published_record_reproduces(tmp_path):
    rep = verify.verify(verify.published_record("_toy", "small", 0, _published(tmp_path)), results=tmp_path / "again")
    assert rep.reproduces and not rep.differ and not rep.verdicts
    assert rep.identical == len(rep.published["metrics"])  # the toy has no timing metric
    assert "reproduces: %d of %d" % (rep.identical, rep.identical) in verify.describe(rep)


def test_a_published_number_the_code_does_not_give_is_found_with_its_verdict(tmp_path):
    def other_machine(rec):  # what a record made elsewhere (or typed in) looks like
        rec["metrics"]["method_mse"] = rec["metrics"]["baseline_mse"] + 1.0
        rec["claims"]["beats-baseline"]["verdict"] = "fails"
        rec["metrics"]["slope"] += 1e-15  # a last-bit difference counts too
        rec["env"]["cpu"], rec["env"]["packages"] = "another CPU", {**rec["env"]["packages"], "scipy": "0.1"}

    pub = verify.published_record("_toy", "small", 0, _published(tmp_path, other_machine))
    rep = verify.verify(pub, results=tmp_path / "again")
    assert not rep.reproduces
    assert [k for k, _, _ in rep.differ] == ["method_mse", "slope"]
    assert rep.verdicts == [("beats-baseline", "fails", "holds")]
    assert ("cpu", "another CPU", rep.rerun["env"]["cpu"]) in rep.env and ("scipy", "0.1", rep.rerun["env"]["packages"]["scipy"]) in rep.env
    text = verify.describe(rep)
    assert "does NOT reproduce: 2 of" in text and "verdict beats-baseline: published fails, now holds" in text
    assert rep.largest_relative_difference > 0.1 and "largest relative difference" in text


def test_cli_exit_codes_and_no_work_without_a_record(tmp_path, capsys):
    records = _published(tmp_path)
    assert cli.main(["verify", "_toy", "--records", str(records), "--results", str(tmp_path / "r1")]) == 0
    assert cli.main(["verify", "_toy", "--seed", "5", "--records", str(records),
                     "--results", str(tmp_path / "r2")]) == 2
    assert "no published record" in capsys.readouterr().err and not (tmp_path / "r2").exists()
    with pytest.raises(SuiteError, match="publish one first"):
        verify.published_record("_toy", "small", 0, tmp_path / "empty")

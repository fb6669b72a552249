import json
import subprocess
import sys

import pytest

from suite import cli, registry
from suite.errors import SuiteError
from tests.toy import TOY


@pytest.fixture(autouse=True)
def toy():
    with registry.temporarily(TOY):
        yield


def run_cli(*args, capsys=None):
    code = cli.main(list(args))
    out = capsys.readouterr() if capsys else None
    return code, out


def test_parse_seeds():
    assert cli.parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    for bad in ("a", "3-1", ""):
        with pytest.raises(SuiteError):
            cli.parse_seeds(bad)


@pytest.mark.parametrize("args,needle", [
    (["run", "_tyo"], "did you mean '_toy'"),
    (["run", "_toy", "--scale", "smal"], "did you mean 'small'"),
    (["run", "_toy", "--set", "nn=3"], "unknown config key 'nn'"),
    (["run", "_toy", "--set", "n=x"], "bad value 'x'"),
    (["run", "--track", "nope"], "unknown track"),
    (["run", "_toy", "--seeds", "x"], "bad --seeds"),
    (["run", "_toy", "--seeds", "0-100000"], "at most 1000"),
    (["run", "_toy", "--seeds", "99999999999"], "must lie in"),
    (["run", "_toy", "--device", "meta"], "cannot run a reproduction"),
    (["run", "_toy", "--device", "mps"], "MPS is not available"),
    (["show", "zzz"], "unknown reproduction"),
])
def test_bad_input_exits_2_with_one_line(args, needle, capsys, tmp_path):
    code, out = run_cli(*args, "--results", str(tmp_path), capsys=capsys) if args[0] == "run" else run_cli(*args, capsys=capsys)
    assert code == 2
    assert needle in out.err and out.err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_run_json_then_status_skip_and_leaderboard(capsys, tmp_path):
    code, out = run_cli("run", "_toy", "--scale", "small", "--seeds", "0-1", "--results", str(tmp_path / "r"),
                        "--json", capsys=capsys)
    assert code == 0
    recs = [json.loads(line) for line in out.out.splitlines()]
    assert [r["seed"] for r in recs] == [0, 1] and all(r["status"] == "ok" for r in recs)
    code, out = run_cli("run", "_toy", "--scale", "small", "--seeds", "0", "--results", str(tmp_path / "r"),
                        "--set", "fail=true", capsys=capsys)
    assert code == 1 and "FAILED" in out.out
    code, out = run_cli("leaderboard", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "lb"),
                        capsys=capsys)
    assert code == 0 and "2 records from" in out.out
    assert "holds (2/2)" in (tmp_path / "lb" / "_toytrack.md").read_text()
    assert not (tmp_path / "lb" / "records").exists()  # a local view: no records written


def test_results_that_is_a_file_or_unwritable_exits_2(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, out = run_cli("run", "_toy", "--results", str(f), capsys=capsys)
    assert code == 2 and "is a file" in out.err and out.err.count("\n") == 1


def test_corrupt_result_is_redone_not_fatal(capsys, tmp_path):
    code, _ = run_cli("run", "_toy", "--results", str(tmp_path), capsys=capsys)
    (path,) = tmp_path.rglob("result.json")
    path.write_text("{trunc")
    code, out = run_cli("run", "_toy", "--results", str(tmp_path), capsys=capsys)
    assert code == 0 and "skipped" in out.err and json.loads(path.read_text())["status"] == "ok"


def test_show_and_list_read_the_index_not_the_code():
    """`suite list` must not import torch (it answers at once on a fresh machine)."""
    out = subprocess.run([sys.executable, "-c", "import sys; from suite import cli; cli.main(['list']); "
                          "cli.main(['show', 'fasterpam']); print('torch' in sys.modules)"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("False") and "fasterpam" in out.stdout


def test_index_is_in_sync_with_the_code():
    from suite import index

    assert index.dumps(index.build()) == index.dumps(index.load()), \
        "reproductions/index.json is out of date: run `suite index --write`"


def test_data_list_fits_100_columns_and_show_names_the_layout(capsys, tmp_path):
    code, out = run_cli("data", "list", "--data-root", str(tmp_path), capsys=capsys)
    assert code == 0 and max(map(len, out.out.splitlines())) <= 100
    code, out = run_cli("data", "show", "cifar-10", capsys=capsys)
    assert code == 0 and "cifar-10-batches-py" in out.out and "how:" in out.out


def test_dry_run_and_show(capsys, tmp_path):
    code, out = run_cli("run", "_toy", "--scale", "full", "--dry-run", "--results", str(tmp_path), capsys=capsys)
    assert code == 0 and "dry run" in out.out and not any(tmp_path.iterdir())
    code, out = run_cli("show", "_toy", capsys=capsys)
    assert code == 0 and "beats-baseline" in out.out and "n = 100000" in out.out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "suite.cli", "run", "definitely-not-a-paper"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown reproduction" in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.bench
@pytest.mark.parametrize("args", [["list"], ["show", "fasterpam"], ["--help"]])
def test_metadata_commands_answer_at_once(args, tmp_path):
    """`suite list`, `show` and `--help` on an idle machine: median of 5 under 0.5 s, peak RSS under
    100 MiB (GNU time's %M of the command itself)."""
    import shutil
    import statistics
    import time

    gnu_time = shutil.which("time") or "/usr/bin/time"
    times, peaks = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        out = subprocess.run([gnu_time, "-f", "%M", "-o", str(tmp_path / "rss"), sys.executable, "-m",
                              "suite.cli", *args], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr
        peaks.append(int((tmp_path / "rss").read_text().split()[-1]) / 1024)
    print(f"suite {' '.join(args)}: median {statistics.median(times):.3f} s, peak {max(peaks):.0f} MiB")
    assert statistics.median(times) < 0.5 and max(peaks) < 100


def test_teeth_on_several_seeds_and_a_defect_exits_1(capsys, tmp_path):
    """``suite teeth --seeds 0-2`` reads each seed against the method's run of that seed; a claim its broken
    variant still holds exits 1."""
    import dataclasses

    res = str(tmp_path / "r")
    code, out = run_cli("teeth", "_toy", "--seeds", "0-2", "--results", res, capsys=capsys)
    assert code == 0 and "fails as it should [seeds 0, 1, 2]" in out.out
    assert sorted(p.name.rsplit("-s", 1)[1] for p in (tmp_path / "r" / "_toy" / "small").iterdir()) == \
        ["0", "0", "1", "1", "2", "2"], "the variant and the method each ran on seeds 0-2"
    loose = dataclasses.replace(TOY.claims[0], op="<", ref=1e9)  # any MSE is below 1e9: the variant holds it too
    with registry.temporarily(dataclasses.replace(TOY, claims=(loose,) + TOY.claims[1:])):
        code, out = run_cli("teeth", "_toy", "--seeds", "0-2", "--results", res, capsys=capsys)
    assert code == 1 and "still holds: defect [holds on seeds 0, 1, 2 of 3]" in out.out
    code, out = run_cli("teeth", "_toy", "--seeds", "x", "--results", str(tmp_path / "new"), capsys=capsys)
    assert code == 2 and "bad --seeds" in out.err and not (tmp_path / "new").exists()

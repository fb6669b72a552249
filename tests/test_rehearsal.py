"""`suite run <slug> --scale full --rehearse` (suite/rehearsal.py): the full path end to end on fixtures.

The default run rehearses three representative reproductions (warm_start: ResNet-18 on the CIFAR-10
fixture; io_vs_es: BBH-format files and a tiny random Llama generating through transformers; mig: the
annotated instruction pool in jsonl with its label embeddings); `-m slow` rehearses every reproduction
that declares its budget cuts (reproductions/<slug>/rehearsal.toml).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from suite import publish, registry, rehearsal, runner
from suite.errors import ConfigError, SuiteError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["warm_start", "io_vs_es", "mig"]
DECLARED = sorted(s for s in registry.discover() if not s.startswith("_") and rehearsal.declaration(s).exists())


def _rehearse(slug: str, tmp_path: Path) -> dict:
    recs = [runner.execute(s, tmp_path, device="cpu", rehearse=True)
            for s in runner.full_runs(runner.RunSpec(slug, "full", 0), rehearse=True)]
    rec = recs[0]
    assert rec["status"] == "rehearsal", rec.get("traceback", rec.get("error"))
    # every claim expected at full was evaluated by one of the full run's configurations (or is declared)
    missing, _ = rehearsal.unevaluated(slug, [r for r in recs if r["status"] == "rehearsal"])
    assert not missing, f"{slug}: claims expected at full never evaluated: {missing}"
    # the checkpoints the resume pass read are named in the record, then deleted (they filled CI's disk)
    for r in recs:
        folder = tmp_path / slug / "rehearsal" / f"{r['config_hash']}-s0"
        assert (folder / "result.json").exists() and not list(folder.glob("checkpoint*.pt")), folder
    return rec


@pytest.mark.parametrize("slug", DEFAULT)
def test_rehearsal_runs_the_full_path_on_fixtures(slug, tmp_path):
    rec = _rehearse(slug, tmp_path)
    assert rec["rehearsal"] is True and rec["scale"] == "full"
    # the budgets were cut by the declared overrides, on top of the full preset
    for kv in rehearsal.budget_overrides(slug):
        assert kv in rec["overrides"]
    # fixtures, never the paper's data
    assert rec["dataset"]["provenance"] == "stand-in" and rec["dataset"]["name"].endswith("-fixture")
    assert all(c["dataset"]["provenance"] == "stand-in" for c in rec["claims"].values())
    # every claim expected at full was evaluated (from metrics the full path measured): see _rehearse
    full_claims = [c.id for c in registry.get(slug).claims if "full" in c.scales]
    assert all(rec["claims"][cid]["verdict"] in ("holds", "fails") for cid in full_claims)
    # both passes ran on the simulated second device: a tensor left on the host would have raised
    assert rec["notes"]["device_check"].startswith("cpu:1")
    resume = rec["notes"]["rehearsal_resume"]
    assert resume["metrics_identical"], resume["metrics_differing"]
    # stored apart, never reused as a full run, refused by publish
    path = tmp_path / slug / "rehearsal" / f"{rec['config_hash']}-s0" / "result.json"
    assert json.loads(path.read_text())["status"] == "rehearsal"
    assert not runner.is_done(runner.RunSpec(slug, "full", 0), tmp_path)
    assert "rehearsal" in (publish.refusal(rec, str(path), {}, allow_dirty=True) or "")


def test_rehearse_needs_full_scale_and_a_declaration(tmp_path, monkeypatch):
    with pytest.raises(SuiteError, match="--scale full"):
        runner.execute(runner.RunSpec("mig", "small", 0), tmp_path, rehearse=True)
    # every reproduction declares its cuts today; an undeclared one stops before any work
    assert DECLARED == sorted(s for s in registry.discover() if not s.startswith("_"))
    monkeypatch.setattr(rehearsal, "declaration", lambda slug: tmp_path / "absent" / "rehearsal.toml")
    with pytest.raises(ConfigError, match="rehearsal.toml"):
        runner.execute(runner.RunSpec("mig", "full", 0), tmp_path / "results", rehearse=True)
    assert not (tmp_path / "results").exists()


def test_rehearse_cli_bad_input_exits_2(tmp_path):
    for extra in (["--scale", "small", "--rehearse"], ["--scale", "full", "--rehearse", "--dry-run"]):
        p = subprocess.run([sys.executable, "-m", "suite.cli", "run", "mig", *extra, "--results", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_every_declared_budget_names_config_fields():
    for slug in DECLARED:
        spec = runner.rehearsal_spec(runner.RunSpec(slug, "full", 0))
        _, cfg, _ = runner.resolve(spec)  # an unknown field or a bad value raises here
        cut = [kv.split("=", 1)[0] for kv in rehearsal.budget_overrides(slug)]
        assert cut and all(hasattr(cfg, k) for k in cut), slug


# Full paths that would crash on a GPU: the rehearsal's device check (suite/devicecheck.py) raises where CUDA
# would. Each is a real bug, listed until fixed (a fix changes the reproduction's code and stales its records,
# so it is rerun with it). The test fails both ways: a listed bug that no longer raises must leave this list.
DEVICE_BUGS: dict[str, str] = {}  # none today: localist_llm and layer_lottery were fixed in session 9


@pytest.mark.slow
@pytest.mark.parametrize("slug", DECLARED)
def test_rehearse_every_declared_reproduction(slug, tmp_path):
    if slug in DEVICE_BUGS:
        rec = runner.execute(runner.RunSpec(slug, "full", 0), tmp_path, device="cpu", rehearse=True)
        assert rec["status"] != "rehearsal" and "DeviceMixError" in (rec.get("error") or ""), \
            f"{slug} rehearses cleanly now: remove it from DEVICE_BUGS"
        return
    rec = _rehearse(slug, tmp_path)
    assert rec["rehearsal"] is True and rec["dataset"]["provenance"] == "stand-in"


def test_timing_metrics_are_recognised_and_others_are_not():
    timing = ["wall_s", "latency_s", "hw_t_float_ms", "hw_latency_ratio", "step_speedup@p=3", "tokens_per_s"]
    assert all(rehearsal.is_timing(m) for m in timing)
    assert not any(rehearsal.is_timing(m) for m in ["mse", "loss", "msa_acc", "acc_dense", "ece_ts"])


def test_a_declared_timing_metric_is_not_compared_between_passes():
    assert "ppp_per_point_cost_ratio" in rehearsal.declared_timing("ppp")
    assert rehearsal.is_timing("ppp_per_point_cost_ratio", rehearsal.declared_timing("ppp"))
    assert not rehearsal.is_timing("ppp_per_point_cost_ratio")


def test_declared_model_fixtures_are_written_where_the_full_preset_reads(tmp_path):
    """rehearsal.toml [models]: the harness writes a tiny model at <data root>/<cfg.field>; bad entries exit 2."""
    _, cfg, _ = runner.resolve(runner.rehearsal_spec(runner.RunSpec("codegen2", "full", 0)))
    assert rehearsal.write_models("codegen2", cfg, tmp_path) == [cfg.model_dir]
    assert (tmp_path / cfg.model_dir / "config.json").exists()
    for slug in DECLARED:  # every declared entry names a config field of the full preset
        _, c, _ = runner.resolve(runner.rehearsal_spec(runner.RunSpec(slug, "full", 0)))
        assert all(hasattr(c, f) for f in rehearsal.model_fixtures(slug)), slug


def test_a_model_fixture_never_overwrites_an_absolute_path(tmp_path, monkeypatch):
    import dataclasses

    _, cfg, _ = runner.resolve(runner.RunSpec("codegen2", "full", 0))
    with pytest.raises(ConfigError, match="relative to the data root"):
        rehearsal.write_models("codegen2", dataclasses.replace(cfg, model_dir=str(tmp_path / "real")), tmp_path)
    bad = tmp_path / "rehearsal.toml"
    bad.write_text('[budget]\nsteps = 1\n[models]\nmodel_dir = "not a table"\n')
    monkeypatch.setattr(rehearsal, "declaration", lambda slug: bad)
    with pytest.raises(ConfigError, match=r"\[models\]"):
        rehearsal.model_fixtures("codegen2")
    with pytest.raises(ConfigError, match=r"\[models\]"):  # refused before the dry run writes anything
        runner.execute(runner.RunSpec("codegen2", "full", 0), tmp_path / "results", device="cpu", rehearse=True)
    assert not (tmp_path / "real").exists() and not (tmp_path / "results").exists()


def test_an_unevaluated_claim_makes_the_rehearsal_incomplete(tmp_path, monkeypatch):
    """A claim expected at full whose metric the full path never produced: `suite run --rehearse` exits 1
    naming it, unless [unevaluated] declares it with a reason; bad declarations exit 2 before any work."""
    from suite import cli

    toml = tmp_path / "rehearsal.toml"
    base = rehearsal.declaration("fasterpam").read_text()
    # the catalog's 60-image MNIST fixture cannot hold k = 100 medoids: C4-speedup-k100 goes unmeasured
    toml.write_text(base.split("[budget]")[0] + "[budget]\nn = 40\nks = [2, 4, 8]\nextra_ns = [50]\n"
                    "random_inits = 2\nmax_iter = 10\n")
    monkeypatch.setattr(rehearsal, "declaration", lambda slug: toml)
    argv = ["run", "fasterpam", "--scale", "full", "--rehearse", "--device", "cpu", "--results", str(tmp_path / "r")]
    assert cli.main(argv) == 1
    toml.write_text(toml.read_text() + '[unevaluated]\nC4-speedup-k100 = "k = 100 needs more than the fixture"\n')
    assert rehearsal.unevaluated("fasterpam", [])[1] == {"C4-speedup-k100": "k = 100 needs more than the fixture"}
    assert cli.main(argv + ["--force"]) == 0
    for bad in ('[unevaluated]\nno-such-claim = "a reason of four words"\n',
                '[unevaluated]\nC4-speedup-k100 = "why"\n',
                '[data]\n"/abs" = {writer = "suite.data.mnist:write_fixture"}\n',
                '[job_budget]\nno_such_job = ["n=3"]\n'):
        toml.write_text(bad + base.split("[data]")[0])
        with pytest.raises(ConfigError):
            runner.rehearsal_spec(runner.RunSpec("fasterpam", "full", 0))


def test_a_declared_data_fixture_replaces_the_catalogs(tmp_path):
    """fasterpam's [data] table writes a 240-image MNIST in the IDX layout, so k = 100 is rehearsed."""
    from suite.data import mnist

    assert [r for r, _, _ in rehearsal.data_fixtures("fasterpam")] == ["mnist"]
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "stale").write_text("the catalog's fixture")
    assert rehearsal.write_data("fasterpam", tmp_path) == ["mnist"]
    assert not (tmp_path / "mnist" / "stale").exists()
    assert len(mnist.load(tmp_path / "mnist")["train"].y) == 240


def test_a_multi_configuration_full_run_rehearses_each_configuration():
    """lottery_ticket's §4 networks are declared full jobs: a full run (and --rehearse) runs the preset and
    both jobs, each job with its [job_budget] cuts; --set runs only the configuration asked for."""
    runs = runner.full_runs(runner.RunSpec("lottery_ticket", "full", 0))
    assert [dict(kv.split("=", 1) for kv in r.overrides).get("arch") for r in runs] == [None, "vgg19", "resnet18"]
    vgg = runner.rehearsal_spec(runs[1]).overrides
    assert vgg[-len(rehearsal.job_budget("lottery_ticket")["vgg19"]):] == rehearsal.job_budget("lottery_ticket")["vgg19"]
    assert "rounds=2" not in runner.rehearsal_spec(runs[0]).overrides  # the preset gets [budget] only
    one = runner.RunSpec("lottery_ticket", "full", 0, ("arch=vgg19",))
    assert runner.full_runs(one) == [one]
    assert len(runner.full_runs(runner.RunSpec("mig", "full", 0))) == 1
    assert len(runner.full_runs(runner.RunSpec("lottery_ticket", "small", 0))) == 1


def test_an_assembled_experiment_runs_one_job_per_part_and_rehearses_whole():
    """s4d declares Assembly(split="lra_tasks"): a full run or submission is one job per LRA task (the
    leaderboard assembles them); its rehearsal stays one run, whose record evaluates the lra-avg claims."""
    from reproductions.s4d import LRA_TASKS

    runs = runner.full_runs(runner.RunSpec("s4d", "full", 0))
    assert [r.overrides for r in runs] == [(f"lra_tasks={t}",) for t in LRA_TASKS]
    assert [runner.resolve(r)[1].lra_tasks for r in runs] == [(t,) for t in LRA_TASKS]
    assert runner.full_runs(runner.RunSpec("s4d", "full", 0), rehearse=True) == [runner.RunSpec("s4d", "full", 0)]


def test_differing_metrics_skip_timings_count_one_sided_metrics_and_equal_nans():
    """One comparison for the rehearsal's resume check and `suite verify`: a NaN in both passes is the same value
    (the resume check once compared with != and would call it a difference), a metric in one pass only differs."""
    a = {"acc": 0.5, "gap": float("nan"), "wall_s": 3.0, "ppp_per_point_cost_ratio": 1.0, "only_a": 1.0}
    b = {"acc": 0.5, "gap": float("nan"), "wall_s": 9.0, "ppp_per_point_cost_ratio": 2.0, "extra": 2.0}
    assert rehearsal.differing_metrics("ppp", a, b) == ["extra", "only_a"]
    assert rehearsal.differing_metrics("ppp", a, {**b, "acc": 0.5 + 1e-16}) == ["acc", "extra", "only_a"]

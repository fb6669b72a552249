"""Generic contract applied to every registered reproduction (benchopt's idea).

For each reproduction: metadata complete, all three scales resolve, the smoke run finishes and
yields every metric that its smoke-scale claims name, and those claims hold; the record matches the
schema, and ``--dry-run`` of the full config builds without training.
"""
import pytest

from suite import config, registry, runner
from suite.spec import SCALES

SLUGS = [s for s in registry.discover() if not s.startswith("_")]
KEYS = {"schema", "reproduction", "scale", "seed", "config", "config_hash", "metrics", "claims",
        "dataset", "env", "started", "wall_s", "peak_mem_mb", "status", "error"}


@pytest.mark.parametrize("slug", SLUGS)
def test_metadata_and_scales(slug):
    r = registry.get(slug)
    assert r.paper.title and r.paper.authors and r.paper.year > 1900
    assert r.claims and all(c.text and c.metric for c in r.claims)
    hashes = {config.config_hash(slug, config.resolve(r, s)) for s in SCALES}
    assert len(hashes) == 3, "smoke, small and full must be different configs"
    assert any("smoke" in c.scales for c in r.claims), "no claim is checked at smoke scale"


@pytest.mark.parametrize("slug", SLUGS)
def test_smoke_run_meets_contract(slug, tmp_path):
    r = registry.get(slug)
    rec = runner.execute(runner.RunSpec(slug, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("traceback", rec.get("error"))
    assert KEYS <= set(rec)
    assert rec["dataset"]["provenance"] in ("paper", "paper-subset", "stand-in")
    for c in r.claims:
        verdict = rec["claims"][c.id]["verdict"]
        if "smoke" in c.scales:  # a claim checked at smoke: its metrics exist and it holds
            for m in c.metrics_needed:
                assert rec["metrics"].get(m) is not None, f"claim {c.id} needs metric {m!r}, not produced"
            assert verdict == "holds", f"claim {c.id}: {rec['claims'][c.id]}"
        else:
            assert verdict == "not-expected"


@pytest.mark.parametrize("slug", SLUGS)
def test_full_dry_run_builds(slug, tmp_path):
    rec = runner.execute(runner.RunSpec(slug, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run" and not any(tmp_path.iterdir())

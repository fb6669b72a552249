"""Teeth: every paper claim's named broken variant, run at small scale (seed 0), makes it fail.

`pytest -m slow -k teeth` runs them all (minutes to an hour: small scale); the default run checks
that every paper claim declares teeth or says why none can exist, and that the names resolve.
"""
import pytest

from suite import registry, runner, teeth

SLUGS = [s for s in registry.discover() if not s.startswith("_")]
CASES = [(slug, v) for slug in SLUGS for v in sorted(teeth.by_variant(registry.get(slug)))]


@pytest.mark.parametrize("slug", SLUGS)
def test_every_claim_has_a_kind_and_every_paper_claim_has_teeth(slug):
    r = registry.get(slug)
    for c in r.claims:
        assert c.kind in ("paper", "check"), f"{slug}: claim {c.id} has no kind"
        if c.kind == "paper":
            assert c.teeth or c.no_teeth, f"{slug}: paper claim {c.id} names no teeth"
    assert not teeth.check_declared(r)


@pytest.mark.slow
@pytest.mark.parametrize("slug,variant", CASES, ids=[f"teeth-{s}-{v}" for s, v in CASES])
def test_teeth(slug, variant, tmp_path):
    r = registry.get(slug)
    rec = runner.execute(runner.RunSpec(slug, teeth.TEETH_SCALE, teeth.TEETH_SEED, teeth.overrides(variant)),
                         tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("traceback", rec.get("error"))
    still = [c.id for c in teeth.by_variant(r)[variant] if teeth.judge(c, rec, None) != teeth.OK]
    assert not still, f"{slug}: under variant {variant!r} these claims did not fail: {still}"

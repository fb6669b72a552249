import sys

import pytest

from suite import registry
from suite.errors import ReproductionImportError, UnknownNameError
from tests.toy import TOY


def test_every_reproduction_is_complete():
    repros = registry.discover()
    assert repros, "no reproduction registered"
    for slug, r in repros.items():
        assert r.slug == slug and r.track and r.paper.title and r.paper.year
        assert set(r.scales) >= {"smoke", "small", "full"}
        assert r.claims, f"{slug} declares no claims"


def test_unknown_slug_suggests_closest():
    with registry.temporarily(TOY):
        with pytest.raises(UnknownNameError, match="did you mean '_toy'"):
            registry.get("_tyo")
        with pytest.raises(UnknownNameError, match="unknown track"):
            registry.by_track("nope")
        assert registry.get("_toy") is TOY
        assert "_toytrack" in registry.tracks()
    assert "_toy" not in registry.discover()


def test_nested_temporarily_restores_the_enclosing_entry():
    import dataclasses

    other = dataclasses.replace(TOY, claims=TOY.claims[:1])
    with registry.temporarily(TOY):
        with registry.temporarily(other):
            assert registry.get("_toy") is other
        assert registry.get("_toy") is TOY, "leaving the inner block dropped the outer registration"
    assert "_toy" not in registry.discover()


def test_broken_reproduction_fails_loudly(monkeypatch, tmp_path):
    import reproductions

    pkg = tmp_path / "zz_broken"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.setattr(reproductions, "__path__", [*reproductions.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_DISCOVERED", False)
    with pytest.raises(ReproductionImportError, match="zz_broken.*does_not_exist_anywhere"):
        registry.discover()
    sys.modules.pop("reproductions.zz_broken", None)


def test_decorator_rejects_missing_scale():
    from dataclasses import dataclass

    @dataclass
    class C:
        x: int = 1

    with pytest.raises(TypeError, match="full"):
        registry.reproduction(track="t", paper=TOY.paper, config=C,
                              scales={"smoke": {}, "small": {}}, claims=[], slug="_x")(lambda c, x: None)


def test_full_jobs_are_declared_and_claims_bound_to_them_are_full_scale():
    from dataclasses import dataclass

    from suite.spec import Claim

    @dataclass
    class C:
        arch: str = "a"
        n: int = 1

    def declare(jobs, claims):
        registry.reproduction(track="t", paper=TOY.paper, config=C, scales={"smoke": {}, "small": {}, "full": {}},
                              claims=claims, slug="_jobs", jobs=jobs)(lambda c, x: None)

    bound = Claim(id="c", kind="check", text="t", metric="m", op=">", ref=0.0, scales=("full",), job="big")
    with pytest.raises(TypeError, match="undeclared jobs"):
        declare({}, [bound])
    with pytest.raises(TypeError, match="'field=value' overrides of config fields"):
        declare({"big": ("width=3",)}, [bound])
    with pytest.raises(ValueError, match="full scale only"):
        Claim(id="c", kind="check", text="t", metric="m", op=">", ref=0.0, job="big")
    try:
        declare({"big": ("arch=b",)}, [bound])
        r = registry.get("_jobs")
        assert r.job_of("full", {"arch": "b", "n": 5}) == "big" and r.job_of("full", {"arch": "a"}) is None
        assert r.job_of("small", {"arch": "b"}) is None
    finally:
        registry._REGISTRY.pop("_jobs", None)

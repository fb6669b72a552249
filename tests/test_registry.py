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

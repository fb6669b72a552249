import types
import typing
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from suite import config, registry
from suite.errors import ConfigError, UnknownNameError
from suite.spec import SCALES
from tests.toy import TOY, ToyConfig


def test_scale_preset_then_overrides():
    cfg = config.resolve(TOY, "small", ["noise=0.5", "ks=3,5", "broken=true"])
    assert cfg == ToyConfig(n=2000, noise=0.5, broken=True, ks=(3, 5))


def test_unknown_key_names_closest_and_valid_keys():
    with pytest.raises(UnknownNameError) as exc:
        config.resolve(TOY, "smoke", ["nosie=0.3"])
    msg = str(exc.value)
    assert "did you mean 'noise'" in msg and "valid keys: n, noise" in msg and "\n" not in msg


@pytest.mark.parametrize("override", ["n=abc", "n=1.5", "broken=maybe", "noise=x"])
def test_bad_value_is_one_line_error(override):
    with pytest.raises(ConfigError) as exc:
        config.resolve(TOY, "smoke", [override])
    assert "\n" not in str(exc.value) and override.split("=")[0] in str(exc.value)


def test_not_key_value_and_unknown_scale():
    with pytest.raises(ConfigError):
        config.resolve(TOY, "smoke", ["n"])
    with pytest.raises(UnknownNameError, match="did you mean 'small'"):
        config.resolve(TOY, "smal")


def test_literal_optional_and_tuple_coercion():
    @dataclass
    class C:
        kind: Literal["a", "b"] = "a"
        maybe: Optional[int] = None
        pair: tuple[float, float] = (0.0, 1.0)

    assert config.coerce("b", C.__annotations__["kind"] if False else Literal["a", "b"], "kind") == "b"
    with pytest.raises(ConfigError, match="one of a, b"):
        config.coerce("c", Literal["a", "b"], "kind")
    assert config.coerce("none", Optional[int], "maybe") is None
    assert config.coerce("7", Optional[int], "maybe") == 7
    assert config.coerce("[1, 2.5]", tuple[float, float], "pair") == (1.0, 2.5)
    with pytest.raises(ConfigError):
        config.coerce("1,2,3", tuple[float, float], "pair")


def test_config_hash_is_pinned():
    # Pinned on purpose: a change here renames every run folder of existing results.
    assert config.config_hash("_toy", ToyConfig()) == "b5ed3f3165de"  # since the toy gained `variant`
    assert config.config_hash("_toy", ToyConfig(n=200)) == "d5bfb83f09bd"
    assert config.config_hash("other", ToyConfig()) != config.config_hash("_toy", ToyConfig())


def test_hash_changes_with_any_field():
    base = config.config_hash("_toy", ToyConfig())
    assert config.config_hash("_toy", ToyConfig(noise=0.1000001)) != base
    assert config.config_hash("_toy", ToyConfig(ks=(1, 2))) != base


@pytest.mark.parametrize("slug", [s for s, r in registry.discover().items()
                                  if "variant" in config.field_types(r.config)])
def test_bad_variant_of_a_reproduction_names_the_choices(slug):
    # `variant` is a Literal field: `--set variant=bogus` fails in resolve, before any run starts.
    repro = registry.get(slug)
    choices = typing.get_args(config.field_types(repro.config)["variant"])
    assert repro.config().variant in choices
    with pytest.raises(ConfigError) as exc:
        config.resolve(repro, "smoke", ["variant=bogus"])
    msg = str(exc.value)
    assert "variant" in msg and all(c in msg for c in choices) and "\n" not in msg


# --- declared ranges of the registered reproductions ------------------------------------------

def _numeric_leaves(tp, path="", ranged=False):
    """``(path, ranged)`` for every int/float inside ``tp``: a range counts when it annotates the number
    itself, or an Optional number (``Annotated[int | None, Range(1)]``); one on a whole tuple does not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        has = any(isinstance(m, config.Range) for m in tp.__metadata__)
        yield from _numeric_leaves(args[0], path, ranged or has)
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            yield from _numeric_leaves(a, path, ranged)
    elif origin in (tuple, list):
        for i, a in enumerate(args):
            if a is not Ellipsis:
                yield from _numeric_leaves(a, f"{path}[{i}]", False)
    elif tp in (int, float):
        yield path, ranged


def _numeric_fields(cls):
    return {k: list(_numeric_leaves(tp, k)) for k, tp in config.field_types(cls).items()}


def test_numeric_leaves_walker():
    @dataclass
    class C:
        a: int = 1
        b: typing.Annotated[int, config.Range(1)] = 1
        c: tuple[typing.Annotated[float, config.Range(0)], ...] = ()
        d: typing.Annotated[tuple[int, ...], config.Range(1)] = ()
        e: typing.Annotated[int | None, config.Range(1)] = None
        f: typing.Annotated[int, config.Range(1)] | None = None
        g: Optional[float] = None
        h: str = ""
        i: bool = False

    got = {k: [r for _, r in v] for k, v in _numeric_fields(C).items()}
    assert got == {"a": [False], "b": [True], "c": [True], "d": [False], "e": [True], "f": [True], "g": [False],
                   "h": [], "i": []}


@pytest.mark.parametrize("slug", sorted(registry.discover()))
def test_every_numeric_config_field_declares_a_range(slug):
    # Every int/float field (also inside tuples/lists/Optional) of every reproduction carries a Range, so an
    # out-of-range `--set` stops in resolve with one line; a new reproduction is born with ranges.
    missing = [p for leaves in _numeric_fields(registry.get(slug).config).values() for p, ranged in leaves
               if not ranged]
    assert not missing, (f"{slug}: numeric config fields without a Range: {', '.join(missing)}; write e.g. "
                         f"`n: Annotated[int, Range(1)] = 1000` (from suite.config import Range)")


@pytest.mark.parametrize("slug,scale", [(s, sc) for s in sorted(registry.discover()) for sc in SCALES])
def test_every_scale_preset_resolves(slug, scale):
    # Defaults and presets pass the declared ranges and the config's validate().
    cfg = config.resolve(registry.get(slug), scale)
    assert isinstance(cfg, registry.get(slug).config)


def test_optional_range_coerces_none_and_checks_numbers():
    for tp in (typing.Annotated[int | None, config.Range(1)], typing.Annotated[int, config.Range(1)] | None):
        assert config.coerce("none", tp, "k") is None and config.coerce(None, tp, "k") is None
        assert config.coerce("3", tp, "k") == 3
        with pytest.raises(ConfigError):
            config.coerce("0", tp, "k")


AUDIT_CASES = [  # out-of-range `--set` values found in the audit: each stops before a run starts
    ("fasterpam", ["n=-5"], "'n'"),
    ("fasterpam", ["ks=5,100", "n=50"], "ks=5,100"),
    ("fasterpam", ["random_inits=-1"], "'random_inits'"),
    ("treepo", ["lr=-1"], "'lr'"),
]


@pytest.mark.parametrize("slug,overrides,needle", AUDIT_CASES)
def test_out_of_range_override_fails_in_resolve(slug, overrides, needle):
    with pytest.raises(ConfigError) as exc:
        config.resolve(registry.get(slug), "smoke", overrides)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("slug,overrides,needle", AUDIT_CASES)
def test_out_of_range_override_exits_2_with_one_line_and_no_run_folder(slug, overrides, needle, capsys, tmp_path):
    from suite import cli

    sets = [a for o in overrides for a in ("--set", o)]
    code = cli.main(["run", slug, "--scale", "smoke", *sets, "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())

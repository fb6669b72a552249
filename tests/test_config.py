import typing
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from suite import config, registry
from suite.errors import ConfigError, UnknownNameError
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

"""Typed configs: a dataclass per reproduction, a preset per scale, ``key=value`` overrides.

``resolve(repro, scale, overrides)`` starts from the dataclass defaults, applies the scale preset,
then the overrides (each coerced to the field's declared type), and returns the config instance.
Ranges are declared with the field, ``n: Annotated[int, Range(1)] = 1000`` (also inside tuples:
``tuple[Annotated[int, Range(1)], ...]``), and relations between fields in an optional
``validate(self)`` method of the config that raises ``ConfigError``; both are checked when the config
resolves, so an out-of-range value stops with one line before any run starts.
``config_hash`` is a stable hash of the canonical resolved config; it names the run folder, so a
test pins a few values: renaming a field or changing a default renames runs, on purpose only.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from typing import Annotated, Any, Iterable, Literal, Mapping, Union, get_args, get_origin

from suite.errors import ConfigError, UnknownNameError
from suite.spec import SCALES

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed interval of a numeric config field: ``lo <= value <= hi`` (either end ``None`` for
    unbounded); ``open_lo``/``open_hi`` exclude that end (``Range(0, open_lo=True)`` is ``> 0``)."""
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def check(self, value: Any) -> None:
        if value is None:
            return
        if self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo)):
            raise ValueError(f"must be {'>' if self.open_lo else '>='} {self.lo}")
        if self.hi is not None and (value > self.hi or (self.open_hi and value == self.hi)):
            raise ValueError(f"must be {'<' if self.open_hi else '<='} {self.hi}")


def field_types(cls: type) -> dict[str, Any]:
    """Declared type of each config field, ``Annotated[...]`` ranges kept."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _bare(tp: Any) -> Any:
    return get_args(tp)[0] if get_origin(tp) is Annotated else tp


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Coerce ``value`` (a string from the command line, or a Python value) to type ``tp``."""
    origin, args = get_origin(tp), get_args(tp)
    try:
        if origin is Annotated:
            out = coerce(value, args[0], key)
            for rule in (m for m in tp.__metadata__ if isinstance(m, Range)):
                rule.check(out)
            return out
        if tp is Any:
            return value
        if origin is Literal:
            for choice in args:
                if value == choice or (isinstance(value, str) and str(choice) == value):
                    return choice
            raise ValueError(f"must be one of {', '.join(map(str, args))}")
        if origin in (Union, types.UnionType):
            if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in {"none", "null"})):
                return None
            errors = []
            for arg in (a for a in args if a is not type(None)):
                try:
                    return coerce(value, arg, key)
                except ConfigError as exc:
                    errors.append(str(exc))
            raise ValueError(f"does not fit {tp}")
        if origin in (tuple, list):
            items = _split(value)
            if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                out = [coerce(v, args[0], key) for v in items]
            elif origin is tuple and args:
                if len(items) != len(args):
                    raise ValueError(f"needs {len(args)} comma-separated values")
                out = [coerce(v, a, key) for v, a in zip(items, args)]
            else:
                out = [coerce(v, args[0] if args else Any, key) for v in items]
            return tuple(out) if origin is tuple else out
        if tp is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError("must be true or false")
        if tp is int:
            if isinstance(value, bool):
                raise ValueError("must be an integer")
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("must be an integer")
            return int(str(value).replace("_", "")) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError("must be a number")
            return float(value)
        if tp is str:
            return str(value)
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        raise ValueError(f"unsupported field type {tp}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value {value!r} for config key '{key}' ({_typename(tp)}): {exc}") from None


def _split(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    s = str(value).strip()
    if s.startswith(("[", "(")) and s.endswith(("]", ")")):
        s = s[1:-1]
    return [v.strip() for v in s.split(",") if v.strip()] if s else []


def _typename(tp: Any) -> str:
    tp = _bare(tp)
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value; write e.g. --set n=500")
        key, val = item.split("=", 1)
        out[key.strip()] = val
    return out


def apply(cls: type, base: Mapping[str, Any], changes: Mapping[str, Any], owner: str) -> dict[str, Any]:
    types_ = field_types(cls)
    merged = dict(base)
    for key, val in changes.items():
        if key not in types_:
            close = difflib.get_close_matches(key, list(types_), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UnknownNameError(
                f"unknown config key '{key}' for {owner}; {hint}valid keys: {', '.join(types_)}")
        merged[key] = coerce(val, types_[key], key)
    return merged


def resolve(repro: Any, scale: str, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Any:
    """The config instance for ``repro`` at ``scale`` with ``overrides`` applied."""
    if scale not in SCALES:
        close = difflib.get_close_matches(scale, SCALES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(f"unknown scale '{scale}'; {hint}valid: {', '.join(SCALES)}")
    cls = repro.config
    defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    values = apply(cls, defaults, repro.scales[scale], f"{repro.slug} (scale preset '{scale}')")
    changes = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    values = apply(cls, values, changes, repro.slug)
    cfg = cls(**values)
    # Defaults and presets pass through the same checks as overrides: a range declared with the
    # field holds for every value a run can get.
    for key, tp in field_types(cls).items():
        coerce(getattr(cfg, key), tp, key)
    if hasattr(cfg, "validate"):
        cfg.validate()  # relations between fields; raises ConfigError naming the keys to change
    return cfg


def canonical(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), sort_keys=True))


def config_hash(slug: str, cfg: Any) -> str:
    """12 hex digits of sha256 over the reproduction name and the canonical resolved config."""
    return hash_canonical(slug, canonical(cfg))


def hash_canonical(slug: str, config: dict[str, Any]) -> str:
    """:func:`config_hash` of a config already in canonical form (e.g. one read from a record)."""
    blob = json.dumps({"reproduction": slug, "config": config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]

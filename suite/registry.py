"""The ``@reproduction`` decorator and discovery of every ``reproductions/<slug>`` package.

A reproduction package declares itself at import time::

    @reproduction(track="clustering", paper=Paper(...), config=Config,
                  scales={"smoke": {...}, "small": {...}, "full": {...}}, claims=[...])
    def run(cfg: Config, ctx: RunContext) -> Outcome: ...

Discovery imports every sub-package of ``reproductions``; one that fails to import raises
:class:`ReproductionImportError` (it never silently vanishes from the list).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from suite.errors import ReproductionImportError, UnknownNameError
from suite.spec import SCALES, Assembly, Claim, Outcome, Paper, Plot, Resources, Table

RunFn = Callable[[Any, Any], Outcome]


@dataclass(frozen=True)
class Reproduction:
    slug: str
    track: str
    paper: Paper
    config: type
    scales: Mapping[str, Mapping[str, Any]]
    claims: tuple[Claim, ...]
    run: RunFn
    resources: Mapping[str, Resources] = field(default_factory=dict)
    plots: tuple[Plot, ...] = ()
    tables: tuple[Table, ...] = ()
    module: str = ""
    assembly: Assembly | None = None
    jobs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise UnknownNameError(_unknown("claim", claim_id, [c.id for c in self.claims], self.slug))

    def resources_for(self, scale: str) -> Resources:
        return self.declared_resources(scale) or Resources()

    def declared_resources(self, scale: str, overrides: Sequence[str] = ()) -> Resources | None:
        """What the reproduction declares for a run: ``resources["<scale>:<part>"]`` when the run is the
        full job or assembly part ``part`` (:meth:`part_of`) and that key is declared, else
        ``resources[scale]``; ``None`` when neither is."""
        part = self.part_of(overrides)
        if part is not None and f"{scale}:{part}" in self.resources:
            return self.resources[f"{scale}:{part}"]
        return self.resources.get(scale)

    def part_of(self, overrides: Sequence[str]) -> str | None:
        """The name of the job (``jobs=``) or assembly part whose overrides are exactly ``overrides``
        (``("datasets=camelyon17",)`` -> ``"camelyon17"``), else ``None``."""
        overrides = tuple(overrides)
        for job, ov in self.jobs.items():
            if ov == overrides:
                return job
        if self.assembly is not None and len(overrides) == 1 and overrides[0].startswith(f"{self.assembly.split}="):
            return overrides[0].split("=", 1)[1]
        return None

    @functools.cached_property
    def _job_values(self) -> dict[str, dict[str, Any]]:
        """Per job, the canonical values its overrides set (``{"vgg19": {"arch": "vgg19", ...}}``)."""
        from suite import config as config_mod

        out = {}
        for name, overrides in self.jobs.items():
            cfg = config_mod.canonical(config_mod.resolve(self, "full", overrides))
            out[name] = {k: cfg[k] for k in map(_override_key, overrides)}
        return out

    def job_of(self, scale: str, config: Mapping[str, Any]) -> str | None:
        """The full-scale job a canonical config belongs to: the declared job whose override values it
        carries (the most specific one if several do); None for the preset's configs and below full."""
        if scale != "full" or not self.jobs:
            return None
        best, size = None, 0
        for name, values in self._job_values.items():
            if len(values) > size and all(config.get(k) == v for k, v in values.items()):
                best, size = name, len(values)
        return best


def _override_key(kv: str) -> str:
    """The config field of a ``field=value`` override."""
    return kv.split("=", 1)[0].strip()


_REGISTRY: dict[str, Reproduction] = {}
_DISCOVERED = False


def reproduction(
    *,
    track: str,
    paper: Paper,
    config: type,
    scales: Mapping[str, Mapping[str, Any]],
    claims: Sequence[Claim],
    resources: Mapping[str, Resources] | None = None,
    plots: Sequence[Plot] = (),
    tables: Sequence[Table] = (),
    slug: str | None = None,
    assembly: Assembly | None = None,
    jobs: Mapping[str, Sequence[str]] | None = None,
) -> Callable[[RunFn], RunFn]:
    """Register the decorated ``run(cfg, ctx) -> Outcome`` as a reproduction."""

    def deco(fn: RunFn) -> RunFn:
        module = fn.__module__
        name = slug or module.split(".")[1 if module.startswith("reproductions.") else -1]
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"{name}: config must be a dataclass type")
        missing = [s for s in SCALES if s not in scales]
        if missing:
            raise TypeError(f"{name}: scales {missing} have no preset; every reproduction defines {SCALES}")
        ids = [c.id for c in claims]
        if len(set(ids)) != len(ids):
            raise TypeError(f"{name}: duplicate claim ids {ids}")
        repro = Reproduction(
            slug=name, track=track, paper=paper, config=config, scales=dict(scales),
            claims=tuple(claims), run=fn, resources=dict(resources or {}), plots=tuple(plots),
            tables=tuple(tables), module=module, assembly=assembly,
            jobs={k: tuple(v) for k, v in (jobs or {}).items()},
        )
        fields = {f.name for f in dataclasses.fields(config)}
        if assembly is not None and assembly.split not in fields:
            raise TypeError(f"{name}: assembly.split={assembly.split!r} is not a config field")
        for job, overrides in repro.jobs.items():
            keys = [_override_key(kv) for kv in overrides]
            if not job.isidentifier() or not overrides or any("=" not in kv for kv in overrides) \
                    or not set(keys) <= fields:
                raise TypeError(f"{name}: job {job!r} must be a name with 'field=value' overrides of config fields, "
                                f"got {list(overrides)}")
        for key in repro.resources:
            scale, _, part = key.partition(":")
            if scale not in SCALES or (part and part not in _parts(repro, scale)):
                raise TypeError(f"{name}: resources key {key!r} must be a scale {SCALES} or '<scale>:<part>' naming a "
                                f"job or an assembly part of that scale: {sorted(_parts(repro, scale)) or 'none'}")
        unbound = sorted({c.job for c in claims if c.job is not None} - set(repro.jobs))
        if unbound:
            raise TypeError(f"{name}: claims name undeclared jobs {unbound}; declare them in jobs={{...}}")
        from suite import teeth

        problems = teeth.check_declared(repro)
        if problems:
            raise TypeError("; ".join(problems))
        _REGISTRY[name] = repro
        return fn

    return deco


def _parts(repro: Reproduction, scale: str) -> set[str]:
    """The names a ``resources`` key may give after ``<scale>:``: the jobs, and at full the assembly's parts."""
    out = set(repro.jobs) if scale == "full" else set()
    if repro.assembly is not None and scale == "full":
        from suite import config as config_mod

        out |= {str(p) for p in config_mod.canonical(config_mod.resolve(repro, "full"))[repro.assembly.split]}
    return out


def discover() -> dict[str, Reproduction]:
    """Import every ``reproductions.<slug>`` package once; a failing import raises loudly."""
    global _DISCOVERED
    if not _DISCOVERED:
        import reproductions

        for info in sorted(pkgutil.iter_modules(reproductions.__path__), key=lambda m: m.name):
            if not info.ispkg or info.name.startswith("_"):
                continue
            try:
                importlib.import_module(f"reproductions.{info.name}")
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                raise ReproductionImportError(
                    f"reproduction '{info.name}' failed to import ({last}); "
                    f"fix it or run `python -c 'import reproductions.{info.name}'` for the traceback"
                ) from exc
        _DISCOVERED = True
    return dict(sorted(_REGISTRY.items()))


def get(slug: str) -> Reproduction:
    """One reproduction; imports only its own package when it is not registered yet (fast job
    start-up on a cluster). An unknown name discovers all of them to suggest the closest."""
    if slug not in _REGISTRY and slug.isidentifier() and not _DISCOVERED:
        try:
            importlib.import_module(f"reproductions.{slug}")
        except ModuleNotFoundError as exc:
            if exc.name != f"reproductions.{slug}":
                raise ReproductionImportError(
                    f"reproduction '{slug}' failed to import ({exc}); fix it or run "
                    f"`python -c 'import reproductions.{slug}'` for the traceback") from exc
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise ReproductionImportError(
                f"reproduction '{slug}' failed to import ({type(exc).__name__}: {exc}); fix it or run "
                f"`python -c 'import reproductions.{slug}'` for the traceback") from exc
    if slug not in _REGISTRY:
        repros = discover()
        if slug not in repros:
            raise UnknownNameError(_unknown("reproduction", slug, list(repros)))
    return _REGISTRY[slug]


def tracks() -> list[str]:
    return sorted({r.track for r in discover().values()})


def by_track(track: str) -> list[Reproduction]:
    known = tracks()
    if track not in known:
        raise UnknownNameError(_unknown("track", track, known))
    return [r for r in discover().values() if r.track == track]


def _unknown(kind: str, name: str, valid: Sequence[str], owner: str = "") -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    where = f" for {owner}" if owner else ""
    return f"unknown {kind} '{name}'{where}; {hint}valid: {', '.join(valid) or '(none)'}"


def add(repro: Reproduction) -> None:
    """Register a :class:`Reproduction` built elsewhere (a test's, a plugin's, one a spawned rank received) without
    discovering the ``reproductions`` package; an already registered slug keeps its entry."""
    _REGISTRY.setdefault(repro.slug, repro)


class temporarily:
    """Register a reproduction for the duration of a ``with`` block (tests, examples); on leaving it, the slug's
    earlier entry (an enclosing block's) comes back."""

    def __init__(self, repro: Reproduction) -> None:
        self.repro = repro
        self.before: Reproduction | None = None

    def __enter__(self) -> Reproduction:
        discover()
        self.before = _REGISTRY.get(self.repro.slug)
        _REGISTRY[self.repro.slug] = self.repro
        return self.repro

    def __exit__(self, *exc: object) -> None:
        if self.before is None:
            _REGISTRY.pop(self.repro.slug, None)
        else:
            _REGISTRY[self.repro.slug] = self.before

"""Teeth: every paper claim names the broken variant that must make it fail (REPRODUCTION.md §5).

A claim's ``teeth`` is a value of its reproduction's ``variant`` config field. ``suite teeth <slug>``
runs each such variant at small scale, seed 0 (an ordinary run with ``--set variant=<v>``, stored
and publishable like any record) and checks that every claim naming it fails there, against the
unbroken method's own small seed-0 run (run too, or reused when stored): a claim the unbroken method
already fails gives no evidence either way. The leaderboard reads the same records back for its
teeth column (:func:`judge`).
"""
from __future__ import annotations

import typing
from collections import defaultdict
from pathlib import Path
from typing import Any

from suite import config, registry
from suite.spec import Claim

TEETH_SCALE = "small"
TEETH_SEED = 0
OK = "fails as it should"
DEFECT = "still holds: defect"
NO_EVIDENCE = "fails, but so does the unbroken method (no evidence either way)"


def variant_choices(repro: registry.Reproduction) -> tuple[str, ...]:
    """The values the config's ``variant`` field accepts (a ``Literal``), or () without one."""
    tp = config.field_types(repro.config).get("variant")
    return tuple(str(a) for a in typing.get_args(tp)) if typing.get_origin(tp) is typing.Literal else ()


def by_variant(repro: registry.Reproduction) -> dict[str, list[Claim]]:
    """Broken variant -> the claims (paper claims, and checks that declare teeth) it must break."""
    out: dict[str, list[Claim]] = defaultdict(list)
    for c in repro.claims:
        if c.teeth:
            out[c.teeth].append(c)
    return dict(out)


def overrides(variant: str) -> tuple[str, ...]:
    return (f"variant={variant}",)


def config_hash(repro: registry.Reproduction, variant: str, scale: str = TEETH_SCALE) -> str:
    """The config hash of the teeth run of ``variant`` (the ``scale`` preset with that variant)."""
    return config.config_hash(repro.slug, config.resolve(repro, scale, overrides(variant)))


def reading(broken: str | None, unbroken: str | None = None) -> str:
    """What a broken variant's verdict on a claim (None: no run) says, given the unbroken method's verdict on
    the same scale and seed (None: unknown): fails as it should, still holds (a defect), no evidence
    either way (the method fails too), or why it says nothing."""
    if broken is None:
        return "not run"
    said = {"fails": OK, "holds": DEFECT}.get(broken, f"{broken} under the broken variant")
    return NO_EVIDENCE if said == OK and unbroken == "fails" else said


def judge(claim: Claim, broken: dict[str, Any] | None, unbroken: dict[str, Any] | None,
          scale: str = TEETH_SCALE) -> str:
    """:func:`reading` of the broken variant's record against the unbroken method's record of the same scale
    and seed (None: read the broken run on its own), both checked against the claim as declared now: when the
    method fails the claim too, the failure shows nothing."""
    def v(rec: dict[str, Any] | None) -> str | None:
        return claim.check(rec.get("metrics") or {}, scale)["verdict"] if rec is not None else None
    return reading(v(broken), v(unbroken))


def check_declared(repro: registry.Reproduction) -> list[str]:
    """Problems with the teeth a reproduction declares (empty when all is well)."""
    choices = variant_choices(repro)
    problems = []
    for c in repro.claims:
        if c.teeth and c.teeth not in choices:
            problems.append(f"{repro.slug}: claim {c.id} names teeth {c.teeth!r}, not a value of its "
                            f"config's variant field ({', '.join(choices) or 'no variant field'})")
        if c.teeth and TEETH_SCALE not in c.scales:
            problems.append(f"{repro.slug}: claim {c.id} has teeth but is not expected at {TEETH_SCALE} "
                            f"scale, where teeth run")
    return problems


def run(slug: str, results_root: Path, *, device: str | None = None, force: bool = False,
        data_root: Path | None = None, show_progress: bool = False) -> list[dict[str, Any]]:
    """Run every teeth variant of ``slug`` (small, seed 0), and the unbroken method's small seed-0 run
    they are read against (reused when stored with the current code); one row per claim that names a
    variant."""
    from suite import runner

    repro = registry.get(slug)
    variants = by_variant(repro)
    if not variants:
        return []

    def execute(ov: tuple[str, ...]) -> dict[str, Any]:
        return runner.execute(runner.RunSpec(slug, TEETH_SCALE, TEETH_SEED, ov), results_root, device=device,
                              force=force, data_root=data_root, show_progress=show_progress)
    base = execute(())
    unbroken = base if base.get("status") == "ok" else None
    rows = []
    for variant, claims in sorted(variants.items()):
        rec = execute(overrides(variant))
        ok = rec.get("status") == "ok"
        for c in claims:
            rows.append({"reproduction": slug, "claim": c.id, "kind": c.kind, "variant": variant,
                         "verdict": judge(c, rec, unbroken) if ok else f"run failed: {rec.get('error')}",
                         "value": (rec.get("claims") or {}).get(c.id, {}).get("value") if ok else None,
                         "unbroken": ((unbroken or {}).get("claims") or {}).get(c.id, {}).get("value")})
    return rows

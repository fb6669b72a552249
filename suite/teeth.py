"""Teeth: every paper claim names the broken variant that must make it fail (REPRODUCTION.md §5).

A claim's ``teeth`` is a value of its reproduction's ``variant`` config field. ``suite teeth <slug>``
runs each such variant at small scale, seed 0 by default (``--seeds 0-2``: each seed; an ordinary run
with ``--set variant=<v>``, stored and publishable like any record) and checks that every claim naming
it fails there, against the unbroken method's own small run of the same seed (run too, or reused when
stored): a claim the unbroken method already fails on that seed gives no evidence either way. The
leaderboard reads the same records back for its teeth column (:func:`across_seeds`).

One seed of the broken variant can fail by chance where the method's own seeds scatter widely: when the
variant's failure rests on one seed (it ran on seed 0 alone, or the method fails the claim on its other
seeds) and its margin there (how far inside the claim's holding region, :func:`margin`) lies less than
``SPREAD_Z`` standard deviations of the method's seeds below the method's mean margin, the failure reads
``WEAK`` (within the method's seed spread): more seeds of the variant, each read against the method's run
of that seed, can settle it.
"""
from __future__ import annotations

import statistics
import typing
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import config, registry
from suite.spec import Claim

TEETH_SCALE = "small"
TEETH_SEED = 0
OK = "fails as it should"
DEFECT = "still holds: defect"
NO_EVIDENCE = "fails, but so does the unbroken method (no evidence either way)"
WEAK = "fails, but within the method's seed spread (weak evidence)"
# a failure on one seed counts as evidence when its margin lies at least this many of the method's seed
# standard deviations below the method's mean margin (fixed before reading any record: ~95% of a normal)
SPREAD_Z = 2.0


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


def margin(entry: dict[str, Any] | None) -> float | None:
    """How far a claim entry (``Claim.check``'s: value, target, op, tol) lies inside the region where the
    claim holds (negative: outside it), in the claim's units; None without two numbers."""
    if not entry:
        return None
    v, t, op, tol = entry.get("value"), entry.get("target"), entry.get("op"), entry.get("tol") or 0.0
    if not isinstance(v, (int, float)) or not isinstance(t, (int, float)) or isinstance(v, bool):
        return None
    if op in (">=", ">"):
        return v - (t - tol if op == ">=" else t + tol)
    if op in ("<=", "<"):
        return (t + tol if op == "<=" else t - tol) - v
    return tol - abs(v - t)  # ==


def spread_z(broken: dict[str, Any] | None, unbroken: list[dict[str, Any]]) -> float | None:
    """(mean − broken) / sd of the margins: how many of the method's seed standard deviations the broken
    variant's margin lies below the method's mean (None without two method margins; inf where they agree)."""
    b = margin(broken)
    ms = [m for m in map(margin, unbroken) if m is not None and m == m]
    if b is None or b != b or len(ms) < 2:
        return None
    sd = statistics.stdev(ms)
    return (statistics.mean(ms) - b) / sd if sd > 0 else float("inf")


@dataclass(frozen=True)
class Verdict:
    """The teeth of one claim over the broken variant's seeds: ``status`` (``OK``, ``DEFECT``, ``NO_EVIDENCE``,
    ``WEAK`` or another :func:`reading`), the cell's ``text`` (the status and the seeds it rests on) and
    ``seeds``, those of the variant's runs that bite (the reading's evidence; empty unless it fails as it should
    or weakly)."""
    status: str
    text: str
    seeds: tuple[int, ...] = ()


def seeds_text(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def across_seeds(broken: dict[int, dict[str, Any] | None], unbroken: dict[int, dict[str, Any]]) -> Verdict:
    """The teeth of a claim from its claim entries (value, target, op, tol, verdict): ``broken`` the variant's
    per seed, ``unbroken`` the method's (same scale) per seed. Each broken seed is :func:`reading` against the
    method's run of that seed: any seed where the variant holds while the method holds too is a defect; the
    variant bites when it fails on every seed the method holds. Where that evidence is one seed (the variant ran
    on one, or the method fails the others), a failure inside the method's seed spread (:func:`spread_z` below
    ``SPREAD_Z``) is ``WEAK``."""
    if not broken:
        return Verdict("not run", "not run")
    seeds = sorted(broken)
    said = {s: reading((broken[s] or {}).get("verdict"), (unbroken.get(s) or {}).get("verdict")) for s in seeds}
    defects = [s for s in seeds if said[s] == DEFECT]
    other = [s for s in seeds if said[s] not in (OK, DEFECT, NO_EVIDENCE)]
    ok = [s for s in seeds if said[s] == OK]
    moot = [s for s in seeds if said[s] == NO_EVIDENCE]
    if defects:
        where = seeds_text(defects) if len(seeds) == 1 else f"holds on {seeds_text(defects)} of {len(seeds)}"
        return Verdict(DEFECT, f"{DEFECT} [{where}]")
    if other:
        return Verdict(said[other[0]], f"{said[other[0]]} [{seeds_text(other)}]")
    if not ok:
        return Verdict(NO_EVIDENCE, f"{NO_EVIDENCE} [{seeds_text(seeds)}]")
    also = f"; on {seeds_text(moot)} the method fails too" if moot else ""
    if len(ok) == 1:  # the evidence is one seed: is its failure outside the method's seed spread?
        z = spread_z(broken[ok[0]], list(unbroken.values()))
        if z is not None and z < SPREAD_Z:
            more = "; run it on seeds 0-2" if len(seeds) == 1 else also
            return Verdict(WEAK, f"{WEAK} [{seeds_text(ok)}: z = {z:.2f} < {SPREAD_Z:g}{more}]", tuple(ok))
    return Verdict(OK, f"{OK} [{seeds_text(ok)}{also}]", tuple(ok))


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


def run(slug: str, results_root: Path, *, seeds: tuple[int, ...] = (TEETH_SEED,), device: str | None = None,
        force: bool = False, data_root: Path | None = None, show_progress: bool = False) -> list[dict[str, Any]]:
    """Run every teeth variant of ``slug`` (small, on each of ``seeds``), and the unbroken method's small runs
    of the same seeds they are read against (reused when stored with the current code); one row per claim
    that names a variant, its :func:`across_seeds` verdict in ``verdict`` (``status``: the bare reading)."""
    from suite import runner

    repro = registry.get(slug)
    variants = by_variant(repro)
    if not variants:
        return []

    def execute(ov: tuple[str, ...], seed: int) -> dict[str, Any]:
        return runner.execute(runner.RunSpec(slug, TEETH_SCALE, seed, ov), results_root, device=device,
                              force=force, data_root=data_root, show_progress=show_progress)

    def entry(c: Claim, rec: dict[str, Any]) -> dict[str, Any]:
        return c.check(rec.get("metrics") or {}, TEETH_SCALE)
    base = {s: r for s in seeds if (r := execute((), s)).get("status") == "ok"}
    rows = []
    for variant, claims in sorted(variants.items()):
        recs = {s: execute(overrides(variant), s) for s in seeds}
        failed = next((r for r in recs.values() if r.get("status") != "ok"), None)
        for c in claims:
            if failed is not None:
                v = Verdict("run failed", f"run failed: {failed.get('error')}")
            else:
                v = across_seeds({s: entry(c, r) for s, r in recs.items()}, {s: entry(c, r) for s, r in base.items()})
            rows.append({"reproduction": slug, "claim": c.id, "kind": c.kind, "variant": variant, "seeds": seeds,
                         "verdict": v.text, "status": v.status,
                         "value": [entry(c, r)["value"] if failed is None else None for r in recs.values()],
                         "unbroken": [entry(c, base[s])["value"] if s in base else None for s in seeds]})
    return rows

"""The metadata index: what ``suite list`` and ``suite show`` print, readable without importing any
reproduction (and so without torch): ``reproductions/index.json``.

It is generated from the code (``suite index --write``) and a test keeps it in sync: a
reproduction whose title, claims, presets or config hashes change fails that test until the index
is rewritten.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

INDEX = Path(__file__).resolve().parent.parent / "reproductions" / "index.json"


def entry(repro: Any) -> dict[str, Any]:
    """The index entry of one registered reproduction."""
    from suite import config

    scales = {}
    for scale in ("smoke", "small", "full"):
        cfg = config.resolve(repro, scale)
        scales[scale] = {"config_hash": config.config_hash(repro.slug, cfg), "config": config.canonical(cfg),
                         "resources": dataclasses.asdict(repro.resources_for(scale))}
    claims = [{"id": c.id, "kind": c.kind, "text": c.text, "metric": c.metric, "op": c.op, "ref": c.ref,
               "tol": c.tol, "scales": list(c.scales), "paper": c.paper, "paper_note": c.paper_note,
               "teeth": c.teeth, "no_teeth": c.no_teeth, **({"job": c.job} if c.job else {})}
              for c in repro.claims]
    out = {"slug": repro.slug, "track": repro.track, "paper": dataclasses.asdict(repro.paper),
           "claims": claims, "scales": scales}
    parts = {k: dataclasses.asdict(r) for k, r in repro.resources.items() if ":" in k}
    if parts:  # full jobs / assembly parts that declare their own resources
        out["part_resources"] = parts
    if repro.jobs:  # the full protocol's further configurations (suite run/submit at full run each)
        out["full_jobs"] = {name: {"overrides": list(o), "config_hash": config.config_hash(
            repro.slug, config.resolve(repro, "full", o))} for name, o in repro.jobs.items()}
    return out


def build() -> dict[str, Any]:
    from suite import registry

    return {slug: entry(r) for slug, r in registry.discover().items() if not slug.startswith("_")}


def dumps(index: dict[str, Any]) -> str:
    return json.dumps(index, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write() -> Path:
    from suite.io import atomic_write_text

    return atomic_write_text(INDEX, dumps(build()))


def load() -> dict[str, Any]:
    """The committed index ({} when absent)."""
    try:
        return json.loads(INDEX.read_text())
    except FileNotFoundError:
        return {}

"""The vocabulary a reproduction declares: Paper, Claim, Resources, Scale, DatasetRef, Outcome.

A reproduction module (``reproductions/<slug>/__init__.py``) builds one ``Reproduction`` with the
``@reproduction`` decorator of :mod:`suite.registry`; the runner turns a run of it into a result
record (schema in DESIGN.md) whose claim verdicts are computed here by :meth:`Claim.check`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

Scale = Literal["smoke", "small", "full"]
SCALES: tuple[str, ...] = ("smoke", "small", "full")
Provenance = Literal["paper", "paper-subset", "stand-in"]
PROVENANCES: tuple[str, ...] = ("paper", "paper-subset", "stand-in")
Verdict = Literal["holds", "fails", "not-expected", "missing"]
ClaimKind = Literal["paper", "check"]
CLAIM_KINDS: tuple[str, ...] = ("paper", "check")


@dataclass(frozen=True)
class Paper:
    """Identity of the reproduced paper."""

    title: str
    authors: str
    year: int
    venue: str = ""
    url: str = ""  # arXiv / DOI
    code: str = ""  # official repository, if any ("" when none is public)


@dataclass(frozen=True)
class DatasetRef:
    """Which data a run used and where it came from (DESIGN.md: result record ``dataset``)."""

    name: str
    provenance: Provenance

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(f"provenance must be one of {PROVENANCES}, got {self.provenance!r}")

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "provenance": self.provenance}

    @staticmethod
    def combine(*refs: "DatasetRef", name: str | None = None) -> "DatasetRef":
        """One ref for a run over several loaders' data: the names joined with ``+`` (or ``name``)
        and the least real provenance among them (stand-in < paper-subset < paper)."""
        if not refs:
            raise ValueError("combine needs at least one DatasetRef")
        prov = min((r.provenance for r in refs), key=PROVENANCES[::-1].index)
        return DatasetRef(name or "+".join(dict.fromkeys(r.name for r in refs)), prov)

    @staticmethod
    def from_record(d: dict[str, Any] | None) -> "DatasetRef":
        """The ref a stored record's ``dataset`` field holds (the loader set it when the run read
        the data); a record without one counts as stand-in."""
        d = d or {}
        return DatasetRef(str(d.get("name", "?")), d.get("provenance", "stand-in"))

    def renamed(self, name: str) -> "DatasetRef":
        """The same provenance under another name (e.g. a derived view of the loader's data)."""
        return DatasetRef(name, self.provenance)


# Values this close count as equal: float64 rounding of a difference of O(1) quantities is ~1e-16 per
# operation, so a gap of 1e-12 (relative to the operands, absolute below magnitude 1) is arithmetic, not a
# measurement. A strict claim (``>``, ``<``) needs more than that gap; a non-strict one (``>=``, ``<=``,
# ``==``) accepts it. Without it "full rank aligns more than rank 1" held on 1.45e-14 > 0 for two nets
# that had not trained at all (rich_lazy_connectivity, variant untrained).
ROUNDING = 1e-12


def _gap(v: float, t: float) -> float:
    return ROUNDING * max(1.0, abs(v), abs(t))


_OPS: dict[str, Callable[[float, float, float], bool]] = {
    ">=": lambda v, t, tol: v >= t - tol - _gap(v, t),
    "<=": lambda v, t, tol: v <= t + tol + _gap(v, t),
    ">": lambda v, t, tol: v > t + tol + _gap(v, t),
    "<": lambda v, t, tol: v < t - tol - _gap(v, t),
    "==": lambda v, t, tol: abs(v - t) <= tol + _gap(v, t),
}


@dataclass(frozen=True)
class Claim:
    """One checkable statement of the paper.

    ``metric`` names a measured metric (the left-hand side). ``ref`` is either the name of another
    metric measured in the same run (method vs baseline) or a number that bounds a *derived* metric
    (a ratio or difference of two measured quantities, e.g. ``fasterpam_td / pam_td <= 1.01``);
    never a constant standing in for a measurement. ``tol`` widens the comparison:
    ``>=``: value >= ref - tol, ``<=``: value <= ref + tol, ``==``: |value - ref| <= tol; ``>`` / ``<``
    narrow it by ``tol`` (value > ref + tol). Values within float rounding of each other (``ROUNDING``,
    1e-12 relative to the larger operand, absolute below 1) count as equal: a strict comparison fails on
    them, a non-strict one holds.
    ``paper`` is the paper's own number for ``metric`` (for the leaderboard), ``paper_note`` says
    where it comes from or that it is unverified. ``scales`` lists where the claim is expected to hold.

    ``kind``: ``"paper"`` restates a result of the paper (method vs the paper's baselines, an
    efficiency ratio, a trend); only these count on the leaderboard. ``"check"`` is a mechanism or
    invariant (exactness, a formula, shapes), shown as "mechanics verified n/m".
    ``teeth`` names the broken value of the config's ``variant`` field that must make this claim
    fail (``suite teeth`` runs it at small scale, seed 0); a paper claim without one states in
    ``no_teeth`` why no broken variant can exist.

    ``job``: a full protocol made of several configurations (e.g. lottery_ticket's LeNet preset and its
    §4 VGG-19 / Resnet-18 networks) declares them as named ``jobs`` of the reproduction; a claim with
    ``job="vgg19"`` is read from that job's records only, and a paper claim without a job from the preset's
    only; a check without a job (a mechanism) holds in every configuration. Jobs exist at full scale only,
    so a job-bound claim is a full-scale claim.
    """

    id: str
    text: str
    metric: str
    op: str
    ref: str | float
    tol: float = 0.0
    scales: tuple[str, ...] = ("smoke", "small", "full")
    paper: float | None = None
    paper_note: str = ""
    kind: str = ""
    teeth: str | None = None
    no_teeth: str = ""
    job: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim {self.id}: kind must be 'paper' (a result of the paper) or 'check' "
                             f"(a mechanism or invariant), got {self.kind!r}")
        if self.kind == "paper" and not (self.teeth or self.no_teeth):
            raise ValueError(f"claim {self.id}: a paper claim names its teeth (teeth='<variant>') or says "
                             f"why none can exist (no_teeth='...')")
        if self.teeth and self.no_teeth:
            raise ValueError(f"claim {self.id}: give teeth or no_teeth, not both")
        if self.op not in _OPS:
            raise ValueError(f"claim {self.id}: op must be one of {sorted(_OPS)}, got {self.op!r}")
        bad = [s for s in self.scales if s not in SCALES]
        if bad:
            raise ValueError(f"claim {self.id}: unknown scales {bad}; use {SCALES}")
        if self.job is not None and tuple(self.scales) != ("full",):
            raise ValueError(f"claim {self.id}: a claim bound to job {self.job!r} is read at full scale only; "
                             f"set scales=('full',)")

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return (self.metric,) + ((self.ref,) if isinstance(self.ref, str) else ())

    def check(self, metrics: Mapping[str, float], scale: str, job: str | None = None) -> dict[str, Any]:
        """Verdict of this claim on one run's metrics (the record's ``claims[id]`` entry); ``job``: the
        full-scale job the run's config belongs to (None: the preset, or any config below full)."""
        value = metrics.get(self.metric)
        target = metrics.get(self.ref) if isinstance(self.ref, str) else float(self.ref)
        entry: dict[str, Any] = {"value": value, "target": target, "op": self.op, "tol": self.tol,
                                 "paper": self.paper}
        other_job = scale == "full" and job != self.job and (self.job is not None or self.kind == "paper")
        if scale not in self.scales or other_job:
            entry["verdict"] = "not-expected"
        elif value is None or target is None or _nan(value) or _nan(target):
            entry["verdict"] = "missing"
        else:
            entry["verdict"] = "holds" if _OPS[self.op](float(value), float(target), self.tol) else "fails"
        return entry


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


@dataclass(frozen=True)
class Resources:
    """What one run needs on a cluster (merged: profile < reproduction < CLI flags). A reproduction declares
    them per scale (``resources={"full": ...}``) and may give a full job or assembly part its own entry
    (``"full:camelyon17"``: the part ``datasets=camelyon17``; ``"full:vgg19"``: the job ``vgg19``)."""

    cpus: int = 1
    gpus: int = 0
    mem_gb: float = 4.0
    time_min: int = 10
    # ranks of one run (torch.distributed, :mod:`suite.distributed`): one per GPU for a distributed run. The
    # runner spawns them itself on this machine; on Slurm they are the job's tasks (tasks_per_node).
    processes: int = 1
    # machines the ranks spread over (Slurm --nodes; processes / nodes tasks on each). With nodes > 1, cpus, gpus
    # and mem_gb are per node, as Slurm's --cpus-per-task x tasks, --gpus-per-node and --mem count them
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError(f"Resources: processes must be >= 1, got {self.processes}")
        if self.nodes < 1 or self.processes % self.nodes:
            raise ValueError(f"Resources: nodes ({self.nodes}) must be >= 1 and divide processes ({self.processes})")
        if self.gpus > 0 and self.processes // self.nodes > self.gpus:
            raise ValueError(f"Resources: processes per node ({self.processes // self.nodes}) must be <= gpus "
                             f"({self.gpus}): one rank per GPU")


@dataclass(frozen=True)
class Assembly:
    """Parts of one experiment run as separate jobs, put back together by the leaderboard.

    ``split`` names a config field whose value lists the parts (e.g. s4d's ``lra_tasks``): a run with
    one part per job (``--set lra_tasks=listops``) is an array job on a cluster. Records of the same
    reproduction, scale and seed, made by the same code, whose configs differ only in ``split`` and whose
    parts do not overlap, are merged into one record (config: the union of the parts; metrics: the union
    of theirs, then ``derive(metrics)`` adds what needs every part, e.g. an average over tasks). The
    merged record exists only on the page; the committed records stay per job.
    """

    split: str
    derive: Callable[[dict[str, float]], dict[str, float]]


@dataclass(frozen=True)
class Plot:
    """A curve for the leaderboard: y-metrics named ``<y>@<x>=<value>`` plotted against x."""

    name: str
    x: str
    ys: tuple[str, ...]
    title: str = ""
    logx: bool = False
    logy: bool = False
    ylabel: str = ""


@dataclass(frozen=True)
class Table:
    """A grid for the leaderboard: cell (row, col) is the metric ``metric.format(row=, col=)``,
    shown as mean ± std over seeds (e.g. ``metric="worst_env_acc/{row}/{col}"``)."""

    name: str
    metric: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    title: str = ""
    row_label: str = ""


@dataclass
class Outcome:
    """What a reproduction's ``run`` returns: its metrics and the data they were measured on."""

    metrics: dict[str, float]
    dataset: DatasetRef
    notes: dict[str, Any] = field(default_factory=dict)
    # Metrics measured on other data than ``dataset`` (e.g. a full run that still checks a claim on
    # a synthetic set): metric name -> the DatasetRef its loader returned. Each claim's record entry
    # names the dataset of its metric.
    metric_datasets: dict[str, DatasetRef] = field(default_factory=dict)

    def dataset_of(self, metric: str) -> DatasetRef:
        return self.metric_datasets.get(metric, self.dataset)


def curve_metrics(name: str, x: str, xs: Sequence[Any], ys: Sequence[float]) -> dict[str, float]:
    """Metrics ``{name@x=xi: yi}`` for one curve (read back by :class:`Plot`)."""
    return {f"{name}@{x}={xi}": float(yi) for xi, yi in zip(xs, ys)}


__all__ = ["Paper", "Claim", "CLAIM_KINDS", "Resources", "Plot", "Table", "Outcome", "DatasetRef", "Scale", "SCALES",
           "PROVENANCES", "curve_metrics"]

"""Free-format MPS reader/writer (MIPLIB / D-MIPLIB files, spec §5), solver-independent.

Reads ``.mps`` and ``.mps.gz``: ROWS (N/E/L/G), COLUMNS with INTORG/INTEND markers, RHS, BOUNDS
(UP/LO/FX/FR/MI/PL/BV/LI/UI), OBJSENSE. RANGES are read but ignored (the constraint keeps its sense;
FORGE's features have no range slot). Integer columns without bounds get [0, +inf).
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np

from reproductions.forge.instance import BIN, CONT, EQ, GE, INT, LE, MIPInstance
from suite.errors import ConfigError, CorruptDataError

_SENSE = {"E": EQ, "L": LE, "G": GE}
_SENSE_CHR = {EQ: "E", LE: "L", GE: "G"}


def _open(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def read_instance(path: str | os.PathLike[str]) -> MIPInstance:
    """A MIPInstance from an MPS file; ``.lp`` files must be converted to MPS first."""
    path = Path(path)
    if not path.exists():
        from suite.errors import DataNotFoundError
        raise DataNotFoundError(f"MIP file {path} not found; check the instance list or the data root")
    if ".lp" in path.suffixes:
        raise ConfigError(f"{path}: LP format is not read here; convert it to MPS (e.g. `highspy` or SCIP "
                          f"`write problem x.mps`) and list the .mps file")
    try:
        with _open(path) as fh:
            return _parse(fh, path.name)
    except (ValueError, KeyError, IndexError, OSError, EOFError) as e:
        raise CorruptDataError(f"corrupt MPS file {path}: {str(e)[:120]}; obtain the file again") from e


def _parse(fh: io.TextIOBase, name: str) -> MIPInstance:
    section = ""
    obj_row = None
    row_id: dict[str, int] = {}
    senses: list[int] = []
    col_id: dict[str, int] = {}
    col_int: list[bool] = []
    obj: dict[int, float] = {}
    ri: list[int] = []
    ci: list[int] = []
    vv: list[float] = []
    rhs: dict[int, float] = {}
    bounds: list[tuple[str, int, float]] = []
    integer = False
    maximize = False
    for raw in fh:
        line = raw.rstrip("\n")
        if not line.strip() or line.startswith("*"):
            continue
        tok = line.split()
        if not line[0].isspace():  # section header
            section = tok[0].upper()
            if section == "OBJSENSE" and len(tok) > 1:
                maximize = tok[1].upper().startswith("MAX")
            if section == "ENDATA":
                break
            continue
        if section == "OBJSENSE":
            maximize = tok[0].upper().startswith("MAX")
        elif section == "ROWS":
            kind, rname = tok[0].upper(), tok[1]
            if kind == "N":
                obj_row = obj_row or rname
            else:
                row_id[rname] = len(senses)
                senses.append(_SENSE[kind])
        elif section == "COLUMNS":
            if len(tok) >= 3 and tok[1].strip("'\"").upper() == "MARKER":
                integer = "INTORG" in tok[2].upper()
                continue
            cname = tok[0]
            if cname not in col_id:
                col_id[cname] = len(col_int)
                col_int.append(integer)
            j = col_id[cname]
            for rname, val in zip(tok[1::2], tok[2::2]):
                v = float(val)
                if rname == obj_row:
                    obj[j] = v
                elif v != 0.0:
                    ri.append(row_id[rname])
                    ci.append(j)
                    vv.append(v)
        elif section == "RHS":
            pairs = tok[1:] if len(tok) % 2 == 1 else tok
            for rname, val in zip(pairs[0::2], pairs[1::2]):
                if rname in row_id:
                    rhs[row_id[rname]] = float(val)
        elif section == "BOUNDS":
            kind, cname = tok[0].upper(), tok[2]
            bounds.append((kind, col_id[cname], float(tok[3]) if len(tok) > 3 else 0.0))
    m, n = len(senses), len(col_int)
    is_int = np.asarray(col_int, dtype=bool)
    lb, ub = np.zeros(n), np.full(n, np.inf)
    for kind, j, v in bounds:
        if kind == "UP":
            ub[j] = v
            if v < 0 and lb[j] == 0:
                lb[j] = -np.inf
        elif kind == "LO":
            lb[j] = v
        elif kind == "FX":
            lb[j] = ub[j] = v
        elif kind == "FR":
            lb[j], ub[j] = -np.inf, np.inf
        elif kind == "MI":
            lb[j] = -np.inf
        elif kind == "PL":
            ub[j] = np.inf
        elif kind == "BV":
            lb[j], ub[j] = 0.0, 1.0
            is_int[j] = True
        elif kind in ("LI", "UI"):
            is_int[j] = True
            (lb if kind == "LI" else ub)[j] = v
    vtype = np.where(is_int, np.where((lb == 0) & (ub == 1), BIN, INT), CONT).astype(np.int8)
    r = np.zeros(m)
    for i, v in rhs.items():
        r[i] = v
    c = np.zeros(n)
    for j, v in obj.items():
        c[j] = v
    return MIPInstance(np.asarray(ri, np.int64), np.asarray(ci, np.int64), np.asarray(vv, float),
                       np.asarray(senses, np.int8), r, vtype, c, lb, ub, maximize, name).check()


def write_instance(inst: MIPInstance, path: str | os.PathLike[str]) -> None:
    """Write ``inst`` as free MPS (gzip when the name ends in .gz), atomically."""
    path = Path(path)
    out = [f"NAME {inst.name or 'forge'}", "ROWS", " N obj"]
    out += [f" {_SENSE_CHR[int(s)]} c{i}" for i, s in enumerate(inst.sense)]
    if inst.maximize:
        out[1:1] = ["OBJSENSE", "    MAX"]
    out.append("COLUMNS")
    order = np.lexsort((inst.rows, inst.cols))
    rows, cols, vals = inst.rows[order], inst.cols[order], inst.vals[order]
    starts = np.searchsorted(cols, np.arange(inst.n + 1))
    integer = False
    for j in range(inst.n):
        want = int(inst.vtype[j]) != CONT
        if want != integer:
            out.append(f"    M{j} 'MARKER' '{'INTORG' if want else 'INTEND'}'")
            integer = want
        out.append(f"    x{j} obj {float(inst.obj[j])!r}")
        out += [f"    x{j} c{i} {float(v)!r}" for i, v in zip(rows[starts[j]:starts[j + 1]], vals[starts[j]:starts[j + 1]])]
    if integer:
        out.append("    Mend 'MARKER' 'INTEND'")
    out.append("RHS")
    out += [f"    RHS c{i} {float(v)!r}" for i, v in enumerate(inst.rhs) if v != 0]
    out.append("BOUNDS")
    for j in range(inst.n):
        lo, hi = inst.lb[j], inst.ub[j]
        if int(inst.vtype[j]) == BIN:
            out.append(f" BV BND x{j}")
            continue
        if lo == -np.inf and hi == np.inf:
            out.append(f" FR BND x{j}")
            continue
        if lo != 0:
            out.append(f" MI BND x{j}" if lo == -np.inf else f" LO BND x{j} {float(lo)!r}")
        out.append(f" PL BND x{j}" if hi == np.inf else f" UP BND x{j} {float(hi)!r}")
    out.append("ENDATA")
    data = ("\n".join(out) + "\n").encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    from suite.io import atomic_write_bytes
    atomic_write_bytes(path, data)

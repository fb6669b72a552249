"""suite.spec: how a claim compares a value with its target (ops, tol, float rounding)."""
import pytest

from suite.spec import Claim


def _verdict(op: str, value: float, target: float, tol: float = 0.0) -> str:
    c = Claim(id="c", text="", metric="v", op=op, ref="t", tol=tol, kind="check", scales=("small",))
    return c.check({"v": value, "t": target}, "small")["verdict"]


@pytest.mark.parametrize("op,value,target,verdict", [
    # a measured gap decides
    (">", 1e-9, 0.0, "holds"), ("<", -1e-9, 0.0, "holds"), (">=", -1e-9, 0.0, "fails"),
    ("<=", 1e-9, 0.0, "fails"), ("==", 1.0 + 1e-9, 1.0, "fails"),
    # a rounding gap does not: rich_lazy_connectivity's untrained nets, alignment gain 1.45e-14 "> 0"
    (">", 1.454392162258955e-14, 0.0, "fails"), ("<", -2.4e-15, 0.0, "fails"),
    (">=", -4.4e-16, 0.0, "holds"), ("<=", 4.4e-16, 0.0, "holds"), ("==", 0.1 + 0.2, 0.3, "holds"),
    # relative to the operands: 1e-7 on 1e6 is rounding, 1e-3 is not
    (">", 1e6 + 1e-7, 1e6, "fails"), (">", 1e6 + 1e-3, 1e6, "holds"), ("==", 1e6 + 1e-7, 1e6, "holds"),
    # exact ties: strict fails, non-strict holds
    (">", 2.0, 2.0, "fails"), (">=", 2.0, 2.0, "holds"), ("==", 0.0, 0.0, "holds"),
])
def test_rounding_gaps_count_as_ties(op, value, target, verdict):
    assert _verdict(op, value, target) == verdict


@pytest.mark.parametrize("op,value,target,tol,verdict", [
    (">=", 0.95, 1.0, 0.1, "holds"), (">=", 0.85, 1.0, 0.1, "fails"),
    ("<=", 1.05, 1.0, 0.1, "holds"), ("==", 1.05, 1.0, 0.1, "holds"), ("==", 1.2, 1.0, 0.1, "fails"),
    (">", 1.05, 1.0, 0.1, "fails"), (">", 1.2, 1.0, 0.1, "holds"), ("<", 0.85, 1.0, 0.1, "holds"),
])
def test_tol_widens_non_strict_and_narrows_strict(op, value, target, tol, verdict):
    assert _verdict(op, value, target, tol) == verdict


def test_missing_and_nan_are_missing():
    c = Claim(id="c", text="", metric="v", op=">", ref=0.0, kind="check", scales=("small",))
    assert c.check({}, "small")["verdict"] == "missing"
    assert c.check({"v": float("nan")}, "small")["verdict"] == "missing"
    assert c.check({"v": 1.0}, "smoke")["verdict"] == "not-expected"

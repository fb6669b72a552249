"""Reading a broken variant's runs across seeds (suite.teeth.across_seeds) and the seed-spread rule."""
import math

import pytest

from suite import teeth


def entry(value, target=0.0, op=">", tol=0.0):
    """A claim entry as Claim.check stores it (the verdict from the plain comparison: the margin's sign)."""
    e = {"value": value, "target": target, "op": op, "tol": tol}
    e["verdict"] = "holds" if teeth.margin(e) > 0 else "fails"
    return e


@pytest.mark.parametrize("op,value,target,tol,want", [
    (">", 3.0, 1.0, 0.5, 1.5), (">=", 3.0, 1.0, 0.5, 2.5), ("<", 1.0, 3.0, 0.5, 1.5), ("<=", 1.0, 3.0, 0.5, 2.5),
    ("==", 2.1, 2.0, 0.3, 0.2), ("==", 2.5, 2.0, 0.3, -0.2)])
def test_margin_is_the_distance_inside_the_holding_region(op, value, target, tol, want):
    assert teeth.margin({"value": value, "target": target, "op": op, "tol": tol}) == pytest.approx(want)


def test_margin_needs_two_numbers():
    assert teeth.margin({"value": None, "target": 1.0, "op": ">"}) is None
    assert teeth.margin(None) is None


def test_one_seed_inside_the_methods_spread_is_weak_evidence():
    """Method margins 0.5, 4, 9 (mean 4.5, sd 4.27); the variant fails by 0.5 on seed 0: z = 1.17 < 2."""
    method = {0: entry(0.5), 1: entry(4.0), 2: entry(9.0)}
    v = teeth.across_seeds({0: entry(-0.5)}, method)
    assert v.status == teeth.WEAK and "z = 1.17" in v.text and "[seed 0:" in v.text
    # the same failure against tightly clustered method seeds is evidence
    tight = {0: entry(0.5), 1: entry(0.6), 2: entry(0.55)}
    assert teeth.across_seeds({0: entry(-0.5)}, tight) == teeth.Verdict(teeth.OK, f"{teeth.OK} [seed 0]", (0,))
    # one method seed (no spread known) or identical seeds (sd 0): the failure stands
    assert teeth.across_seeds({0: entry(-0.5)}, {0: entry(0.5)}).status == teeth.OK
    assert teeth.spread_z(entry(-0.5), [entry(1.0)] * 3) == math.inf


def test_several_seeds_are_read_each_against_the_methods_same_seed():
    method = {0: entry(0.5), 1: entry(4.0), 2: entry(9.0)}
    v = teeth.across_seeds({s: entry(-0.5) for s in range(3)}, method)
    assert v == teeth.Verdict(teeth.OK, f"{teeth.OK} [seeds 0, 1, 2]", (0, 1, 2)), "three failing seeds are evidence"
    method[1] = entry(-1.0)  # the method fails seed 1 itself: that seed shows nothing
    v = teeth.across_seeds({s: entry(-0.5) for s in range(3)}, method)
    assert v.status == teeth.OK and v.text.endswith("[seeds 0, 2; on seed 1 the method fails too]")
    v = teeth.across_seeds({0: entry(-0.5), 1: entry(-0.5), 2: entry(2.0)}, method)
    assert v == teeth.Verdict(teeth.DEFECT, f"{teeth.DEFECT} [holds on seed 2 of 3]")
    all_fail = {s: entry(-1.0) for s in range(3)}
    assert teeth.across_seeds(all_fail, all_fail).status == teeth.NO_EVIDENCE


def test_one_biting_seed_among_several_is_judged_like_one_seed():
    """The method fails seeds 1 and 2 itself: the variant's failure rests on seed 0 alone, so the spread rule
    applies as for a seed-0-only run (without it, this read "fails as it should")."""
    method = {0: entry(0.5), 1: entry(-4.0), 2: entry(-2.0)}  # margins: mean -1.83, sd 2.25
    v = teeth.across_seeds({s: entry(-0.5) for s in range(3)}, method)
    assert v.status == teeth.WEAK
    assert v.text.endswith("[seed 0: z = -0.59 < 2; on seeds 1, 2 the method fails too]")


def test_no_run_and_odd_readings():
    assert teeth.across_seeds({}, {}).status == "not run"
    odd = teeth.across_seeds({0: {"verdict": "missing"}}, {0: entry(1.0)})
    assert odd.status == "missing under the broken variant"

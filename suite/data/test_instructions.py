"""The procedural instruction pool: deterministic, answers exact, the requested noise and no more."""
import pytest
import torch

from suite.data.instructions import DISTRACTOR, DUPLICATE, FAMILIES, JUNK, NORMAL, eval_set, make_pool
from suite.errors import ConfigError


def test_pool_is_deterministic_and_sized():
    a, b = make_pool(600, seed=3, junk_families=3, near_duplicates=20, distractor_frac=0.1), make_pool(
        600, seed=3, junk_families=3, near_duplicates=20, distractor_frac=0.1)
    assert a.instructions == b.instructions and a.answers == b.answers and torch.equal(a.quality, b.quality)
    assert len(a) == 600 and a.instructions != make_pool(600, seed=4).instructions
    kinds = a.kind.bincount(minlength=4)
    assert kinds[DUPLICATE] == 20 and kinds[DISTRACTOR] == 60 and kinds[JUNK] > 0
    assert (a.family[a.kind == DISTRACTOR] == -1).all() and len(a.junk) == 3


def test_answers_gold_and_corruption():
    p = make_pool(3000, seed=0, corrupt_frac=0.3, junk_families=2)
    assert p.correct.tolist() == [a == g for a, g in zip(p.answers, p.gold)]
    normal = p.kind == NORMAL
    wrong = 1 - p.correct[normal].float().mean()
    assert 0.25 < float(wrong) < 0.35  # corrupt_frac of the normal items, within sampling noise
    assert not p.correct[p.kind == JUNK].any()  # junk families never carry the right answer
    # correct items score higher on the noisy quality proxy
    assert p.quality[p.correct].mean() > p.quality[~p.correct].mean() + 1.5
    rev = FAMILIES.index(next(f for f in FAMILIES if f.name == "reverse"))
    i = int((p.family == rev).nonzero()[0])
    word = p.instructions[i].split()[-1].rstrip(".?") if "backwards" not in p.instructions[i] else \
        p.instructions[i].split()[1]
    assert p.gold[i] == word[::-1]


def test_zipf_head_and_near_synonym_tags():
    p = make_pool(4000, seed=1, zipf=1.1, corrupt_frac=0.0)
    counts = p.family.bincount(minlength=40).sort(descending=True).values
    assert counts[0] > 8 * counts[-1]  # head-heavy
    tags = [t for f in FAMILIES for t in f.tags]
    assert len(set(tags)) < len(tags)  # families share tags
    assert {"string reversal", "reverse text"} <= set(tags)


def test_eval_set_balanced_correct_and_subset():
    e = eval_set([0, 5, 9], per_family=7, seed=2)
    assert e.family.bincount().tolist()[0] == 7 and len(e) == 21 and e.correct.all()
    assert e.instructions != eval_set([0, 5, 9], per_family=7, seed=3).instructions
    s = make_pool(50, seed=0).subset([3, 1])
    assert len(s) == 2 and s.texts()[0].count("\n") == 1


@pytest.mark.parametrize("kw", [{"n_families": 41}, {"corrupt_frac": 1.5}, {"junk_families": 40},
                                {"near_duplicates": 100}])
def test_bad_arguments_are_config_errors(kw):
    with pytest.raises(ConfigError):
        make_pool(100, **kw)

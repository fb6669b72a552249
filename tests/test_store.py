import json
import time

import pytest

from suite import registry, runner, store
from suite.errors import CorruptDataError
from tests.toy import TOY


def _fake(i: int) -> dict:
    return {"schema": 1, "reproduction": f"r{i % 7}", "scale": "smoke", "seed": i, "config": {},
            "config_hash": "abc", "metrics": {"a": i * 0.5, "b": 1.0}, "claims": {},
            "dataset": {"name": "d", "provenance": "stand-in"}, "env": {"git_sha": "x"},
            "started": "2026-01-01T00:00:00+00:00", "wall_s": 1.0, "peak_mem_mb": 10.0,
            "status": "ok", "error": None}


def test_load_run_folders_and_jsonl(tmp_path):
    with registry.temporarily(TOY):
        runner.execute(runner.RunSpec("_toy", "smoke", 0), tmp_path / "res")
        runner.execute(runner.RunSpec("_toy", "smoke", 1, ("fail=true",)), tmp_path / "res")
    df = store.load(tmp_path / "res")
    assert sorted(df.status) == ["failed", "ok"]
    assert set(df[df.status == "ok"].provenance) == {"stand-in"}
    assert len(store.load(tmp_path / "res", include_failed=False)) == 1
    long = store.metrics_long(df[df.status == "ok"])
    assert {"method_mse", "baseline_mse", "slope"} <= set(long.metric)


def test_merge_into_jsonl_dedupes_and_sorts(tmp_path):
    path = tmp_path / "r.jsonl"
    a, b = _fake(1), _fake(2)
    assert store.merge_into_jsonl(path, [b, a]) == 2
    newer = dict(a, started="2026-02-01T00:00:00+00:00", metrics={"a": 9})
    failed = dict(_fake(3), status="failed")
    assert store.merge_into_jsonl(path, [newer, failed]) == 1
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seed"] for r in rows] == [1, 2] and rows[0]["metrics"] == {"a": 9}


def test_corrupt_jsonl_line_is_skipped_with_one_warning(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_fake(1)) + "\n{not json\n")
    assert len(store.load(path)) == 1
    err = capsys.readouterr().err
    assert "r.jsonl:2" in err and err.count("\n") == 1
    with pytest.raises(CorruptDataError, match=r"r.jsonl:2"):
        store.read_jsonl(path)  # strict reads (merging into published records) still refuse


def _bad(kind):
    good = _fake(7)
    return {
        "metrics-null": json.dumps(dict(good, metrics=None)),
        "truncated": json.dumps(good)[:40],
        "list": "[1, 2]",
        "null": "null",
        "no-seed": json.dumps({k: v for k, v in good.items() if k != "seed"}),
        "no-scale": json.dumps({k: v for k, v in good.items() if k != "scale"}),
        "no-config-hash": json.dumps({k: v for k, v in good.items() if k != "config_hash"}),
        "seed-str": json.dumps(dict(good, seed="7")),
        "metric-str": json.dumps(dict(good, metrics={"a": "high"})),
        "bytes": b"\x89PNG\x00\xff\xfe",
    }[kind]


@pytest.mark.parametrize("kind", ["metrics-null", "truncated", "list", "null", "no-seed", "no-scale",
                                  "no-config-hash", "seed-str", "metric-str", "bytes"])
def test_a_malformed_record_is_skipped_and_named_never_fatal(kind, tmp_path, capsys):
    root = tmp_path / "res"
    for i, body in enumerate([json.dumps(_fake(1)), _bad(kind)]):
        d = root / "r" / "small" / f"abc-s{i}"
        d.mkdir(parents=True)
        (d / "result.json").write_bytes(body if isinstance(body, bytes) else body.encode())
    df = store.load(root)
    assert list(df.seed) == [1]
    err = capsys.readouterr().err
    assert "abc-s1/result.json" in err and err.count("\n") == 1
    out = tmp_path / "merged.jsonl"
    store.merge_into_jsonl(out, store.records(root))
    assert len(out.read_text().splitlines()) == 1


def test_concurrent_merges_lose_nothing(tmp_path):
    """Two processes merging 100 records each into one file keep all 200 (flock around the
    read-modify-write)."""
    import multiprocessing as mp

    path = tmp_path / "r.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_merge_many, args=(path, base)) for base in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(path.read_text().splitlines()) == 200


def _merge_many(path, base):
    for i in range(100):
        store.merge_into_jsonl(path, [_fake(base + i)])


def test_ten_thousand_records_under_five_seconds(tmp_path):
    root = tmp_path / "res"
    for i in range(10_000):
        d = root / f"r{i % 7}" / "smoke" / f"abc-s{i}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(_fake(i)))
    t0 = time.perf_counter()
    df = store.load(root)
    elapsed = time.perf_counter() - t0
    assert len(df) == 10_000 and df.seed.sum() == sum(range(10_000))
    assert elapsed < 5.0, f"loading 10,000 records took {elapsed:.2f} s"

import json

import pytest

from suite import leaderboard, publish, registry, runner
from tests.toy import TOY


@pytest.fixture()
def board(tmp_path):
    """Toy records of small seeds 0-2 (and a failed smoke run), published into ``lb``."""
    with registry.temporarily(TOY):
        res = tmp_path / "res"
        for seed in range(3):
            runner.execute(runner.RunSpec("_toy", "small", seed), res)
        runner.execute(runner.RunSpec("_toy", "smoke", 0, ("fail=true",)), res)
        out = tmp_path / "lb"
        added, pages = leaderboard.build(res, out)
        yield added, pages, out, res


def _row(page: str, claim: str) -> list[str]:
    row = next(line for line in page.splitlines() if line.startswith(f"| `{claim}`"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_pages_from_records(board):
    added, pages, out, _ = board
    assert added == 3
    page = (out / "_toytrack.md").read_text()
    assert "### small · data `toy-gaussian` (stand-in)" in page and "seeds 0,1,2" in page
    assert "holds (3/3)" in page and "(n=3)" in page
    # paper number shown, but no delta: small scale on stand-in data is not comparable
    cells = _row(page, "slope")
    assert cells[1] == "check" and cells[6] == "2" and cells[7] == "—"
    plots = list((out / "plots").glob("_toy-cost_vs_k-small-*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 1000
    assert "| zero     | 1 ± 0   | 2 ± 0  |" in page  # the declared grid, cell = metric err/zero/test
    index = (out / "README.md").read_text()
    assert "[_toytrack](_toytrack.md)" in index and "`beats-baseline`" in index
    assert "`slope`" not in index, "checks are not listed one by one in the claims matrix"
    assert "verified 1/1" in index  # ... but as one mechanics row
    assert len((out / "records" / "_toy.jsonl").read_text().splitlines()) == 3
    assert "(3 of the 3 records of current code)" in index and "`suite verify <slug>`" in index
    # the cost line names where the floats were made: CPU model, instruction set, torch threads
    env = json.loads((out / "records" / "_toy.jsonl").read_text().splitlines()[0])["env"]
    assert f"[{env['cpu']}, {env['cpu_capability']}, {env['torch_threads']} torch thread" in page
    # a record made before those fields existed says so, rather than looking like a complete provenance
    assert leaderboard._device({"device": "cpu (x86_64, 2 cores)"}) == \
        "cpu (x86_64, 2 cores) [CPU, kernels and threads not recorded]"


def test_rendering_is_deterministic_and_traceable(board):
    _, _, out, res = board
    first = (out / "_toytrack.md").read_text()
    with registry.temporarily(TOY):
        added, _ = leaderboard.build(res, out)
    assert added == 0 and (out / "_toytrack.md").read_text() == first
    # every mean on the page is recomputable from the committed records
    recs = [json.loads(x) for x in (out / "records" / "_toy.jsonl").read_text().splitlines()]
    m, sd, n = leaderboard.mean_std([r["metrics"]["method_mse"] for r in recs])
    assert f"{leaderboard.fmt(m)} ± {leaderboard.fmt(sd)} (n=3)" in first


def test_failing_claims_show_as_fails(tmp_path):
    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0, ("broken=true",)), res)
        leaderboard.build(res, tmp_path / "lb")
    assert "**fails** (0/1 hold)" in (tmp_path / "lb" / "_toytrack.md").read_text()


def test_teeth_column_reads_the_broken_variants_run(tmp_path):
    """The claims matrix says whether a paper claim's named broken variant made it fail."""
    from suite import teeth

    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        leaderboard.build(res, tmp_path / "lb")
        assert "`negated`: not run" in (tmp_path / "lb" / "README.md").read_text()
        rows = teeth.run("_toy", res)
        assert [(r["claim"], r["status"]) for r in rows] == [("beats-baseline", teeth.OK)]
        leaderboard.build(res, tmp_path / "lb")
    index = (tmp_path / "lb" / "README.md").read_text()
    assert f"`negated`: {teeth.OK} [seed 0]" in index
    page = (tmp_path / "lb" / "_toytrack.md").read_text()
    assert "teeth run of the broken variant `negated`" in page
    assert _row(page, "beats-baseline")[8] == "holds (1/1)", "the teeth run is not the reported group"


def test_teeth_of_a_claim_the_method_fails_too_show_nothing(tmp_path):
    """``suite teeth`` and the leaderboard read a broken variant's failure against the unbroken
    method's own seed-0 run: when the method fails the claim too, neither says "fails as it should"."""
    import dataclasses

    from suite import teeth

    impossible = dataclasses.replace(TOY.claims[0], op="<", ref=0.0)  # no MSE is below 0
    strict = dataclasses.replace(TOY, claims=(impossible,) + TOY.claims[1:])
    with registry.temporarily(strict):
        res = tmp_path / "res"
        rows = teeth.run("_toy", res)  # runs the unbroken method's seed 0 as well
        assert [(r["claim"], r["status"]) for r in rows] == [("beats-baseline", teeth.NO_EVIDENCE)]
        assert rows[0]["unbroken"][0] is not None and rows[0]["value"] != rows[0]["unbroken"]
        leaderboard.build(res, tmp_path / "lb")
    assert f"`negated`: {teeth.NO_EVIDENCE}" in (tmp_path / "lb" / "README.md").read_text()
    with registry.temporarily(TOY):  # the declared claim: the method holds it, the variant breaks it
        assert [r["status"] for r in teeth.run("_toy", res)] == [teeth.OK]


def test_teeth_on_several_seeds_are_read_seed_by_seed(tmp_path):
    """``suite teeth --seeds 0-2``: the variant runs on each seed, each read against the method's run of that
    seed; the column, the summary and the README block name the seeds the verdict rests on."""
    from suite import readme_results, teeth

    with registry.temporarily(TOY):
        res = tmp_path / "res"
        for seed in range(3):
            runner.execute(runner.RunSpec("_toy", "small", seed), res)
        rows = teeth.run("_toy", res, seeds=(0, 1, 2))
        assert [(r["status"], len(r["value"])) for r in rows] == [(teeth.OK, 3)]
        leaderboard.build(res, tmp_path / "lb")
        recs = leaderboard.collect(res)["_toy"]
        block = readme_results.render(TOY, *readme_results.select(TOY, recs))
    index = (tmp_path / "lb" / "README.md").read_text()
    assert f"`negated`: {teeth.OK} [seeds 0, 1, 2]" in index
    assert "1 fails under it as expected (1 read on several seeds" in index
    assert "| 1/1 fail as they should |" in (tmp_path / "lb" / "_toytrack.md").read_text()
    assert f"`negated`: {teeth.OK} [seeds 0, 1, 2]" in block and "breaks beats-baseline seeds 0,1,2 -->" in block
    assert readme_results.render(TOY, *readme_results.from_spec(block, recs)) == block


def test_stale_records_are_shown_but_not_counted(tmp_path, monkeypatch):
    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        leaderboard.ingest(res, tmp_path / "lb")
        monkeypatch.setattr(leaderboard, "_current_code_hash", lambda module: "0123456789ab")
        leaderboard.render(tmp_path / "lb")
    page = (tmp_path / "lb" / "_toytrack.md").read_text()
    assert "**stale**" in page and "stale records only" in page
    assert "holds (1/1)" in page  # the stale group's own table still shows what it measured
    index = (tmp_path / "lb" / "README.md").read_text()
    row = next(line for line in index.splitlines() if "`beats-baseline`" in line)
    assert [c.strip() for c in row.strip("|").split("|")][3] == "—"  # small: no verdict counted


def test_verdicts_are_rechecked_against_the_declared_claims(tmp_path):
    """A record that ran before a threshold was frozen shows the declared claim's verdict, and says
    what the record stored."""
    import dataclasses

    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        leaderboard.ingest(res, tmp_path / "lb")
    stricter = dataclasses.replace(TOY, claims=(dataclasses.replace(TOY.claims[1], tol=1e-9),) + TOY.claims[:1])
    with registry.temporarily(stricter):
        leaderboard.render(tmp_path / "lb")
    page = (tmp_path / "lb" / "_toytrack.md").read_text()
    assert "**fails** (0/1 hold; re-checked, the records said 1/1 hold)" in page


def test_delta_only_for_full_scale_on_paper_data():
    from suite.spec import Claim

    c = Claim(id="x", text="t", metric="m", op=">=", ref=0.0, paper=1.0, kind="check")
    rec = {"metrics": {"m": 1.5}, "claims": {"x": {"verdict": "holds"}}, "scale": "full"}
    full_paper = leaderboard._claim_rows(type("R", (), {"claims": (c,)}), "full", "paper", [rec])
    full_standin = leaderboard._claim_rows(type("R", (), {"claims": (c,)}), "full", "stand-in", [rec])
    assert full_paper[0][7] == "0.5" and full_standin[0][7] == "—"


def test_current_preset_is_reported_before_older_configs(tmp_path):
    """A record of an overridden (or since changed) config stays on the page, labelled, but the
    track page reports the current preset's group first, even when it ran earlier; each group
    has its own plot file."""
    from suite import config

    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        runner.execute(runner.RunSpec("_toy", "small", 0, ("noise=0.2",)), res)  # newer, other config
        leaderboard.build(res, tmp_path / "lb")
        current = config.config_hash("_toy", config.resolve(TOY, "small"))
    page = (tmp_path / "lb" / "_toytrack.md").read_text()
    sections = [line for line in page.splitlines() if line.startswith("### small")]
    assert len(sections) == 2
    assert f"config `{current}`" in sections[0] and "not the current" not in sections[0]
    assert "not the current `small` preset" in sections[1]
    assert len(list((tmp_path / "lb" / "plots").glob("_toy-cost_vs_k-small-*.png"))) == 2


def test_local_leaderboard_writes_no_records(tmp_path):
    with registry.temporarily(TOY):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        n, pages = leaderboard.local(res, res / "leaderboard")
    assert n == 1 and all(p.parent == res / "leaderboard" for p in pages)
    assert not (res / "leaderboard" / "records").exists()
    assert "Generated by `suite leaderboard`" in (res / "leaderboard" / "_toytrack.md").read_text()


def test_pipes_inside_cells_do_not_split_them():
    import re

    table = leaderboard.tabulate([["`a`", "between |cos| < 0.3"]], headers=["claim", "text"], tablefmt="github")
    header, _, row = table.splitlines()
    unescaped = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731
    assert unescaped(row) == unescaped(header) == 3 and "\\|cos\\|" in row


def test_published_pages_are_regenerated_byte_identical(tmp_path):
    """`suite publish --render-only` rebuilds the committed pages from the committed records alone."""
    import shutil

    from suite.environment import REPO_ROOT

    pub = REPO_ROOT / "leaderboards"
    shutil.copytree(pub / "records", tmp_path / "records", ignore=shutil.ignore_patterns("*.lock"))
    publish.publish(tmp_path / "nothing", tmp_path, render_only=True)
    for page in sorted(pub.glob("*.md")):
        assert (tmp_path / page.name).read_text() == page.read_text(), f"{page.name} differs; run `suite publish --render-only`"


def test_lra_tasks_run_as_separate_jobs_are_assembled_on_the_page(tmp_path):
    """s4d declares Assembly(split="lra_tasks"): six one-task full records of one config and seed become one
    group on the page (the full preset's config), whose lra-avg-* claims are computed from the six."""
    from suite import config, environment
    from reproductions.s4d import LRA_TASKS, lra_averages

    repro = registry.get("s4d")
    code = environment.code_hash(repro.module)
    recs = []
    for i, task in enumerate(LRA_TASKS):
        cfg = config.resolve(repro, "full", [f"lra_tasks={task}"])
        acc = {f"lra_{task}_{init}_acc_pct": 60.0 + i + d for init, d in (("inv", 2.0), ("legs", 1.0), ("lin", 0.0))}
        recs.append({"schema": 1, "reproduction": "s4d", "scale": "full", "seed": 0, "overrides": [f"lra_tasks={task}"],
                     "config": config.canonical(cfg), "config_hash": config.config_hash("s4d", cfg), "metrics": acc,
                     "claims": {}, "dataset": {"name": f"lra-{task}", "provenance": "paper"},
                     "env": {"code_hash": code, "device": "NVIDIA H100"}, "status": "ok", "wall_s": 10.0,
                     "started": f"2026-12-05T00:0{i}:00+00:00"})
    merged = leaderboard.assemble(repro, recs)
    assert len(merged) == 1
    m = merged[0]
    assert m["config_hash"] == config.config_hash("s4d", config.resolve(repro, "full"))  # the full preset
    assert m["metrics"]["lra_avg_inv_acc_pct"] == pytest.approx(64.5) == lra_averages(m["metrics"])["lra_avg_inv_acc_pct"]
    assert m["claims"]["lra-avg-inv"]["verdict"] in ("holds", "fails")
    assert m["dataset"]["provenance"] == "paper" and m["wall_s"] == 60.0
    # five tasks only: nothing to average (the claims stay missing), overlapping parts: no assembly
    assert "lra_avg_inv_acc_pct" not in leaderboard.assemble(repro, recs[:5])[0]["metrics"]
    assert leaderboard.assemble(repro, recs + [dict(recs[0], started="2026-12-06")]) == []
    leaderboard.render(tmp_path, {"s4d": recs})
    page = (tmp_path / "lra.md").read_text()
    assert "assembled from 6 jobs per seed" in page
    row = next(line for line in page.split("assembled from 6 jobs")[1].splitlines() if "`lra-avg-inv`" in line)
    assert "missing" not in row


def test_an_entry_with_checks_only_reads_checks_only_not_zero_of_zero(tmp_path):
    import dataclasses

    bench = dataclasses.replace(TOY, claims=tuple(c for c in TOY.claims if c.kind == "check"))
    with registry.temporarily(bench):
        res = tmp_path / "res"
        runner.execute(runner.RunSpec("_toy", "small", 0), res)
        leaderboard.build(res, tmp_path / "lb")
    index = (tmp_path / "lb" / "README.md").read_text() + (tmp_path / "lb" / "_toytrack.md").read_text()
    assert "— (checks only)" in index and "| 0/0 " not in index


def test_a_full_jobs_claims_are_decided_by_that_jobs_records(tmp_path):
    """lottery_ticket declares jobs vgg19 / resnet18: the C5 claims of VGG-19 are read from the vgg19 job's
    group (a current full config), the LeNet paper claims from the preset's, and neither from the other."""
    from suite import config, environment

    repro = registry.get("lottery_ticket")
    code = environment.code_hash(repro.module)

    def rec(overrides, metrics, seed=0):
        cfg = config.resolve(repro, "full", overrides)
        job = repro.job_of("full", config.canonical(cfg))
        return {"schema": 1, "reproduction": "lottery_ticket", "scale": "full", "seed": seed,
                "overrides": list(overrides), "config": config.canonical(cfg),
                "config_hash": config.config_hash("lottery_ticket", cfg), "metrics": metrics,
                "claims": {c.id: c.check(metrics, "full", job) for c in repro.claims},
                "dataset": {"name": "cifar10" if overrides else "mnist", "provenance": "paper"},
                "env": {"code_hash": code, "device": "NVIDIA H100"}, "status": "ok", "wall_s": 10.0,
                "started": "2026-12-06T00:00:00+00:00"}

    c5 = {"c5_warmup_ticket_acc": 0.93, "c5_dense_best_acc": 0.93, "c5_warmup_ticket_minus_reinit": 0.03,
          "c5_no_warmup_ticket_minus_reinit": 0.0, "c5_warmup_minus_no_warmup_ticket": 0.02,
          "c5_low_lr_ticket_minus_reinit": 0.01, "masked_weight_max_abs": 0.0}
    vgg = rec(repro.jobs["vgg19"], c5)
    lenet = rec((), {"iterative_minus_oneshot": 0.01, "masked_weight_max_abs": 0.0})
    assert repro.job_of("full", vgg["config"]) == "vgg19" and repro.job_of("full", lenet["config"]) is None
    assert vgg["claims"]["c5-vgg19-warmup-ticket-beats-reinit"]["verdict"] == "holds"
    assert vgg["claims"]["c5-resnet18-warmup-ticket-beats-reinit"]["verdict"] == "not-expected"
    assert vgg["claims"]["iterative-beats-oneshot"]["verdict"] == "not-expected"  # a LeNet claim
    assert vgg["claims"]["mask-exact"]["verdict"] == "holds"  # a check holds in every configuration
    assert lenet["claims"]["c5-vgg19-warmup-ticket-beats-reinit"]["verdict"] == "not-expected"
    # the job's group is current (not "an overridden config") and decides its claims in the matrix
    groups = leaderboard._ranked(repro, [vgg, lenet])
    assert [(g.job, g.current) for g in groups] == [(None, True), ("vgg19", True)]
    decides = leaderboard.deciding(repro, [vgg, lenet])
    assert leaderboard.claim_group(repro.claim("c5-vgg19-warmup-ticket-beats-reinit"), decides, "full").job == "vgg19"
    assert leaderboard.claim_group(repro.claim("c5-resnet18-warmup-ticket-beats-reinit"), decides, "full") is None
    assert leaderboard.reported(repro, [vgg, lenet], "full").job is None  # the preset's group
    index = leaderboard.render_index({"lottery_ticket": [vgg, lenet]})
    row = next(line for line in index.splitlines() if "`c5-vgg19-warmup-ticket-beats-reinit`" in line)
    assert "holds (1/1)" in row
    row = next(line for line in index.splitlines() if "`c5-resnet18-warmup-ticket-beats-reinit`" in line)
    assert "holds" not in row
    leaderboard.render(tmp_path, {"lottery_ticket": [vgg, lenet]})
    page = (tmp_path / "compression.md").read_text()
    assert "full job `vgg19`" in page and "overridden config" not in page


def test_published_records_store_the_verdicts_the_pages_show():
    """A committed record of the current code stored the verdict its declared claims give today, so the
    pages never carry "re-checked" and a README's published-results block (stored verdicts) agrees with
    them; a change to how claims compare (suite.spec) is republished with fresh runs, not only re-rendered."""
    from suite.environment import REPO_ROOT

    bad = []
    for f in sorted((REPO_ROOT / "leaderboards" / "records").glob("*.jsonl")):
        repro = registry.get(f.stem)
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if leaderboard.is_stale(repro, r):
                continue
            for c in repro.claims:
                stored = ((r.get("claims") or {}).get(c.id) or {}).get("verdict")
                now = leaderboard.checked(c, [r])[0]
                if stored != now:
                    bad.append(f"{f.stem} {r['scale']} seed {r['seed']} {r.get('overrides') or ''} {c.id}: "
                               f"stored {stored}, declared claim gives {now}")
    assert not bad, "\n".join(bad)


def test_mean_std_of_values_near_the_float_range():
    """A broken variant can measure 1e200 on several seeds: the page shows mean and std, it does not crash
    (``(v - m) ** 2`` overflowed and stopped `suite publish` after it had merged the records)."""
    assert leaderboard.mean_std([1e200, 3e200, 2e200]) == (2e200, 1e200, 3)
    assert leaderboard.mean_std([1e308, 1e308]) == (1e308, 0.0, 2)
    assert leaderboard.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)

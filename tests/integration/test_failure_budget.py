"""The failure budget counts a cluster when it fails, not when its rollback has finished
(issue 11, item 12): `deploy --strategy parallel --max-parallel 2 --max-failures 0`
through the CLI against the simulated fleet."""

from __future__ import annotations

import json

from console.cli import main


def test_a_failure_spends_the_budget_at_once_no_cluster_starts_during_its_rollback(world,
                                                                                   capsys):
    # `a` crashes on v2 and answers slowly, so its rollback takes seconds; the others are
    # quick, so before the fix their slot started one new cluster after another while
    # `a` was still rolling back (its failure not counted yet).
    ids = ["a", *(f"c{i}" for i in range(9))]
    w = world(ids, seed=11)
    w.deploy_everywhere("v1")
    w.fleet.set_faults("a", crash=["v2"], latency=0.4)
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--strategy",
                 "parallel", "--max-parallel", "2", "--max-failures", "0", "--json",
                 "--fail-fast-grace", "0.3"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    kinds = [(e["kind"], e.get("cluster")) for e in events]
    failed_at = kinds.index(("cluster_failed", "a"))
    started_after = [c for kind, c in kinds[failed_at:] if kind == "cluster_started"]
    assert started_after == [], f"started after a's failure: {started_after}"
    # Its rollback still ran to the end, after the failure was counted.
    assert kinds.index(("cluster_rolled_back", "a")) > failed_at

    end = events[-1]
    assert (end["kind"], end["outcome"], end["exit_code"], code) == \
        ("release_finished", "failed", 1, 1)
    assert end["detail"].startswith("failure budget spent")
    started = {c for kind, c in kinds if kind == "cluster_started"}
    skipped = {e["cluster"]: e["reason"] for e in events if e["kind"] == "cluster_skipped"}
    assert set(skipped) == set(ids) - started and skipped, (started, skipped)
    assert all(reason.startswith("failure budget spent") for reason in skipped.values())
    # What the clusters run: a back on v1, the ones started before its failure on v2,
    # the skipped ones untouched on v1.
    assert w.version("a") == "v1"
    for cid in started - {"a"}:
        assert w.version(cid) == "v2"
    for cid in skipped:
        assert w.version(cid) == "v1"

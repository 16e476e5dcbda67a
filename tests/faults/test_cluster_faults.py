"""Broken clusters during a real release (CLI or engine + ledger, as `deploy` wires them):
unreachable from the start, dying mid-rollout (parallel and serial), 10% API errors, a slow
cluster. Each test ends with every cluster's real state known and the ledger agreeing."""

from __future__ import annotations

import threading
import time

from console.cli import main
from console.engine import ReleaseRequest
from console.events import Kind
from console.sim import ClusterSpec
from tests.faults.conftest import (events_of, outcomes, recorded_engine, releases, tree,
                                   writes)


def test_unreachable_from_the_start_fails_preflight_touches_nothing_exit_2(world, capsys):
    w = world(["a", ClusterSpec("b", {"unreachable": True}), "c"])
    ledger_dir = w.config.app.history.path
    before = tree(ledger_dir)
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1",
                 "--strategy", "parallel", "--json"])
    out = capsys.readouterr().out
    assert code == 2
    events = events_of(out)
    finished = events[-1]
    assert finished["kind"] == "release_finished" and finished["outcome"] == "preflight_failed"
    failures = next(e for e in events if e["kind"] == "preflight_finished")["failures"]
    assert {f["cluster"] for f in failures} == {"b"}
    assert any("refused" in f["detail"] or "unreachable" in f["detail"] for f in failures)
    # Nothing touched: no write reached a cluster, no Deployment exists, no cluster started.
    assert writes(w.fleet, "a") == 0 and writes(w.fleet, "c") == 0
    assert w.version("a") is None and w.version("c") is None
    assert not [e for e in events if e["kind"] == "cluster_started"]
    # The ledger tells the truth: no release began, so nothing is recorded as started.
    assert all(r.version != "v1" for r in releases(w.config).values())
    assert {k: v for k, v in tree(ledger_dir).items() if "history/" in k} == \
        {k: v for k, v in before.items() if "history/" in k}


def _kill_on_progress(w, engine, cid: str) -> dict:
    """Kill `cid` the first time it reports rollout progress; returns marks (kill time)."""
    marks: dict = {}
    lock = threading.Lock()

    def listener(event):
        with lock:
            if event.kind is Kind.CLUSTER_PROGRESS and event.cluster == cid and "killed" not in marks:
                marks["killed"] = time.monotonic()
                w.fleet.kill(cid)
            if event.cluster == cid and event.kind in (Kind.CLUSTER_UNREACHABLE,
                                                        Kind.CLUSTER_FAILED):
                marks.setdefault(event.kind.value, time.monotonic())

    engine.add_listener(listener)
    return marks


def _released_while_b_dies(world, strategy: str):
    """a, b and c at v1, then v2 released with `strategy` while b's API server dies at
    its first rollout progress; (world, result, marks of `_kill_on_progress`)."""
    w = world(["a", "b", "c"], readiness_delay=1.0, jitter=0.0)
    w.deploy_everywhere("v1")
    with recorded_engine(w, unreachable_grace=1.0, request_timeout=2.0) as engine:
        marks = _kill_on_progress(w, engine, "b")
        result = engine.run(ReleaseRequest(tag="v2", strategy=strategy), w.approve)
    assert "killed" in marks
    return w, result, marks


def test_dies_mid_rollout_parallel_others_continue_and_status_tells_the_truth(world):
    w, result, marks = _released_while_b_dies(world, "parallel")
    assert {c.cluster: c.outcome for c in result.clusters} == \
        {"a": "healthy", "b": "failed", "c": "healthy"}
    assert result.exit_code == 1
    b = next(c for c in result.clusters if c.cluster == "b")
    assert "unreachable" in b.error
    # Detected within the grace plus a request timeout, not the rollout timeout.
    assert marks["cluster_failed"] - marks["killed"] < 8
    assert w.version("a") == "v2" and w.version("c") == "v2"
    record = releases(w.config)[result.release_id]
    assert record.outcome == "failed" and record.exit_code == 1
    assert outcomes(record) == {"a": "healthy", "b": "failed", "c": "healthy"}
    rec_b = record.outcome_of("b")
    assert rec_b.version is None and not rec_b.good and "unreachable" in rec_b.error
    # Back again: status reads what b really runs (the store survived the outage).
    w.fleet.revive("b")
    engine = w.engine()
    try:
        status = {s.cluster: s for s in engine.status()}
    finally:
        engine.close()
    assert status["b"].reachable
    assert status["b"].version == w.version("b")
    assert status["b"].version in ("v1", "v2")
    assert status["a"].version == "v2"


def test_dies_mid_rollout_serial_stops_the_release(world):
    w, result, _marks = _released_while_b_dies(world, "serial")
    assert [(c.cluster, c.outcome) for c in result.clusters] == \
        [("a", "healthy"), ("b", "failed"), ("c", "skipped")]
    assert (result.outcome, result.exit_code) == ("failed", 1)
    assert w.version("a") == "v2" and w.version("c") == "v1"   # c never touched
    record = releases(w.config)[result.release_id]
    assert outcomes(record) == {"a": "healthy", "b": "failed", "c": "skipped"}
    w.fleet.revive("b")
    engine = w.engine()
    try:
        assert {s.cluster: s.version for s in engine.status()}["b"] == w.version("b")
    finally:
        engine.close()


def _release_requests(w, ids, tag: str, **faults) -> tuple[object, int, int]:
    """Run a parallel release with `faults` on every cluster; (result, requests, errors)."""
    before = {c: w.fleet.counters(c) for c in ids}
    for cid in ids:
        if faults:
            w.fleet.set_faults(cid, **faults)
    with recorded_engine(w, request_timeout=3.0) as engine:
        result = engine.run(ReleaseRequest(tag=tag, strategy="parallel"), w.approve)
    for cid in ids:
        if faults:
            w.fleet.set_faults(cid, error_rate=0.0)
    after = {c: w.fleet.counters(c) for c in ids}
    sent = sum(after[c]["total"] - before[c]["total"] for c in ids)
    errors = sum(after[c]["injected_errors"] - before[c]["injected_errors"] for c in ids)
    return result, sent, errors


def test_ten_percent_api_errors_release_succeeds_without_a_retry_storm(world):
    ids = ["a", "b", "c"]
    # Seeded: the n-th call of each kind meets the same injected error in every run.
    w = world(ids, readiness_delay=0.3, jitter=0.0, seed=2110)
    w.deploy_everywhere("v1")
    clean, clean_sent, _ = _release_requests(w, ids, "v2")
    assert clean.exit_code == 0
    flaky, sent, errors = _release_requests(w, ids, "v3", error_rate=0.1,
                                            error_codes=[500, 429], retry_after=1)
    assert (flaky.outcome, flaky.exit_code) == ("ok", 0), (
        flaky.message, flaky.preflight.failures if flaky.preflight else None, flaky.clusters)
    assert all(w.version(c) == "v3" for c in ids)
    record = releases(w.config)[flaky.release_id]
    assert record.outcome == "ok" and outcomes(record) == {c: "healthy" for c in ids}
    assert all(record.outcome_of(c).version == "v3" for c in ids)
    assert errors > 0                       # the fault really fired
    # Bounded retries: each injected error costs about one more request, not a storm.
    assert sent <= clean_sent * 1.5 + 3 * errors, (sent, clean_sent, errors)


def test_slow_cluster_does_not_slow_the_others(world):
    ids = ["a", "b", "slow"]
    w = world(ids, readiness_delay=0.5, jitter=0.0, replicas=1)
    w.deploy_everywhere("v1")

    def slow_down_after_preflight(event):
        # Pre-flight reads every cluster; the slowness hits the rollout itself.
        if event.kind is Kind.RELEASE_STARTED:
            w.fleet.set_faults("slow", latency=2.0)

    try:
        with recorded_engine(w, request_timeout=5.0) as engine:
            engine.add_listener(slow_down_after_preflight)
            result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    finally:
        w.fleet.set_faults("slow", latency=0.0)
    durations = {c.cluster: c.duration for c in result.clusters}
    assert result.exit_code == 0, result.clusters
    assert durations["slow"] >= 4.0                       # several 2 s requests
    for fast in ("a", "b"):
        # The others wait for slow's apply (writes go first, `writes_first`), not for
        # its watches (2 s more to open: its two opens run at once since rollouts are
        # decided on one thread, so slow takes twice the latency, no longer three times).
        assert durations[fast] < durations["slow"] - 1.0, durations
        assert durations[fast] < 4.0, durations
    record = releases(w.config)[result.release_id]
    assert outcomes(record) == {c: "healthy" for c in ids}


def test_pre_flight_survives_ten_percent_api_errors_on_fresh_clusters(world):
    """Every pre-flight call - reads, access reviews, dry runs, creating the namespace the
    lease lives in, the lease itself - is retried by the client with bounded backoff.
    Seed 2105 fails the first namespace create on b and d (once refused outright)."""
    ids = ["a", "b", "c", "d"]
    w = world(ids, readiness_delay=0.2, jitter=0.0, error_rate=0.1, error_codes=[500, 429],
              retry_after=0, seed=2105)
    seen: dict[str, int] = {}

    def count_preflight_errors(event):
        if event.kind is Kind.PREFLIGHT_FINISHED:
            seen["errors"] = sum(w.fleet.counters(c)["injected_errors"] for c in ids)

    with recorded_engine(w, request_timeout=5.0) as engine:
        engine.add_listener(count_preflight_errors)
        result = engine.run(ReleaseRequest(tag="v1", strategy="parallel"), w.approve)
    failures = [(r.cluster, r.check, r.detail) for r in result.preflight.failures]
    assert failures == [] and (result.outcome, result.exit_code) == ("ok", 0), \
        (failures, result.message, result.clusters)
    assert seen["errors"] > 0                    # pre-flight itself met the faults
    assert all(w.version(c) == "v1" for c in ids)

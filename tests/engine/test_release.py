"""Release stories against the local fleet, through the real client: strategies, failure
policy, fail-fast, automatic rollback, gates, stale status, unreachable clusters."""

from __future__ import annotations

import threading
import time

from console.engine import (GateAnswer, GateDecision, ReleaseControl, ReleaseRequest)
from console.events import Kind
from console.kube.driver import ANN_PREVIOUS, ANN_RELEASE, ANN_VERSION
from tests.waiting import wait_for


def test_serial_over_three_all_healthy_in_order(world):
    w = world(["a", "b", "c"])
    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v1", order=("b", "a")), w.approve)
    assert (result.outcome, result.exit_code) == ("ok", 0)
    assert [c.outcome for c in result.clusters] == ["healthy"] * 3
    started = [e.cluster for e in w.recorder.of(Kind.CLUSTER_STARTED)]
    assert started == ["b", "a", "c"]
    # Serial: each cluster is healthy before the next one starts.
    sequence = [(e.kind, e.cluster) for e in w.recorder.events
                if e.kind in (Kind.CLUSTER_STARTED, Kind.CLUSTER_HEALTHY)]
    assert sequence == [(Kind.CLUSTER_STARTED, "b"), (Kind.CLUSTER_HEALTHY, "b"),
                        (Kind.CLUSTER_STARTED, "a"), (Kind.CLUSTER_HEALTHY, "a"),
                        (Kind.CLUSTER_STARTED, "c"), (Kind.CLUSTER_HEALTHY, "c")]
    for cid in "abc":
        assert w.version(cid) == "v1"
        assert w.ready_pods(cid, "v1") == 2
        ann = w.annotations(cid)
        assert ann[ANN_VERSION] == "v1" and ann[ANN_RELEASE] == result.release_id
        assert ann[ANN_PREVIOUS] == ""
    assert w.recorder.kinds()[-1] is Kind.RELEASE_FINISHED
    engine.close()


def test_serial_second_never_pulls_fails_fast_rolls_back_third_untouched(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    before_c = w.annotations("c")
    w.fleet.set_faults("b", never_pull=["v2"])
    engine = w.engine(grace=0.5)
    started = time.monotonic()
    result = engine.run(ReleaseRequest(tag="v2"), w.approve)
    elapsed = time.monotonic() - started
    assert (result.outcome, result.exit_code) == ("failed", 1)
    a, b, c = result.clusters
    assert (a.outcome, w.version("a")) == ("healthy", "v2")
    assert b.outcome == "rolled_back" and b.rolled_back_to == "v1"
    assert "ErrImagePull" in b.error or "ImagePullBackOff" in b.error
    assert w.version("b") == "v1" and w.ready_pods("b", "v1") == 2
    # The rollback also put back b's annotations: it does not claim release v2.
    assert w.annotations("b")[ANN_VERSION] == "v1"
    assert c.outcome == "skipped"
    assert w.version("c") == "v1" and w.annotations("c") == before_c
    assert "c" not in [e.cluster for e in w.recorder.of(Kind.CLUSTER_STARTED)]
    # Fail fast: seconds, not the 600 s progress deadline.
    assert elapsed < 15
    assert [e.cluster for e in w.recorder.of(Kind.CLUSTER_ROLLED_BACK)] == ["b"]
    engine.close()


def _at_v1_where_v2_fails(world, count: int, failing: tuple[str, ...]):
    """Clusters c0..c<count-1> at v1, where v2 never pulls on `failing`; (ids, world)."""
    ids = [f"c{i}" for i in range(count)]
    w = world(ids)
    w.deploy_everywhere("v1")
    for cid in failing:
        w.fleet.set_faults(cid, never_pull=["v2"])
    return ids, w


def test_parallel_ten_with_two_failing(world):
    ids, w = _at_v1_where_v2_fails(world, 10, ("c3", "c7"))
    w.fleet.reset_max_concurrent_rollouts()
    engine = w.engine(grace=0.5)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel", max_parallel=4,
                                       max_failures="2"), w.approve)
    outcomes = {c.cluster: c.outcome for c in result.clusters}
    assert {k for k, v in outcomes.items() if v == "rolled_back"} == {"c3", "c7"}
    assert [k for k, v in outcomes.items() if v == "healthy"] == \
        [c for c in ids if c not in ("c3", "c7")]
    assert result.exit_code == 1
    for cid in ids:
        assert w.version(cid) == ("v1" if cid in ("c3", "c7") else "v2")
    # Really concurrent, and never more than max_parallel at once.
    assert 2 <= w.fleet.max_concurrent_rollouts <= 4
    engine.close()


def test_failure_budget_stops_new_starts(world):
    ids, w = _at_v1_where_v2_fails(world, 6, ("c0", "c1"))
    untouched = {cid: w.annotations(cid) for cid in ids[2:]}
    engine = w.engine(grace=0.3)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel", max_parallel=1,
                                       max_failures="1"), w.approve)
    assert (result.outcome, result.exit_code) == ("failed", 1)
    assert "failure budget spent" in result.message
    assert [c.outcome for c in result.clusters] == ["rolled_back", "rolled_back"] + \
        ["skipped"] * 4
    for cid in ids[2:]:
        assert w.annotations(cid) == untouched[cid] and w.version(cid) == "v1"
    skipped = w.recorder.of(Kind.CLUSTER_SKIPPED)
    assert {e.cluster for e in skipped} == set(ids[2:])
    engine.close()


CANARY = {"canary": {"waves": [["w1"], ["w2"], ["w3", "w4"]], "gates": True,
                     "max_failures": 0}}


def test_canary_approve_continues(world):
    w = world(["w1", "w2", "w3", "w4"], strategies=CANARY)
    asked = []

    def approver(request):
        asked.append(request)
        return GateAnswer(GateDecision.APPROVE, by="alice")

    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v1", strategy="canary"), approver)
    assert result.exit_code == 0
    assert [(r.finished_wave, r.next_wave, r.next_clusters) for r in asked] == \
        [(0, 1, ("w2",)), (1, 2, ("w3", "w4"))]
    assert [r.cluster for r in asked[1].results] == ["w1", "w2"]
    assert all(r.outcome == "healthy" for r in asked[1].results)
    decided = w.recorder.of(Kind.GATE_DECIDED)
    assert [(e.data["decision"], e.data["by"]) for e in decided] == [("approve", "alice")] * 2
    # A gate waits: nothing of the next wave starts before the decision.
    kinds = [(e.kind, e.cluster) for e in w.recorder.events]
    assert kinds.index((Kind.GATE_DECIDED, None)) < kinds.index((Kind.CLUSTER_STARTED, "w2"))
    assert all(w.version(c) == "v1" for c in ("w1", "w2", "w3", "w4"))
    engine.close()


def test_canary_reject_stops(world):
    w = world(["w1", "w2", "w3", "w4"], strategies=CANARY)
    w.deploy_everywhere("v1")
    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"),
                        lambda r: GateAnswer(GateDecision.REJECT, by="bob"))
    assert (result.outcome, result.exit_code) == ("stopped", 3)
    assert [c.outcome for c in result.clusters] == ["healthy", "skipped", "skipped", "skipped"]
    assert [w.version(c) for c in ("w1", "w2", "w3", "w4")] == ["v2", "v1", "v1", "v1"]
    engine.close()


def test_canary_abort_rolls_back_what_was_reached(world):
    w = world(["w1", "w2", "w3", "w4"], strategies=CANARY)
    w.deploy_everywhere("v1")
    answers = iter([GateAnswer(GateDecision.APPROVE, by="carol"),
                    GateAnswer(GateDecision.ABORT, rollback=True, by="carol")])
    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"), lambda r: next(answers))
    assert (result.outcome, result.exit_code) == ("aborted", 3)
    outcomes = [(c.cluster, c.outcome, c.rolled_back_to) for c in result.clusters]
    assert outcomes == [("w1", "rolled_back", "v1"), ("w2", "rolled_back", "v1"),
                        ("w3", "skipped", None), ("w4", "skipped", None)]
    assert all(w.version(c) == "v1" for c in ("w1", "w2", "w3", "w4"))
    assert w.ready_pods("w1", "v1") == 2 and w.ready_pods("w2", "v1") == 2
    engine.close()


def test_canary_abort_without_rollback_leaves_reached_clusters(world):
    w = world(["w1", "w2", "w3", "w4"], strategies=CANARY)
    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v1", strategy="canary"),
                        lambda r: GateAnswer(GateDecision.ABORT, rollback=False))
    assert (result.outcome, result.exit_code) == ("aborted", 3)
    assert [c.outcome for c in result.clusters] == ["healthy", "skipped", "skipped", "skipped"]
    assert w.version("w1") == "v1" and w.version("w2") is None
    engine.close()


def test_stale_complete_status_of_previous_generation_is_not_done(world):
    w = world(["a"])
    w.deploy_everywhere("v1")
    w.fleet.set_faults("a", lag_generation=1.5)
    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v2"), w.approve)
    assert result.exit_code == 0
    progress = [e for e in w.recorder.of(Kind.CLUSTER_PROGRESS) if e.cluster == "a"]
    # The status right after the apply still says "complete" for generation 1 ...
    assert progress[0].data["phase"] == "observing"
    # ... and the cluster was not declared healthy until the new generation was observed
    # and rolled out.
    started = w.recorder.of(Kind.CLUSTER_STARTED)[0].ts
    healthy = w.recorder.of(Kind.CLUSTER_HEALTHY)[0].ts
    assert healthy - started >= 1.5
    assert w.ready_pods("a", "v2") == 2
    engine.close()


def test_unreachable_cluster_fails_only_itself(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    engine = w.engine()

    def kill_b_after_preflight(event):
        if event.kind is Kind.RELEASE_STARTED:
            w.fleet.kill("b")

    engine.add_listener(kill_b_after_preflight)
    started = time.monotonic()
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert time.monotonic() - started < 15
    outcomes = {c.cluster: c.outcome for c in result.clusters}
    assert outcomes == {"a": "healthy", "b": "failed", "c": "healthy"}
    b = result.clusters[1]
    assert "unreachable" in b.error and "connection refused" in b.error
    assert [e.cluster for e in w.recorder.of(Kind.CLUSTER_UNREACHABLE)] == ["b"]
    assert result.exit_code == 1
    # status() answers at once for the others and marks b unreachable.
    t0 = time.monotonic()
    statuses = {s.cluster: s for s in engine.status()}
    assert time.monotonic() - t0 < 8
    assert statuses["a"].version == "v2" and statuses["c"].version == "v2"
    assert not statuses["b"].reachable and "unreachable" in statuses["b"].error
    w.fleet.revive("b")
    assert {s.cluster: s.version for s in engine.status()}["b"] == "v1"
    engine.close()


def test_cluster_dying_mid_rollout_fails_alone(world):
    w = world(["a", "b"], readiness_delay=1.0, jitter=0.0)
    w.deploy_everywhere("v1")
    engine = w.engine(unreachable_grace=1.0)
    w.kill_while_rolling(engine, "b")
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    outcomes = {c.cluster: c.outcome for c in result.clusters}
    assert outcomes == {"a": "healthy", "b": "failed"}
    b = result.clusters[1]
    assert "unreachable" in b.error and "rollback failed" in b.error
    assert w.version("a") == "v2"
    engine.close()


def test_preflight_failure_touches_nothing(world):
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    w.fleet.kill("b")
    def stored():
        dep = w.fleet.get("a", "apps/deployments", "a", "user-service")
        return dep["metadata"]["generation"], dep["metadata"].get("annotations"), dep["spec"]

    before = stored()
    engine = w.engine()
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert (result.outcome, result.exit_code) == ("preflight_failed", 2)
    failed = [(r.cluster, r.check) for r in result.preflight.failures]
    assert ("b", "cluster") in failed
    # Pre-flight may dry-run; the stored object's spec and annotations are not changed
    # (the controller may still write its status).
    assert stored() == before
    assert w.version("a") == "v1"
    assert Kind.RELEASE_STARTED not in w.recorder.kinds()
    engine.close()


def test_rollback_of_a_whole_release(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    engine = w.engine()
    release = engine.run(ReleaseRequest(tag="v2", clusters="a,b", strategy="parallel"), w.approve)
    assert release.exit_code == 0 and w.version("c") == "v1"
    untouched = w.annotations("c")
    results = engine.rollback_release(release.release_id, by="dave")
    assert sorted((r.cluster, r.outcome, r.rolled_back_to) for r in results) == \
        [("a", "rolled_back", "v1"), ("b", "rolled_back", "v1")]
    assert [w.version(c) for c in "abc"] == ["v1", "v1", "v1"]
    assert w.ready_pods("a", "v1") == 2 and w.ready_pods("b", "v1") == 2
    assert w.annotations("c") == untouched
    rolled = w.recorder.of(Kind.CLUSTER_ROLLED_BACK)
    assert {e.cluster for e in rolled} == {"a", "b"}
    assert all(e.release_id == release.release_id and e.data["ok"] for e in rolled)
    # The clusters no longer claim the release: a second rollback finds nothing.
    import pytest

    from console.errors import UserError
    with pytest.raises(UserError, match="no cluster runs release"):
        engine.rollback_release(release.release_id)
    engine.close()


def test_manual_rollback_previous_revision_and_named_version(world):
    w = world(["a"])
    for tag in ("v1", "v2", "v3"):
        w.deploy_everywhere(tag)
    engine = w.engine()
    result = engine.rollback("a", by="erin")
    assert (result.outcome, result.from_version, result.rolled_back_to) == \
        ("rolled_back", "v3", "v2")
    assert w.version("a") == "v2" and w.ready_pods("a", "v2") == 2
    result = engine.rollback("a", "v1")
    assert (result.outcome, result.rolled_back_to) == ("rolled_back", "v1")
    assert w.version("a") == "v1"
    # A version the cluster never ran is applied fresh.
    result = engine.rollback("a", "v0")
    assert result.outcome == "rolled_back" and w.version("a") == "v0"
    # Revisions are re-used, as `kubectl rollout undo` does.
    detail = engine.detail("a")
    assert [r.version for r in detail.revisions][-1] == "v0"
    assert sorted(r.version for r in detail.revisions) == ["v0", "v1", "v2", "v3"]
    assert len(detail.pods) == 2 and all(p.ready for p in detail.pods)
    engine.close()


def test_pause_resume_and_abort_with_rollback(world):
    ids = ["a", "b", "c", "d"]
    w = world(ids, readiness_delay=0.3)
    w.deploy_everywhere("v1")
    engine = w.engine()
    control = ReleaseControl()
    control.pause(by="frank")   # paused before it starts: nothing may start
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault("r", engine.run(
        ReleaseRequest(tag="v2", strategy="parallel", max_parallel=1), w.approve, control)))
    runner.start()
    # The engine says when it held a cluster back for the pause; until resumed, none starts.
    assert control.holding.wait(60), "the paused release never held a cluster back"
    assert Kind.CLUSTER_STARTED not in w.recorder.kinds()
    control.resume(by="frank")
    wait_for(lambda: w.recorder.of(Kind.CLUSTER_HEALTHY), "a healthy cluster")
    control.abort(rollback=True, by="frank")
    runner.join(30)
    result = done["r"]
    assert (result.outcome, result.exit_code) == ("aborted", 3)
    assert [e.data["by"] for e in w.recorder.of(Kind.RESUMED)] == ["frank"]
    assert all(w.version(c) == "v1" for c in ids)
    assert {c.outcome for c in result.clusters} <= {"rolled_back", "skipped"}
    assert result.clusters[0].outcome == "rolled_back"
    engine.close()


def test_a_failing_listener_never_kills_the_release(world):
    w = world(["a"])

    def broken(event):
        raise RuntimeError("listener bug")

    engine = w.engine()
    engine.add_listener(broken)
    # RELEASE_STARTED is strict (the ledger must record the start): a listener failing
    # there stops the release before anything is touched.
    result = engine.run(ReleaseRequest(tag="v1"), w.approve)
    assert (result.outcome, result.exit_code) == ("preflight_failed", 2)
    assert w.version("a") is None

    def broken_later(event):
        if event.kind is Kind.CLUSTER_PROGRESS:
            raise RuntimeError("listener bug")

    engine.listeners.remove(broken)
    engine.add_listener(broken_later)
    result = engine.run(ReleaseRequest(tag="v1"), w.approve)
    assert result.exit_code == 0 and w.version("a") == "v1"
    assert engine.listener_errors and "listener bug" in engine.listener_errors[-1]
    engine.close()


def test_rollback_of_a_release_reports_clusters_that_do_not_answer(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    engine = w.engine()
    release = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert release.exit_code == 0
    w.fleet.kill("c")
    results = {r.cluster: r for r in engine.rollback_release(release.release_id)}
    assert (results["a"].outcome, results["b"].outcome) == ("rolled_back", "rolled_back")
    assert results["c"].outcome == "failed"
    assert "could not tell whether release" in results["c"].error
    assert "unreachable" in results["c"].error
    engine.close()


def test_cluster_down_briefly_mid_rollout_recovers_and_completes(world):
    w = world(["a", "b"], readiness_delay=1.0, jitter=0.0)
    w.deploy_everywhere("v1")
    engine = w.engine(unreachable_grace=20.0)
    killed = w.kill_while_rolling(engine, "b", revive_after=1.5)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert killed.is_set()
    assert {c.cluster: c.outcome for c in result.clusters} == {"a": "healthy", "b": "healthy"}
    assert w.version("b") == "v2" and w.ready_pods("b", "v2") == 2
    engine.close()


def test_canary_failure_in_a_wave_stops_before_the_gate(world):
    w = world(["w1", "w2", "w3", "w4"], strategies=CANARY)
    w.deploy_everywhere("v1")
    w.fleet.set_faults("w1", crash=["v2"])
    asked = []
    engine = w.engine(grace=0.3)
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"),
                        lambda r: asked.append(r) or GateAnswer(GateDecision.APPROVE))
    assert (result.outcome, result.exit_code) == ("failed", 1)
    assert asked == [] and Kind.GATE_WAITING not in w.recorder.kinds()
    assert [c.outcome for c in result.clusters] == ["rolled_back", "skipped", "skipped",
                                                    "skipped"]
    assert "CrashLoopBackOff" in result.clusters[0].error
    assert all(w.version(c) == "v1" for c in ("w1", "w2", "w3", "w4"))
    engine.close()


def test_the_engine_takes_a_driver_factory(world):
    # The fleet file's kubeconfig files are gone: only the factory, which builds the
    # real driver straight from the simulator, can reach the clusters.
    w = world(["a", "b"])
    for cid in ("a", "b"):
        w.config.cluster(cid).credentials.kubeconfig.unlink()
    assert w.engine().status()[0].reachable is False   # the default factory needs them
    built: list[str] = []
    sim_drivers = w.sim_drivers()

    def factory(cid: str):
        built.append(cid)
        return sim_drivers(cid)

    engine = w.engine(driver_factory=factory)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert (result.outcome, result.exit_code) == ("ok", 0), result.message
    assert [w.version(c) for c in ("a", "b")] == ["v2", "v2"]
    assert sorted(built) == ["a", "b"]   # one driver per cluster, cached


def test_status_of_a_fleet_larger_than_one_round_of_readers_reads_every_cluster(world):
    """With more clusters than readers, each reader reads several clusters in turn: the
    wait covers every round (one round's bound gave up on most of a 1,000-cluster fleet,
    shown as unreachable though every cluster answered)."""
    ids = [f"c{n:02d}" for n in range(24)]
    w = world(ids)
    w.deploy_everywhere("v1")
    for cid in ids:
        w.fleet.set_faults(cid, latency=0.4)
    engine = w.engine(status_timeout=1.0)   # one round's bound: 1.0 * 2 + 2 = 4 s
    engine.status_readers = 2               # 12 rounds of >= 0.4 s each
    statuses = engine.status()
    assert [(s.cluster, s.reachable, s.version) for s in statuses] == \
        [(cid, True, "v1") for cid in ids], [s.error for s in statuses if not s.reachable]


def test_a_one_shot_status_closes_each_connection_once_read_and_the_engine_reads_again(world):
    """`release-console status` exits after one reading: its readers close each cluster's
    connection as soon as it is read (`keep_connections=False`), rather than the engine
    closing a thousand of them one after the other at the end; an engine that reads
    again opens new ones. The default keeps them (the TUI reads every 30 s)."""
    ids = ["a", "b", "c"]
    w = world(ids)
    w.deploy_everywhere("v1")
    engine = w.engine()

    def open_pools() -> dict[str, int]:
        # Each client's kept open connections (its direct ones: no urllib3 pool is used).
        pools = {cid: engine.driver(cid).client._direct for cid in ids}
        return {cid: sum(c._conn is not None for c in pool.idle()) if pool else 0
                for cid, pool in pools.items()}

    assert [(s.cluster, s.version) for s in engine.status(keep_connections=False)] == \
        [(cid, "v1") for cid in ids]
    assert open_pools() == {"a": 0, "b": 0, "c": 0}
    assert [(s.cluster, s.version) for s in engine.status()] == [(cid, "v1") for cid in ids]
    assert open_pools() == {"a": 1, "b": 1, "c": 1}
    engine.close()


def test_a_one_shot_status_keeps_no_tls_session_and_a_kept_reading_does(world):
    """A one-shot reading's connection is its cluster's last: its TLS session is not
    taken from OpenSSL to be kept (~0.3 ms of CPU per read of `release-console status`).
    An engine that keeps its connections (the TUI's readings, a release's reads) still
    keeps each cluster's session for its next connection, and reads after a one-shot
    reading keep theirs again."""
    from console.kube import tls_contexts

    ids = ["a", "b"]
    w = world(ids)
    w.deploy_everywhere("v1")
    engine = w.engine()
    ports = {w.fleet.port(cid) for cid in ids}

    def kept() -> set[int]:
        return {key[2][1] for key in tls_contexts._sessions if key[2][1] in ports}

    # The deploy above kept the clusters' sessions: forget them.
    for key in [k for k in tls_contexts._sessions if k[2][1] in ports]:
        del tls_contexts._sessions[key]
    assert [(s.cluster, s.version) for s in engine.status(keep_connections=False)] == \
        [(cid, "v1") for cid in ids]
    assert kept() == set()
    assert [(s.cluster, s.version) for s in engine.status()] == [(cid, "v1") for cid in ids]
    assert kept() == ports
    engine.close()

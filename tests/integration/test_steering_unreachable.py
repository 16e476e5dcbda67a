"""Steering a release while one of its clusters is unreachable, through the CLI as real
processes on the simulator: pause and abort (actions that only reduce what the release
does) are taken with the request shown on every reachable target and name the
unreachable ones; approve, skip, retry and resume still need every target and say the
cluster is unreachable (not that rights are missing); with the control lease's own
cluster down the release moves its channel to another lease it holds."""

from __future__ import annotations

import pytest

from tests.integration.test_steering import Deploy, control, plant_lease, steered

CANARY = {"canary": {"waves": [["a"], ["b", "c", "d"]], "gates": True}}
ADMIN = "system:serviceaccount:kube-system:a-admin"


def moved_to(w, rid: str) -> str | None:
    """The cluster of b, c, d whose lease (read in the simulator's store, not through a)
    carries the release's announcement after a move."""
    from console.locks import control as wire
    from console.locks import lease_name
    for cid in "bcd":
        lease = w.fleet.get(cid, "coordination.k8s.io/leases", cid,
                            lease_name(w.config.app.name))
        said = wire.decoded(lease or {}, wire.STEERING, {})
        if said.get("release") == rid and said.get("moves", 0) >= 1:
            return cid
    return None


def resumed_then_aborted(w, deploy: Deploy, rid: str) -> int:
    """`control resume`, then `control abort --rollback`, each acknowledged; the release's
    exit code once it ended."""
    for action in (("resume",), ("abort", "--rollback")):
        answer = control(w.config_path, rid, *action)
        assert answer.returncode == 0, (action, answer.stderr)
    return deploy.finish()


def test_abort_is_taken_with_a_target_unreachable_approve_is_not(world, tmp_path):
    w = world(["a", "b", "c", "d"], strategies=CANARY, readiness_delay=0.3, jitter=0.0)
    with Deploy.gated_canary(w.config_path, tmp_path) as deploy:
        rid = deploy.at_gate()
        w.fleet.set_faults("d", unreachable=True)
        approve = control(w.config_path, rid, "approve")
        assert approve.returncode == 2, approve.stderr
        assert "d" in approve.stderr and "unreachable" in approve.stderr
        assert "needs update rights" not in approve.stderr
        skip = control(w.config_path, rid, "skip", "b")
        assert skip.returncode == 2 and "unreachable" in skip.stderr, skip.stderr
        assert w.version("b") is None and not deploy.kinds("gate_decided")
        pause = control(w.config_path, rid, "pause")
        assert pause.returncode == 0, pause.stderr
        assert "not shown on d: unreachable" in pause.stdout
        abort = control(w.config_path, rid, "abort")
        assert abort.returncode == 0, abort.stderr
        assert "not shown on d: unreachable" in abort.stdout
        code = deploy.finish()
    assert code == 3, deploy.stderr()
    assert deploy.kinds("release_finished")[0]["outcome"] == "aborted"
    assert [w.version(c) for c in "bcd"] == [None] * 3
    records = steered(w, rid)
    actions = [(s["action"], s["by"]) for s in records if not s.get("refused")]
    assert ("pause", ADMIN) in actions and ("abort", ADMIN) in actions
    assert not any(a in ("approve", "skip") for a, _ in actions)
    # The ledger records which cluster could not be shown the request.
    abort = next(s for s in records if s["action"] == "abort")
    assert "not shown on d: unreachable" in abort["detail"], abort
    refused = [s for s in records if s.get("refused")]
    assert {s["action"] for s in refused} == {"approve", "skip"}
    assert all("unreachable" in s["refused"] for s in refused)


def test_the_channel_moves_when_the_control_lease_cluster_is_unreachable(world, tmp_path):
    w = world(["a", "b", "c", "d"], strategies=CANARY, readiness_delay=0.3, jitter=0.0)
    with Deploy.gated_canary(w.config_path, tmp_path) as deploy:
        rid = deploy.at_gate()
        w.fleet.set_faults("a", unreachable=True)     # a holds the control lease
        pause = control(w.config_path, rid, "pause")
        assert pause.returncode == 0, pause.stderr
        assert "not shown on a: unreachable" in pause.stdout
        approve = control(w.config_path, rid, "approve")
        assert approve.returncode == 2 and "a (" in approve.stderr, approve.stderr
        assert "unreachable" in approve.stderr and "listen" not in approve.stderr
        # a answers again: the strict actions go through (on the lease the release
        # moved to; the announcement it left on a is older).
        w.fleet.set_faults("a", unreachable=False)
        code = resumed_then_aborted(w, deploy, rid)
    assert code == 3, deploy.stderr()
    assert deploy.kinds("release_finished")[0]["outcome"] == "aborted"
    assert w.version("b") is None
    actions = [s["action"] for s in steered(w, rid)]
    assert {"pause", "resume", "abort"} <= set(actions)


def test_follow_shows_the_state_from_the_lease_the_channel_moved_to(world):
    """Leases as a release leaves them after its channel moved from a to b while a was
    down: a still carries the older announcement. `follow` and `control` take b's."""
    from console.engine import Engine
    from console.engine.follow import snapshot
    from console.engine.steering_client import listening_leases

    w = world(["a", "b"])
    engine = Engine(w.config)
    try:
        plant_lease(engine, "a", {"release": "r-moved", "paused": True, "moves": 1})
        plant_lease(engine, "b", {"release": "r-moved", "paused": False})
        # Here a holds the newer announcement (moves 1), b the older one.
        assert snapshot(engine, "r-moved", None).steering["paused"] is True
        (listening,), others = listening_leases(engine, "r-moved")
        assert listening.cluster == "a" and [v.cluster for v in others] == ["b"]
    finally:
        engine.close()


# The story is a chain of the product's own waits on a hanging cluster, each bounded by
# its own limit: the move (`bound` below), `control`s whose reads of the hanging cluster
# each take the 10 s request timeout, the release's retries to take its old announcement
# off a (10, 20, 40 s apart, up to WITHDRAW_MAX), then resume, abort and the rollback.
# About 95 s on a calm machine, 127-212 s at load 15-23: past the suite's 180 s default
# (its backstop against a hung test), never near this one.
@pytest.mark.timeout(600)
def test_the_channel_moves_off_a_hanging_cluster_within_a_bound(world, tmp_path):
    """a holds the control lease and hangs (the simulator accepts every request and
    answers none for 600 s). The release moves its channel to another lease it holds
    within a bound set by its own settings, and `control pause` is acknowledged through
    it; once a answers again the strict actions work and the announcement left on a is
    taken off. (Not proven here: that the probe of a quiet watch is what notices. With
    the probe disabled the channel still moved after 21 s in this story - its watch of
    a reports an error soon after a hangs; a lone watch in the simulator stays silent.)"""
    import time

    from console.engine import Engine
    from console.engine.core import REQUEST_TIMEOUT
    from console.engine.steering import FAILOVER, POLL, PROBE, WATCH_TIMEOUT, WITHDRAW_MAX
    from console.engine.steering_client import listening_leases, read_leases
    from tests.integration.conftest import in_thread, wait_for

    w = world(["a", "b", "c", "d"], strategies=CANARY, readiness_delay=0.3, jitter=0.0)

    with Deploy.gated_canary(w.config_path, tmp_path) as deploy:
        rid = deploy.at_gate()
        hung = time.monotonic()
        w.fleet.set_faults("a", latency=[600.0, 600.0])
        asked, box = in_thread(lambda: control(w.config_path, rid, "pause"))
        # The bound on the move comes from the release's own settings: PROBE s of a quiet
        # watch, then FAILOVER reads of the lease that each time out (REQUEST_TIMEOUT),
        # a POLL apart - 25.5 s of waiting by default - and a few requests and
        # decisions of the release, which a loaded machine slows: 20 s for those. A
        # channel that never moves, or only once a silent watch's read timed out (the
        # watch's 120 s), fails it. The moment is seen in the simulator: `control`'s own
        # time (a process starting on a loaded machine, its reads of a timing out) is
        # not the release's.
        bound = PROBE + FAILOVER * (REQUEST_TIMEOUT + POLL) + 20.0
        # Only then does the bound tell a move from a silent watch's own end.
        assert bound < WATCH_TIMEOUT, (bound, WATCH_TIMEOUT)
        moved = wait_for(lambda: moved_to(w, rid), timeout=bound,
                         what="the release to move its channel off a")
        took = time.monotonic() - hung
        asked.join(timeout=300)
        assert "result" in box, box.get("error")
        pause = box["result"]
        acked = time.monotonic() - hung
        print(f"hanging control lease: the channel moved to {moved} {took:.1f}s after a "
              f"hung (bound {bound:g}s); pause acknowledged after {acked:.1f}s")
        # Acknowledged: within `control`'s own limits (it waits up to FAILOVER_WAIT s
        # for the move, then up to its --timeout for the answer).
        assert pause.returncode == 0, pause.stderr
        assert "not shown on a" in pause.stdout, pause.stdout
        engine = Engine(w.config)
        try:
            (listening,), _others = listening_leases(engine, rid)
            assert listening.cluster != "a" and listening.steering.get("moves", 0) >= 1
            # Steering keeps working: a second action through the moved channel.
            pause_again = control(w.config_path, rid, "pause")
            assert pause_again.returncode == 2 and "paused already" in pause_again.stderr
            w.fleet.set_faults("a", latency=[0.0, 0.0])
            # Cleaned, not only outranked: the release takes its old announcement off a.
            wait_for(lambda: not read_leases(engine, ["a"])[0].steering,
                     timeout=WITHDRAW_MAX + 30, what="the announcement left on a taken off")
            assert read_leases(engine, ["a"])[0].release == rid   # still the release's lease
        finally:
            engine.close()
        code = resumed_then_aborted(w, deploy, rid)
    assert code == 3, deploy.stderr()
    actions = [s["action"] for s in steered(w, rid)]
    assert {"pause", "resume", "abort"} <= set(actions)


def test_a_lease_left_behind_with_its_announcement_is_nobodys_channel(world):
    """A release ended while a was down: it could neither give a's lease back nor take
    its announcement off. Once a answers, that lease (not renewed for an hour) is no
    running release: `control` says so at once (exit 2, not a wait for an answer that
    never comes), `follow` finds no running release in it, and a live announcement
    elsewhere is not shadowed by it."""
    from datetime import datetime, timedelta, timezone

    from console.engine import Engine
    from console.engine.follow import running_release, snapshot
    from console.locks import lease_name
    from console.locks.lease import LEASES

    w = world(["a", "b"])
    engine = Engine(w.config)
    try:
        plant_lease(engine, "a", {"release": "r-gone", "paused": True, "moves": 3})
        driver = engine.driver("a")
        path = LEASES.format(namespace=driver.namespace) + "/" + lease_name(w.config.app.name)
        lease = driver.client.request("GET", path, timeout=10)
        hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
        lease["spec"].update(leaseDurationSeconds=60,
                             renewTime=hour_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        driver.client.request("PUT", path, body=lease, timeout=10)
        assert running_release(engine) is None
        # The same release id live on b (as after a move): b's state wins, though a's
        # stale announcement claims more moves.
        plant_lease(engine, "b", {"release": "r-gone", "paused": False, "moves": 1})
        assert snapshot(engine, "r-gone", None).steering["paused"] is False
        assert running_release(engine) == "r-gone"
    finally:
        engine.close()
    w2 = world(["c"])
    engine = Engine(w2.config)
    try:
        plant_lease(engine, "c", {"release": "r-left"})
        driver = engine.driver("c")
        path = LEASES.format(namespace=driver.namespace) + "/" + lease_name(w2.config.app.name)
        lease = driver.client.request("GET", path, timeout=10)
        lease["spec"].update(leaseDurationSeconds=60,
                             renewTime=hour_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        driver.client.request("PUT", path, body=lease, timeout=10)
    finally:
        engine.close()
    done = control(w2.config_path, "r-left", "pause", "--timeout", "20")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "left behind" in done.stderr and "last renewed 60 min ago" in done.stderr, done.stderr


def test_one_person_stays_one_approver_after_the_channel_moved(world, tmp_path):
    """Each cluster names the same credentials its own way (a-admin, b-admin). `control
    approve` asks the first cluster the release holds - not the one its channel moved
    to - so the same fleet file cannot count twice on an `approvals: 2` gate."""
    from tests.waiting import wait_for

    strategies = {"canary": {**CANARY["canary"], "approvals": 2}}
    w = world(["a", "b", "c", "d"], strategies=strategies, readiness_delay=0.3, jitter=0.0)

    with Deploy.gated_canary(w.config_path, tmp_path) as deploy:
        rid = deploy.at_gate()
        first = control(w.config_path, rid, "approve")
        assert first.returncode == 0 and "1 of 2 approvals" in first.stdout, first.stderr
        w.fleet.set_faults("a", unreachable=True)     # a holds the control lease
        moved = wait_for(lambda: moved_to(w, rid), timeout=120,
                         what="the release to move its channel off a")
        w.fleet.set_faults("a", unreachable=False)    # the channel stays where it moved
        again = control(w.config_path, rid, "approve")
        assert again.returncode == 2 and "distinct approvers" in again.stderr, \
            (moved, again.returncode, again.stdout, again.stderr)
        assert not deploy.kinds("gate_decided") and w.version("b") is None
        abort = control(w.config_path, rid, "abort")
        assert abort.returncode == 0, abort.stderr
        code = deploy.finish()
    assert code == 3, deploy.stderr()
    approvals = [s["by"] for s in steered(w, rid)
                 if s["action"] == "approve" and not s.get("refused")]
    assert approvals == [ADMIN], approvals


def test_a_channel_that_did_not_move_in_time_is_no_answer_not_no_release(world, monkeypatch):
    """The release holds b, its channel was on a and a is down, and it has not moved it
    (yet) when `control`'s wait ends: the release runs - exit 1 (`NoAnswer`: try again),
    not exit 2, which says there is no such release or nothing to act on."""
    from console.engine import Engine
    from console.engine import steering_client
    from console.locks import lease_name
    from console.locks.lease import LEASES

    w = world(["a", "b"])
    # The wait for the move, shortened: what is said when it ends is under test.
    monkeypatch.setattr(steering_client, "FAILOVER_WAIT", 1.0)
    engine = Engine(w.config)
    try:
        plant_lease(engine, "a", {"release": "r-stuck"})
        driver = engine.driver("b")     # held, no announcement: the channel is still on a
        driver.client.request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": driver.namespace}}, timeout=10)
        driver.client.request("POST", LEASES.format(namespace=driver.namespace), body={
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name(engine.config.app.name)},
            "spec": {"holderIdentity": "ci@host:1/r-stuck"}}, timeout=10)
        w.fleet.set_faults("a", unreachable=True)
        with pytest.raises(steering_client.NoAnswer) as raised:
            steering_client.send(engine, "r-stuck", "pause")
        assert "did not move its channel within 1s" in str(raised.value)
    finally:
        engine.close()

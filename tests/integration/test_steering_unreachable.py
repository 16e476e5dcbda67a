"""Steering a release while one of its clusters is unreachable, through the CLI as real
processes on the simulator: pause and abort (actions that only reduce what the release
does) are taken with the request shown on every reachable target and name the
unreachable ones; approve, skip, retry and resume still need every target and say the
cluster is unreachable (not that rights are missing); with the control lease's own
cluster down the release moves its channel to another lease it holds."""

from __future__ import annotations

from tests.integration.test_steering import Deploy, control, plant_lease, steered

CANARY = {"canary": {"waves": [["a"], ["b", "c", "d"]], "gates": True}}
ADMIN = "system:serviceaccount:kube-system:a-admin"


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
        resume = control(w.config_path, rid, "resume")
        assert resume.returncode == 0, resume.stderr
        abort = control(w.config_path, rid, "abort", "--rollback")
        assert abort.returncode == 0, abort.stderr
        code = deploy.finish()
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
    from console.engine.steering_client import release_leases

    w = world(["a", "b"])
    engine = Engine(w.config)
    try:
        plant_lease(engine, "a", {"release": "r-moved", "paused": True, "moves": 1})
        plant_lease(engine, "b", {"release": "r-moved", "paused": False})
        # Here a holds the newer announcement (moves 1), b the older one.
        assert snapshot(engine, "r-moved", None).steering["paused"] is True
        listening, others = release_leases(engine, "r-moved")
        assert listening.cluster == "a" and [v.cluster for v in others] == ["b"]
    finally:
        engine.close()

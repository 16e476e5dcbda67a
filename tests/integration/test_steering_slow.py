"""`control` on slow clusters (issue 15 item 2): a Lease read that times out is not an
absent Lease. Seeded latency on the simulator, real processes; the rolling cluster's pods
held not Ready (`hold_ready`) until the action was taken, so the release still runs."""

from __future__ import annotations

from console.engine.core import REQUEST_TIMEOUT, STATUS_TIMEOUT
from tests.integration.conftest import wait_for
from tests.integration.test_steering import Deploy, control, plant_lease

# Above the status timeout (3 s) a Lease read was once made with, below the request
# timeout (10 s) every call of `control` now has.
SLOW = 3.5
assert STATUS_TIMEOUT < SLOW < REQUEST_TIMEOUT


def test_control_finds_a_running_release_whose_clusters_answer_slowly(world, tmp_path):
    # Every call to a takes 3.5 s. `control` read the Leases with the 3 s status
    # timeout, found none it could read naming the release and said "no running
    # release ...; a (...) unreachable" (exit 2) of a release that was running; it asked
    # who it is with the same timeout, so a slow answer would have been refused as
    # unconfirmed.
    ids = ["a"]
    w = world(ids, readiness_delay=1.0, jitter=0.0, seed=15)
    w.fleet.set_faults("a", hold_ready=["v2"])
    with Deploy(w.config_path, tmp_path, "--tag", "v2", "--strategy", "parallel",
                "--max-parallel", "1") as deploy:
        wait_for(lambda: deploy.kinds("cluster_started"), what="the first cluster start")
        rid = deploy.release_id
        w.fleet.set_faults("a", latency=SLOW)
        paused = control(w.config_path, rid, "pause")
        assert paused.returncode == 0, paused.stderr
        assert "pause" in paused.stdout and "system:serviceaccount:kube-system:" in paused.stdout
        wait_for(lambda: deploy.kinds("paused"), what="the paused event")
        w.fleet.set_faults("a", latency=0.0)
        resumed = control(w.config_path, rid, "resume")   # a still held: it still runs
        assert resumed.returncode == 0, resumed.stderr
        w.fleet.set_faults("a", hold_ready=[])
        assert deploy.finish() == 0, deploy.stderr()
    assert w.version("a") == "v2"


def test_a_lease_that_cannot_be_read_is_not_taken_for_no_release(world, tmp_path):
    # a's Lease names the release (planted as a release leaves it, no process behind
    # it), and a answers slower than every timeout `control` has: it cannot tell whether
    # the release runs - exit 1 naming a, not exit 2 "no running release". Without the
    # latency the same request finds the release (and waits for its answer).
    w = world(["a", "b"], seed=15)
    engine = w.engine()
    plant_lease(engine, "a", {"release": "r-quiet", "paused": False})
    w.fleet.set_faults("a", latency=REQUEST_TIMEOUT + 2)
    unknown = control(w.config_path, "r-quiet", "pause", "--timeout", "1")
    assert unknown.returncode == 1, unknown.stderr
    assert "cannot tell whether release r-quiet runs" in unknown.stderr
    assert "a (" in unknown.stderr and "could not be read" in unknown.stderr
    w.fleet.set_faults("a", latency=0.0)
    found = control(w.config_path, "r-quiet", "pause", "--timeout", "1")
    assert found.returncode == 1 and "did not acknowledge pause within 1s" in found.stderr

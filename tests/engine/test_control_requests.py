"""What the control channel costs the cluster it listens on (issue 16: at most 8 requests
per cluster for a deploy). Over any other cluster of the release: the announcement, its
withdrawal, one watch and the probes of a quiet watch - no list before the watch, no
second write of the state just announced, no read before writing what the release
itself wrote last, and no renewal refused (409, then a read and a second write) because
the channel had changed the lease in between."""

from __future__ import annotations

from console.engine import ReleaseControl, ReleaseRequest

from .conftest import approve


def spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_the_control_lease_costs_its_cluster_a_few_requests_more_than_the_others(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    for cid in ("a", "b", "c"):
        w.fleet.set_faults(cid, readiness_delay=3.0, jitter=0.0)     # a rollout of ~6 s
    before = {c: dict(w.fleet.counters(c)["by_verb_resource"]) for c in ("a", "b")}
    # Renewed every 3 s: the channel's watch hears the lease change more often than it
    # would probe a quiet one (steering.PROBE), so the probes stay few however slow the run.
    engine = w.engine(lock_duration=6)
    result = engine.run(ReleaseRequest(tag="v2"), approve, ReleaseControl(steerable=True))
    assert result.exit_code == 0, result
    a, b = (spent(before[c], w.fleet.counters(c)["by_verb_resource"]) for c in ("a", "b"))
    lease = {k: v for k, v in a.items() if k.endswith(" leases")}
    assert "list leases" not in a and a.get("watch leases") == 1, lease
    # Announced and withdrawn; renewals and the give-back as many as on b (one more at
    # most: the two leases' last renewals race the end of the release).
    assert a.get("update leases", 0) - b.get("update leases", 0) <= 3, (lease, b)
    # Reads: the probes of a quiet watch at most (one before the first renewal, one
    # after the last).
    assert a.get("get leases", 0) - b.get("get leases", 0) <= 2, (lease, b)
    assert sum(a.values()) - sum(b.values()) <= 6, (a, b)

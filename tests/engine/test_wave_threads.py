"""The wave runner's threads: a parallel wave has all its workers running before its
first cluster starts, and finished rollouts come back without polling every future."""

from __future__ import annotations

import threading

from console.engine import ReleaseRequest
from console.events import Kind


def test_a_parallel_wave_has_its_threads_before_its_first_cluster_starts(world):
    ids = [f"c{i}" for i in range(8)]
    w = world(ids, readiness_delay=0.2, jitter=0.0)
    w.deploy_everywhere("v1")
    engine = w.engine()
    seen: list[int] = []

    def at_first_start(event):
        if event.kind is Kind.CLUSTER_STARTED and not seen:
            prefix = f"release-{event.release_id}"
            seen.append(sum(t.name.startswith(prefix) for t in threading.enumerate()))

    engine.add_listener(at_first_start)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert [c.outcome for c in result.clusters] == ["healthy"] * len(ids)
    # Started one per submit, the first cluster began while the others' threads were
    # still being made (each start waiting for the GIL among running rollouts).
    assert seen == [len(ids)]


def test_a_clusters_start_is_told_outside_the_run_lock(world):
    """The listeners of CLUSTER_STARTED (output, ledger) run without the run lock held:
    under it, a large wave's starts queued behind one another's listeners."""
    w = world(["a", "b"], readiness_delay=0.2, jitter=0.0)
    w.deploy_everywhere("v1")
    engine = w.engine()
    free: list[bool] = []

    def at_start(event):
        if event.kind is Kind.CLUSTER_STARTED:
            run = engine.run_holding(event.cluster)
            got = run.lock.acquire(timeout=5)   # held by this very thread: never
            if got:
                run.lock.release()
            free.append(got)

    engine.add_listener(at_start)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert [c.outcome for c in result.clusters] == ["healthy", "healthy"]
    assert free == [True, True]

"""`run.results` is written under `run.lock` by every writer: the control channel's
listener reads it under that lock from its own thread. While another thread holds the
lock, skipping a cluster (`_skip`) and rolling back what a release reached
(`rollback_reached`) wait for it - on the simulator, with a real rollback."""

from __future__ import annotations

import threading

from console.engine import ReleaseRequest
from console.engine.api import ClusterResult, Outcome, ReleaseControl
from console.engine.rollbacks import rollback_reached
from console.engine.wave_clusters import skip as _skip
from console.engine.waves import ReleaseRun
from console.events import Kind

HELD = 1.0   # s the test holds the lock and checks that nothing was written meanwhile


def _run(engine, before) -> ReleaseRun:
    plan = engine.plan(ReleaseRequest(tag="v2", strategy="parallel"))
    return ReleaseRun("r-20261201-1740-beef", "v2", plan, ReleaseControl(), before)


def test_skip_writes_results_under_the_run_lock(world):
    w = world(["a"], seed=71)
    w.deploy_everywhere("v1")
    engine = w.engine()
    try:
        run = _run(engine, {"a": engine.driver("a").live()})
        with run.lock:
            writer = threading.Thread(target=_skip, args=(engine, run, "a", "test"))
            writer.start()
            writer.join(timeout=HELD)
            assert writer.is_alive() and "a" not in run.results
        writer.join(timeout=30)
    finally:
        engine.close()
    assert run.results["a"].outcome is Outcome.SKIPPED


def test_rollback_reached_reads_and_writes_results_under_the_run_lock(world):
    w = world(["a"], seed=72)
    w.deploy_everywhere("v1")
    engine = w.engine()
    try:
        before = {"a": engine.driver("a").live()}
        w.deploy_everywhere("v2")
        run = _run(engine, before)
        run.results["a"] = ClusterResult("a", Outcome.HEALTHY, "v1", "v2")
        with run.lock:
            worker = threading.Thread(target=rollback_reached,
                                      args=(engine, run, "test abort"))
            worker.start()
            worker.join(timeout=HELD)
            assert worker.is_alive() and not w.recorder.of(Kind.CLUSTER_ROLLING_BACK)
        worker.join(timeout=120)
    finally:
        engine.close()
    assert run.results["a"].outcome is Outcome.ROLLED_BACK
    assert w.version("a") == "v1"

"""One cluster's rollout inside a release: read what runs, apply, follow the rollout,
verify, and on a failure after the apply roll the cluster back to what it ran before."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from console.engine import bake
from console.engine.api import ClusterResult, Outcome
from console.engine.rollbacks import helm_data, restore
from console.errors import UserError
from console.events import Kind
from console.kube.client import ClusterError
from console.kube.driver import (ANN_PREVIOUS, ANN_RELEASE, ANN_VERSION, LiveDeployment,
                                 Progress, RolloutInterrupted)
from console.kube.writes_first import WRITES, Coming

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun

log = logging.getLogger(__name__)


def hand_out(pool: ThreadPoolExecutor, engine: Engine, run: ReleaseRun, cid: str,
             wave: int) -> Future:
    """Deploy `cid` on a worker of `pool` (its future gives the `ClusterResult`).

    Its apply counts from now (`console.kube.writes_first`): a cluster of the wave that
    applied first waits for it before opening its watches, however late this one's
    thread gets to its apply on a busy machine."""
    coming = WRITES.coming()
    try:
        future = pool.submit(deploy_cluster, engine, run, cid, wave, run.stop_event(cid),
                             coming)
    except BaseException:
        coming.done()
        raise
    future.add_done_callback(lambda _f: coming.done())   # it ended without an apply
    return future


def deploy_cluster(engine: Engine, run: ReleaseRun, cid: str, wave: int,
                   cancel: threading.Event, coming: Coming | None = None) -> ClusterResult:
    """Deploy the release to one cluster; on failure roll it back. Never raises.

    Every failure once the cluster may have been written to - a cluster error, a bad
    answer, a bug - is told (CLUSTER_FAILED) and rolled back; it counts against the
    failure budget at once, before the rollback starts. `coming`: this cluster's apply
    as counted since the wave handed it out (`console.kube.writes_first`), done once
    the apply is (the wave runner says so too when the cluster ends without one).
    """
    started = time.monotonic()
    rid = run.release_id
    before = run.before.get(cid)
    touched = False
    try:
        driver = engine.driver(cid)
        # The rollback target must be what the cluster ran just before we touched it,
        # and a gate may have waited long since pre-flight read it. With the manifests
        # driver pre-flight's read stands: the apply carries its resourceVersion as a
        # precondition (a Deployment changed since is a 409, then read again). Else, or
        # for a first install, read it now.
        precondition = before.resource_version if before is not None and before.exists \
            and getattr(driver, "installs_on_version", False) else ""
        if not precondition:
            before = driver.live()
            run.before[cid] = before
        with run.lock:
            # The last word on starting: a failure counted since the wave runner chose
            # this cluster (or an abort) keeps it untouched.
            stop = run.stop_reason()
            if stop is not None and stop == run.lock_lost():
                run.stopped_by_lost_lock = True
            if stop is None:
                run.pacer.began(cid)    # pacing counts the real start
        if stop is None:
            # Told outside the run lock: the listeners (output, ledger) take their time,
            # and under it a 1,000-cluster wave's starts queued behind one another (the
            # last one 9 s after the first).
            engine.event(Kind.CLUSTER_STARTED, rid, cid,
                         f"{before.version or 'nothing'} -> {run.tag}",
                         from_version=before.version, to_version=run.tag, wave=wave,
                         digest=run.digest)
        else:
            engine.event(Kind.CLUSTER_SKIPPED, rid, cid, f"skipped: {stop}", reason=stop)
            return ClusterResult(cid, Outcome.SKIPPED, before.version, run.tag, error=stop)
        if not before.exists:
            # A Deployment just read lives in its namespace: only a first install may
            # need it made (take_lock ensured it, but the gate may have waited long).
            driver.ensure_namespace()
        # Renders (touches nothing); pinned: the digest resolved when the release was planned.
        prepared = driver.prepare(run.tag, run.digest)
        if cancel.is_set():     # aborted, lease lost or taken over since it was started
            raise RolloutInterrupted(cid)
        touched = True
        try:
            applied = _install(driver, run, cid, prepared, before, precondition)
        finally:
            before = run.before.get(cid, before)   # read again after a 409
            if coming is not None:
                coming.done()       # other rollouts may open their watches now
        driver.follow(applied, engine.rollout_timeout,
                      on_progress=progress_listener(engine, rid, cid), cancel=cancel)
        driver.verify(applied)
        # What the bake holds the cluster to: what was applied, restarts as healthy now.
        run.baselines[cid] = bake.applied(
            driver, applied, bakes=bake.seconds_of(engine, run.plan.waves[wave].bake) > 0)
    except RolloutInterrupted:
        duration = time.monotonic() - started
        lost = run.lease_lost(cid)
        taken_by = run.handed_over.get(cid)
        if lost:
            # Another console took the cluster's lease: leave the cluster to it (no rollback).
            run.stopped_by_lost_lock = True
            why = f"interrupted: release lock lost on {cid} ({lost})"
        elif taken_by:
            why = f"interrupted: taken over by {taken_by} during the release (manual rollback)"
        else:
            why = "interrupted: release aborted"
        engine.event(Kind.CLUSTER_FAILED, rid, cid, why, error=why, duration=duration,
                     outcome=Outcome.INTERRUPTED.value)
        return ClusterResult(cid, Outcome.INTERRUPTED, before.version if before else None,
                             run.tag, duration, why)
    except (ClusterError, UserError) as exc:
        unreachable = isinstance(exc, ClusterError) and exc.unreachable
        error = exc.reason if isinstance(exc, ClusterError) else str(exc)
        return _failed(engine, run, cid, before, touched, error, started, unreachable)
    except Exception as exc:  # noqa: BLE001 - a bad answer or a bug: still a failure
        log.exception("release %s: deploying %s failed unexpectedly", rid, cid)
        return _failed(engine, run, cid, before, touched,
                       f"unexpected error: {type(exc).__name__}: {exc}", started, False)
    duration = time.monotonic() - started
    engine.last_errors.pop(cid, None)
    engine.event(Kind.CLUSTER_HEALTHY, rid, cid, f"healthy at {run.tag} in {duration:.1f}s",
                 version=run.tag, duration=duration, digest=run.digest, **helm_data(driver))
    return ClusterResult(cid, Outcome.HEALTHY, before.version, run.tag, duration,
                         digest=run.digest)


def _install(driver: Any, run: ReleaseRun, cid: str, prepared: Any, before: LiveDeployment,
             precondition: str) -> dict[str, Any]:
    """Install the release over `before`; when `precondition` (its resourceVersion) no
    longer holds, read what runs now and install over that (`run.before` follows)."""
    def annotations(live: LiveDeployment) -> dict[str, str]:
        return {ANN_VERSION: run.tag, ANN_RELEASE: run.release_id,
                ANN_PREVIOUS: live.version or ""}

    if not precondition:
        return driver.install(prepared, annotations(before))
    try:
        return driver.install(prepared, annotations(before), precondition=precondition)
    except ClusterError as exc:
        if exc.status != 409:
            raise
    # Changed since pre-flight read it (nothing was written): what runs now is the
    # rollback target.
    before = driver.live()
    run.before[cid] = before
    return driver.install(prepared, annotations(before))


def _failed(engine: Engine, run: ReleaseRun, cid: str, before: LiveDeployment | None,
            touched: bool, error: str, started: float, unreachable: bool) -> ClusterResult:
    """Count, tell and - when the cluster may have been written to - roll back one
    cluster's failure."""
    rid = run.release_id
    from_version = before.version if before else None
    duration = time.monotonic() - started
    engine.last_errors[cid] = error
    with run.lock:
        run.count_failure(cid)
    if unreachable:
        engine.event(Kind.CLUSTER_UNREACHABLE, rid, cid, error, error=error)
    engine.event(Kind.CLUSTER_FAILED, rid, cid, error, error=error, duration=duration)
    if not touched or before is None:
        return ClusterResult(cid, Outcome.FAILED, from_version, run.tag, duration, error)
    if run.lease_lost(cid):     # the cluster is another console's now: hands off
        return ClusterResult(cid, Outcome.FAILED, from_version, run.tag, duration,
                             f"{error}; not rolled back: the release lock was lost")
    if cid in run.handed_over:  # an operator's rollback runs there now
        return ClusterResult(cid, Outcome.FAILED, from_version, run.tag, duration,
                             f"{error}; not rolled back: taken over by "
                             f"{run.handed_over[cid]} during the release")
    ok, rb_error = restore(engine, rid, cid, before, run.tag, "automatic rollback")
    duration = time.monotonic() - started
    if ok:
        return ClusterResult(cid, Outcome.ROLLED_BACK, from_version, run.tag, duration,
                             error, rolled_back_to=before.version)
    return ClusterResult(cid, Outcome.FAILED, from_version, run.tag, duration,
                         f"{error}; rollback failed: {rb_error}")


def progress_listener(engine: Engine, rid: str, cid: str) -> Callable[[Progress], None]:
    """Turn the driver's rollout progress into CLUSTER_PROGRESS events."""
    def on_progress(p: Progress) -> None:
        message = p.message if not p.problem else f"{p.message} [{p.problem}]"
        engine.event(Kind.CLUSTER_PROGRESS, rid, cid, message, desired=p.desired,
                     updated=p.updated, ready=p.ready, available=p.available,
                     phase=p.phase, problem=p.problem)
    return on_progress

"""Rollbacks: the automatic one of a failed cluster, the one of every cluster a release
reached (abort, or a failure with `on_failure: wave | release` - `rollback_scope`), and
the manual ones - one cluster (`rollback`) or every cluster a past
release reached (`rollback_release`, found by the release-id annotation).

Manual rollbacks emit CLUSTER_ROLLING_BACK / CLUSTER_ROLLED_BACK with `release_id` ""
(one cluster) or the id of the release being rolled back, and `by` in their data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from console.engine.action_lease import ActionLease
from console.engine.api import ClusterResult, ClusterStatus, Outcome, new_release_id
from console.errors import UserError, ValidationError
from console.events import Kind
from console.kube.client import ClusterError
from console.kube.helm import require_helm
from console.locks import LockError, LockHeld
from console.kube.driver import (ANN_PREVIOUS, ANN_RELEASE, ANN_VERSION, LiveDeployment,
                                 Revision, RolloutInterrupted, image_digest)

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun


def helm_data(driver: Any) -> dict[str, int]:
    """`helm_revision` for an event's data when the driver wrote a Helm revision."""
    revision = getattr(driver, "last_revision", None)
    return {} if revision is None else {"helm_revision": revision}


def by_suffix(by: str) -> str:
    """' by NAME' for messages, or nothing."""
    return f" by {by}" if by else ""


def restore(engine: Engine, rid: str, cid: str, before: LiveDeployment,
            from_version: str | None, why: str) -> tuple[bool, str | None]:
    """Put `cid` back to `before` and wait for it; (ok, error). Emits ROLLING/ROLLED_BACK."""
    engine.event(Kind.CLUSTER_ROLLING_BACK, rid, cid,
                 f"{why}: {from_version or '?'} -> {before.version or 'nothing'}",
                 from_version=from_version, to_version=before.version)
    try:
        driver = engine.driver(cid)
        annotations = {k: before.annotations.get(k, "")
                       for k in (ANN_VERSION, ANN_RELEASE, ANN_PREVIOUS)}
        restored = driver.roll_back_to(before, annotations)   # None: nothing ran before
        if restored is not None:
            driver.follow(restored, engine.rollout_timeout)
            driver.verify(restored)
    except Exception as exc:  # noqa: BLE001 - a bad answer or a bug fails the rollback, told
        error = exc.reason if isinstance(exc, ClusterError) else (
            str(exc) if isinstance(exc, (UserError, RolloutInterrupted))
            else f"unexpected error: {type(exc).__name__}: {exc}")
        engine.last_errors[cid] = f"rollback failed: {error}"
        engine.event(Kind.CLUSTER_ROLLED_BACK, rid, cid, f"rollback failed: {error}",
                     version=before.version, ok=False, error=error)
        return False, error
    engine.event(Kind.CLUSTER_ROLLED_BACK, rid, cid,
                 f"rolled back to {before.version or 'nothing (deployment removed)'}",
                 version=before.version, ok=True, error=None, digest=before.digest,
                 **helm_data(driver))
    return True, None


def rollback_reached(engine: Engine, run: ReleaseRun, why: str,
                     among: Collection[str] | None = None) -> None:
    """Roll back every cluster this release changed and left running it (only those
    `among` when given: one wave's, for `on_failure: wave`)."""
    # A cluster whose lease another console took is its now: never touched again.
    # Nor is one an operator took over mid-release (it was rolled back by hand).
    # `results` is read and written under the run's lock: the control channel's listener
    # reads it from its own thread.
    with run.lock:
        reached = [c for c, r in run.results.items()
                   if r.outcome in (Outcome.HEALTHY, Outcome.INTERRUPTED)
                   and not run.lease_lost(c) and c not in run.handed_over
                   and (among is None or c in among)]
        results = {c: run.results[c] for c in reached}
    if not reached:
        return

    def one(cid: str) -> ClusterResult:
        result = results[cid]
        before = run.before.get(cid, LiveDeployment(False))
        started = time.monotonic()
        ok, error = restore(engine, run.release_id, cid, before, result.to_version, why)
        return replace(result, outcome=Outcome.ROLLED_BACK if ok else Outcome.FAILED,
                       error=error or why,
                       rolled_back_to=before.version if ok else None,
                       duration=result.duration + time.monotonic() - started)

    with ThreadPoolExecutor(max_workers=max(1, min(len(reached), run.plan.max_parallel)),
                            thread_name_prefix="rollback") as pool:
        for result in pool.map(one, reached):
            with run.lock:
                run.results[result.cluster] = result
                run.settled.notify_all()


def rollback_scope(engine: Engine, run: ReleaseRun, wave: int, clusters: Sequence[str],
                   skip_rest: Callable[[Engine, ReleaseRun, int, str], None]
                   ) -> tuple[Outcome, int, str] | None:
    """`on_failure: wave | release`: a failure in this wave (its rollout or its bake)
    rolls back the wave's healthy clusters too, or every cluster the release reached;
    either ends the release (`skip_rest` skips the clusters not started: the version was
    judged bad). None: go on (the failure budget still decides); else how the release
    ends."""
    scope = run.plan.on_failure
    failed = [c for c in clusters if c in run.results and c in run.failed]
    if scope == "cluster" or not failed:
        return None
    shown = ", ".join(failed)
    if scope == "wave":
        # Rolling the wave back judged the version bad: no later wave deploys it.
        reason = f"{shown} failed in wave {wave + 1}; the wave was rolled back and the " \
                 "release stopped (on_failure: wave)"
        rollback_reached(engine, run, f"wave {wave + 1} rolled back: {shown} failed "
                                      "(on_failure: wave)", among=set(clusters))
        skip_rest(engine, run, wave + 1, reason)
        return Outcome.FAILED, 1, reason
    reason = f"{shown} failed in wave {wave + 1}; every cluster the release reached was " \
             "rolled back (on_failure: release)"
    rollback_reached(engine, run, f"release rolled back: {shown} failed "
                                  "(on_failure: release)")
    skip_rest(engine, run, wave + 1, reason)
    return Outcome.FAILED, 1, reason


def rollback(engine: Engine, cluster_id: str, to_version: str | None = None, *,
             by: str = "", release_id: str = "",
             expect_from: str | None = None, digest: str | None = None) -> ClusterResult:
    """Roll one cluster back (see `Engine.rollback`) holding the app's lease there (or
    through this engine's release that holds it); `LockHeld` names another holder.
    `digest`: the one the ledger recorded for `to_version` - the revision running it is
    preferred, and a fresh apply runs `repo:to_version@digest`, never a new tag lookup."""
    cluster = engine.config.cluster(cluster_id)
    if to_version is not None:
        from console.names import validate_tag
        validate_tag(to_version, "--to")
    require_helm(engine.config)     # before the lease and any event: nothing touched
    action = new_release_id()
    held = ActionLease(engine, [cluster.id], by, action)
    try:
        held.__enter__()
    except LockHeld:
        raise                       # another release runs there: refused, naming it
    except LockError as exc:
        if exc.status == 404:       # no namespace, so nothing deployed either
            raise ValidationError(f"cluster {cluster.id!r}: {engine.config.app.name} is "
                                  f"not deployed in namespace {cluster.namespace}") from None
        return ClusterResult(cluster.id, Outcome.FAILED, None, to_version, 0.0, str(exc))
    try:
        return _rollback_held(engine, cluster.id, to_version, by,
                              held.release_id(cluster.id, release_id), action, held.lost,
                              expect_from, digest)
    finally:
        held.__exit__()


def _rollback_held(engine: Engine, cid: str, to_version: str | None, by: str,
                   release_id: str, action: str, stop: threading.Event,
                   expect_from: str | None = None, digest: str | None = None) -> ClusterResult:
    """The rollback itself, its lease held; `stop` interrupts following it."""
    cluster = engine.config.cluster(cid)
    started = time.monotonic()
    try:
        driver = engine.driver(cluster.id)
        live = driver.live()
        if not live.exists:
            raise ValidationError(f"cluster {cluster.id!r}: {engine.config.app.name} is not "
                                  f"deployed in namespace {cluster.namespace}")
        if expect_from is not None and live.version != expect_from:
            # The operator confirmed "from X": someone changed the cluster meanwhile.
            raise ValidationError(f"cluster {cluster.id!r} now runs {live.version}, not "
                                  f"{expect_from} as confirmed; nothing done")
        revisions = driver.revisions(live)
        target = rollback_target(cluster.id, live, revisions, to_version, digest)
    except ClusterError as exc:
        return ClusterResult(cluster.id, Outcome.FAILED, None, to_version,
                             time.monotonic() - started, exc.reason)
    version = target.version if isinstance(target, Revision) else target
    # What the cluster will run: the revision's own pinned image, else the recorded digest.
    pinned = image_digest(target.image) if isinstance(target, Revision) else digest
    engine.event(Kind.CLUSTER_ROLLING_BACK, release_id, cluster.id,
                 f"rollback {live.version} -> {version}{by_suffix(by)}",
                 from_version=live.version, to_version=version, by=by)
    try:
        annotations = {ANN_VERSION: version or "", ANN_RELEASE: action,
                       ANN_PREVIOUS: live.version or ""}
        if isinstance(target, Revision):
            written = driver.undo_to(target, live, annotations)
        else:
            written = driver.install(driver.prepare(target, digest), annotations)
        driver.follow(written, engine.rollout_timeout, cancel=stop)
        driver.verify(written)
    except (ClusterError, UserError, RolloutInterrupted) as exc:
        error = exc.reason if isinstance(exc, ClusterError) else str(exc)
        if isinstance(exc, RolloutInterrupted):
            error = "interrupted: the release lock was taken by another console"
        engine.last_errors[cluster.id] = f"rollback failed: {error}"
        engine.event(Kind.CLUSTER_ROLLED_BACK, release_id, cluster.id,
                     f"rollback failed: {error}", version=version, ok=False, error=error,
                     by=by)
        return ClusterResult(cluster.id, Outcome.FAILED, live.version, version,
                             time.monotonic() - started, error)
    engine.event(Kind.CLUSTER_ROLLED_BACK, release_id, cluster.id,
                 f"rolled back to {version}", version=version, ok=True, error=None, by=by,
                 digest=pinned, **helm_data(driver))
    return ClusterResult(cluster.id, Outcome.ROLLED_BACK, live.version, version,
                         time.monotonic() - started, None, rolled_back_to=version,
                         digest=pinned)


def rollback_target(cid: str, live: LiveDeployment, revisions: list[Revision],
                    to_version: str | None, digest: str | None = None) -> Revision | str:
    """The revision (or, when none runs it, the tag) a manual rollback goes to; with
    `digest` (the ledger's for `to_version`) only a revision running that digest - or
    the plain tag, from before pinning - is taken: a re-pushed tag is never a target."""
    if to_version is None:
        current = live.history_revision   # Helm's revision with the Helm driver
        older = [r for r in revisions if current is None or r.number < current]
        # Skip revisions that run what runs now (kubectl undo would be a no-op there).
        older = [r for r in older if r.image != live.image]
        if not older:
            raise ValidationError(f"cluster {cid!r}: no previous revision to roll back to "
                                  f"(it runs {live.version})")
        return older[-1]
    if to_version == live.version and not live.helm_pending:
        # (a Helm release left pending runs the old version yet needs its helm rollback)
        raise ValidationError(f"cluster {cid!r}: already runs {to_version}")
    matching = [r for r in revisions if r.version == to_version
                and (digest is None or image_digest(r.image) in (digest, None))]
    pinned = [r for r in matching if digest is not None and image_digest(r.image) == digest]
    matching = pinned or matching
    return matching[-1] if matching else to_version


def rollback_release(engine: Engine, release_id: str, *, by: str = "",
                     releases: Sequence[Any] = ()) -> list[ClusterResult]:
    """Roll back every cluster that `release_id` reached (see `Engine.rollback_release`).
    `releases`: the ledger's; each cluster goes back to the digest the ledger recorded
    for its previous version there (as `rollback CLUSTER` does), never a fresh tag lookup."""
    from console.engine.rollback_choice import recorded_digest
    from console.engine.queries import status
    from console.names import validate_release_id
    validate_release_id(release_id, "--release")
    require_helm(engine.config)     # before the leases and any event: nothing touched
    statuses = status(engine)
    reached = [s for s in statuses if s.release_id == release_id]
    unreachable = [s for s in statuses if not s.reachable]
    if not reached:
        hint = f" ({len(unreachable)} cluster(s) did not answer: " \
               f"{', '.join(s.cluster for s in unreachable)})" if unreachable else ""
        raise ValidationError(f"--release: no cluster runs release {release_id!r}{hint}")

    action = new_release_id()

    def one(status_: ClusterStatus) -> ClusterResult:
        if not status_.previous_version:
            return ClusterResult(status_.cluster, Outcome.SKIPPED, status_.version, None,
                                 error=f"release {release_id} was the first version "
                                 "here; nothing to roll back to")
        try:
            return _rollback_held(engine, status_.cluster, status_.previous_version, by,
                                  held.release_id(status_.cluster, release_id), action,
                                  held.lost, digest=recorded_digest(
                                      status_.cluster, status_.previous_version, releases))
        except UserError as exc:  # one cluster's refusal must not stop the others
            return ClusterResult(status_.cluster, Outcome.FAILED, status_.version,
                                 status_.previous_version, error=str(exc))

    # Every lease first, all or nothing: a release running there refuses the whole
    # rollback (naming its holder) before any cluster is touched.
    with ActionLease(engine, [s.cluster for s in reached if s.previous_version], by,
                     action) as held:
        with ThreadPoolExecutor(max_workers=min(32, len(reached)),
                                thread_name_prefix="rollback-release") as pool:
            results = list(pool.map(one, reached))
    # A cluster that did not answer may carry the release too: say so, never skip it silently.
    results += [ClusterResult(s.cluster, Outcome.FAILED, None, None,
                              error=f"could not tell whether release {release_id} reached "
                              f"it: {s.error}") for s in unreachable]
    return results

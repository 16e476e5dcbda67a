"""Bake time: a healthy wave is watched a while before the release goes on.

After a wave's clusters are healthy, `bake_wave` keeps reading them for the wave's bake
time (`bake:` of the strategy or the wave, `deploy --bake`). It compares with what the
console applied, not with what the cluster shows when the bake begins: the image (with
its digest) and the pod template of the apply, and the pods' restarts when the
rollout became healthy (`applied`, taken by the rollout itself) - so a change made
between healthy and the start of the bake is caught too. Scaling (an HPA or `kubectl
scale` changing spec.replicas) changes neither and is no failure. A cluster fails at
once when its image or pod template is replaced (by hand, or by another tool), its
Deployment is gone, or its pods' restarts rise (a crash loop); pods not Ready or a
Deployment unavailable fail it only once that lasted longer than the fail-fast grace
(`Engine.grace`, as the rollout's pod problems) - an evicted or drained pod being
replaced is not a failure; the bake does not end while such a problem is still within
its grace. A failed cluster is counted against the failure budget and rolled back to
what it ran before the release, as a failure during the rollout is. A cluster an
operator took over (a manual rollback inside the release) or whose lease another
console took is left alone from then on, as the rollout leaves it. The next wave, its
gate, or the end of the release waits until the bake is over; an abort ends it at once. With a `health:` section the fleet file's metric checks
are asked too (`console.health`, every `interval` per cluster): a breach, a check
that cannot be evaluated, or a check that gave no value at all by the end of the bake
fails the cluster the same way. With `health:` checks every wave is baked at least one
`interval` (the minimum evaluation window), so a strategy without `bake:` still has its
waves judged by the checks instead of skipping them. WAVE_BAKING (wave, seconds, until, clusters) and
WAVE_BAKED (wave, ok, failed, seconds) tell the listeners.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from console.engine.api import ClusterResult, Outcome
from console.engine.rollbacks import restore
from console.events import Kind
from console.health import evaluate, no_data
from console.kube.client import ClusterError

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun
    from console.kube.driver import ClusterDriver

BAKE_POLL = 1.0     # s between looks at a baking wave


@dataclass(frozen=True)
class Baseline:
    """What the console applied to a cluster, and its pods' restarts once healthy."""

    image: str | None
    # The pod template as the apply stored it (canonical JSON; "" when not known).
    template: str
    # None: not read when the rollout became healthy; the bake's first look reads it.
    restarts: int | None


def _pods_state(driver: ClusterDriver) -> tuple[int, list[str]]:
    """(restarts of the app's pods, names of running pods that are not Ready)."""
    restarts, unready = 0, []
    for pod in driver.pods():
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        restarts += sum(int(cs.get("restartCount") or 0)
                        for cs in status.get("containerStatuses") or ())
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or ())
        if not ready:
            unready.append(str(meta.get("name", "?")))
    return restarts, unready


def seconds_of(engine: Engine, bake: float) -> float:
    """How long a wave with `bake` seconds is watched: with `health:` checks at least one
    `interval` (the minimum evaluation window), so the checks are never skipped."""
    health = engine.config.health
    if health is not None and health.checks:
        return max(bake, health.interval)
    return bake


def applied(driver: ClusterDriver, deployment: Mapping[str, Any], bakes: bool) -> Baseline:
    """The baseline of a cluster whose rollout just became healthy: the image and
    pod template of the Deployment as the apply stored it, and - when its wave `bakes` -
    the pods' restarts now (a failed read leaves them to the bake's first look)."""
    stored = driver.describe(deployment)
    restarts: int | None = None
    if bakes:
        try:
            restarts, _ = _pods_state(driver)
        except ClusterError:
            pass    # healthy all the same; the bake reads them when it begins
    return Baseline(stored.image, _canonical(stored.template), restarts)


def _canonical(template: Mapping[str, Any] | None) -> str:
    """The pod template as comparable text ("" when there is none)."""
    return json.dumps(template, sort_keys=True) if template else ""


@dataclass(frozen=True)
class Found:
    """What a look at a baking cluster found wrong: `hard` fails at once (replaced,
    gone, crash-looping); else it fails only once it outlived the grace."""

    why: str
    hard: bool


def problem(driver: ClusterDriver, base: Baseline,
            timeout: float) -> tuple[Found | None, int | None]:
    """What is wrong with the cluster now (None: nothing), and its pods' restarts (None:
    not read)."""
    live = driver.live(timeout=timeout)
    if not live.exists:
        return Found("the Deployment is gone", hard=True), None
    if live.image != base.image:
        return Found(f"image replaced: {base.image} -> {live.image}", hard=True), None
    if base.template and _canonical(live.template) != base.template:
        # Only the pod template: spec.replicas (an HPA, `kubectl scale`) may change.
        return Found("the pod template was changed since the console applied it",
                     hard=True), None
    restarts, unready = _pods_state(driver)
    if base.restarts is not None and restarts > base.restarts:
        return Found(f"restarts rose from {base.restarts} to {restarts}", hard=True), \
            restarts
    if live.available < live.desired:
        return Found(f"Deployment unavailable: {live.available}/{live.desired} available",
                     hard=False), restarts
    if unready:
        return Found(f"pod {unready[0]} not Ready"
                     + (f" (and {len(unready) - 1} more)" if len(unready) > 1 else ""),
                     hard=False), restarts
    return None, restarts


def bake_wave(engine: Engine, run: ReleaseRun, wave: int, clusters: tuple[str, ...],
              seconds: float) -> None:
    """Watch the wave's healthy clusters for `seconds`; fail and roll back the ones that
    degrade. Returns early on an abort, or when the failure budget is spent."""
    rid = run.release_id
    healthy = [c for c in clusters
               if c in run.results and run.results[c].outcome is Outcome.HEALTHY
               and c in run.baselines]
    seconds = seconds_of(engine, seconds)
    if seconds <= 0 or not healthy:
        return
    started = time.time()
    until = started + seconds
    engine.event(Kind.WAVE_BAKING, rid, None,
                 f"wave {wave + 1} baking for {seconds:g}s: {', '.join(healthy)}",
                 wave=wave, seconds=seconds, until=round(until, 3), clusters=healthy)
    run.baking = (wave, until)
    try:
        failed = _watch(engine, run, healthy, until)
    finally:
        run.baking = None
    ok = not failed
    engine.event(Kind.WAVE_BAKED, rid, None,
                 f"wave {wave + 1} baked {time.time() - started:.0f}s"
                 + ("" if ok else f"; failed during the bake: {', '.join(failed)}"),
                 wave=wave, ok=ok, failed=failed, seconds=seconds,
                 completed=time.time() >= until)


LEFT = "left"   # a look's answer: the cluster is no longer the bake's (handed over)


def _left(run: ReleaseRun, cid: str) -> bool:
    """Whether `cid` is no longer this release's to judge: an operator took it over (a
    manual rollback inside the release) or another console took its lease."""
    return cid in run.handed_over or run.lease_lost(cid) is not None


def _watch(engine: Engine, run: ReleaseRun, healthy: list[str], until: float) -> list[str]:
    """Look at the baking clusters until `until` (or an abort, or a spent budget); fail
    the ones that degrade. Returns those."""
    rid = run.release_id
    health = engine.config.health
    timeout = engine.status_timeout
    grace = engine.grace
    # What each cluster's rollout applied (deploy_cluster keeps it with its result).
    watching: dict[str, Baseline] = {cid: run.baselines[cid] for cid in healthy}
    errors_since: dict[str, float] = {}
    # Per cluster: since when a degradation within its grace has been seen (monotonic).
    degraded_since: dict[str, float] = {}
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=min(16, len(healthy)),
                            thread_name_prefix=f"bake-{rid}") as pool:
        asked: dict[str, float] = {}    # when each cluster's metric checks last ran
        seen: dict[str, set[str]] = {cid: set() for cid in healthy}  # checks with a value

        def look(cid: str) -> tuple[str, str | None]:
            if _left(run, cid):
                return cid, LEFT
            try:
                driver = engine.driver(cid)
                base = watching[cid]
                if base.restarts is None:   # not read when it became healthy: now
                    base = watching[cid] = replace(base, restarts=_pods_state(driver)[0])
                found, restarts = problem(driver, base, timeout)
                if restarts is not None and base.restarts is not None \
                        and restarts < base.restarts:
                    # A pod replaced (evicted, drained) took its restarts along: a crash
                    # loop from now on is a rise from what is left.
                    watching[cid] = replace(base, restarts=restarts)
                if found is None and health is not None and \
                        time.monotonic() - asked.get(cid, -health.interval) >= health.interval:
                    asked[cid] = time.monotonic()
                    why = evaluate(health, cid, seen[cid])   # healthy by Kubernetes: by metrics too?
                    found = Found(why, hard=True) if why is not None else None
            except ClusterError as exc:
                # A cluster that stops answering fails only past the unreachable grace.
                since = errors_since.setdefault(cid, time.monotonic())
                if time.monotonic() - since > engine.unreachable_grace:
                    return cid, f"unreachable during the bake: {exc.reason}"
                return cid, None
            errors_since.pop(cid, None)
            if found is None:
                degraded_since.pop(cid, None)
                return cid, None
            if found.hard:
                return cid, found.why
            # Pods not Ready, Deployment unavailable: a pod being replaced (an eviction, a
            # drain) is not a failure; it fails once it outlived the grace.
            since = degraded_since.setdefault(cid, time.monotonic())
            if time.monotonic() - since >= grace:
                return cid, f"{found.why} (for over {grace:g}s)"
            return cid, None

        while True:
            for cid, why in pool.map(look, list(watching)):
                if why is LEFT:
                    watching.pop(cid)
                    degraded_since.pop(cid, None)
                elif why is not None:
                    watching.pop(cid)
                    degraded_since.pop(cid, None)
                    if _fail(engine, run, cid, why):
                        failed.append(cid)
            left = until - time.time()
            if not watching or run.control.aborted or run.budget_exceeded():
                break
            # The bake ends healthy only without a degradation still within its grace.
            if left <= 0 and not degraded_since:
                break
            run.control.aborted_event.wait(min(BAKE_POLL, left) if left > 0 else BAKE_POLL)

        def last_ask(cid: str) -> tuple[str, str | None]:
            """A check still without a value gets one more ask; none then fails it."""
            assert health is not None
            found = evaluate(health, cid, seen[cid])
            return cid, found if found is not None else no_data(health, cid, seen[cid])

        if health is not None and time.time() >= until and not run.control.aborted \
                and not run.budget_exceeded():
            lacking = [c for c in watching if no_data(health, c, seen[c]) is not None]
            for cid, why in pool.map(last_ask, lacking):
                if why is not None:
                    watching.pop(cid)
                    if _fail(engine, run, cid, why):
                        failed.append(cid)
    return failed


def _fail(engine: Engine, run: ReleaseRun, cid: str, why: str) -> bool:
    """A cluster that degraded during the bake: counted, told and rolled back. False
    (nothing done) when it is no longer this release's: an operator's rollback or
    another console replaced what the bake held it to."""
    rid = run.release_id
    error = f"failed during the bake: {why}"
    with run.lock:
        # Checked under the lock `hand_over` takes: a manual rollback marks the cluster
        # before it touches it, so what the look saw may be that rollback's work.
        if _left(run, cid):
            return False
        result = run.results[cid]
        run.count_failure(cid)
    engine.last_errors[cid] = error
    engine.event(Kind.CLUSTER_FAILED, rid, cid, error, error=error, duration=result.duration)
    before = run.before.get(cid)
    if before is None:
        outcome: ClusterResult = replace(result, outcome=Outcome.FAILED, error=error)
    else:
        ok, rb_error = restore(engine, rid, cid, before, run.tag, "automatic rollback")
        outcome = replace(result, outcome=Outcome.ROLLED_BACK if ok else Outcome.FAILED,
                          error=error if ok else f"{error}; rollback failed: {rb_error}",
                          rolled_back_to=before.version if ok else None)
    with run.lock:
        run.results[cid] = outcome
        run.settled.notify_all()
    return True

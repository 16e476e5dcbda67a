"""Bake time: a healthy wave is watched a while before the release goes on.

After a wave's clusters are healthy, `bake_wave` keeps reading them for the wave's bake
time (`bake:` of the strategy or the wave, `deploy --bake`). It compares with what the
console applied, not with what the cluster shows when the bake begins: the image (with
its digest) and the Deployment generation of the apply, and the pods' restarts when the
rollout became healthy (`applied`, taken by the rollout itself) - so a change made
between healthy and the start of the bake is caught too. A cluster degrades when its
pods are not Ready, their restarts rise, its Deployment is unavailable, or its image or
spec is replaced (by hand, or by another tool) - it then fails: counted against the
failure budget and rolled back to what it ran before the release, as a failure during
the rollout is. The next wave, its gate, or the end of the release waits until the bake is
over; an abort ends it at once. With a `health:` section the fleet file's metric checks
are asked too (`console.health`, every `interval` per cluster): a breach, a check
that cannot be evaluated, or a check that gave no value at all by the end of the bake
fails the cluster the same way. With `health:` checks every wave is baked at least one
`interval` (the minimum evaluation window), so a strategy without `bake:` still has its
waves judged by the checks instead of skipping them. WAVE_BAKING (wave, seconds, until, clusters) and
WAVE_BAKED (wave, ok, failed, seconds) tell the listeners.
"""

from __future__ import annotations

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
    generation: int
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
    generation of the Deployment as the apply stored it, and - when its wave `bakes` -
    the pods' restarts now (a failed read leaves them to the bake's first look)."""
    stored = driver.describe(deployment)
    restarts: int | None = None
    if bakes:
        try:
            restarts, _ = _pods_state(driver)
        except ClusterError:
            pass    # healthy all the same; the bake reads them when it begins
    return Baseline(stored.image, stored.generation, restarts)


def problem(driver: ClusterDriver, base: Baseline, timeout: float) -> str | None:
    """Why the cluster is degraded now (None: it is not)."""
    live = driver.live(timeout=timeout)
    if not live.exists:
        return "the Deployment is gone"
    if live.image != base.image:
        return f"image replaced: {base.image} -> {live.image}"
    if base.generation and live.generation != base.generation:
        return (f"the Deployment was changed since the console applied it: generation "
                f"{base.generation} -> {live.generation}")
    if live.available < live.desired:
        return f"Deployment unavailable: {live.available}/{live.desired} available"
    restarts, unready = _pods_state(driver)
    if base.restarts is not None and restarts > base.restarts:
        return f"restarts rose from {base.restarts} to {restarts}"
    if unready:
        return f"pod {unready[0]} not Ready" + \
            (f" (and {len(unready) - 1} more)" if len(unready) > 1 else "")
    return None


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


def _watch(engine: Engine, run: ReleaseRun, healthy: list[str], until: float) -> list[str]:
    """Look at the baking clusters until `until` (or an abort, or a spent budget); fail
    the ones that degrade. Returns those."""
    rid = run.release_id
    health = engine.config.health
    timeout = engine.status_timeout
    # What each cluster's rollout applied (deploy_cluster keeps it with its result).
    watching: dict[str, Baseline] = {cid: run.baselines[cid] for cid in healthy}
    errors_since: dict[str, float] = {}
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=min(16, len(healthy)),
                            thread_name_prefix=f"bake-{rid}") as pool:
        asked: dict[str, float] = {}    # when each cluster's metric checks last ran
        seen: dict[str, set[str]] = {cid: set() for cid in healthy}  # checks with a value

        def look(cid: str) -> tuple[str, str | None]:
            try:
                driver = engine.driver(cid)
                base = watching[cid]
                if base.restarts is None:   # not read when it became healthy: now
                    base = watching[cid] = replace(base, restarts=_pods_state(driver)[0])
                found = problem(driver, base, timeout)
                if found is None and health is not None and \
                        time.monotonic() - asked.get(cid, -health.interval) >= health.interval:
                    asked[cid] = time.monotonic()
                    found = evaluate(health, cid, seen[cid])   # healthy by Kubernetes: by metrics too?
            except ClusterError as exc:
                # A cluster that stops answering fails only past the unreachable grace.
                since = errors_since.setdefault(cid, time.monotonic())
                if time.monotonic() - since > engine.unreachable_grace:
                    return cid, f"unreachable during the bake: {exc.reason}"
                return cid, None
            errors_since.pop(cid, None)
            return cid, found

        while True:
            for cid, why in pool.map(look, list(watching)):
                if why is not None:
                    watching.pop(cid)
                    failed.append(cid)
                    _fail(engine, run, cid, why)
            left = until - time.time()
            if left <= 0 or not watching or run.control.aborted or run.budget_exceeded():
                break
            run.control.aborted_event.wait(min(BAKE_POLL, left))

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
                    failed.append(cid)
                    _fail(engine, run, cid, why)
    return failed


def _fail(engine: Engine, run: ReleaseRun, cid: str, why: str) -> None:
    """A cluster that degraded during the bake: counted, told and rolled back."""
    rid = run.release_id
    error = f"failed during the bake: {why}"
    result = run.results[cid]
    engine.last_errors[cid] = error
    with run.lock:
        run.count_failure(cid)
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

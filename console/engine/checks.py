"""Pre-flight for a release, and the release lock taken as its last check.

Nothing is touched unless every check passes. The lock (`console.locks`) is each
target's namespace ensured, then one Lease per app and cluster, all or nothing; a lease
another release holds is a failed `lock` check naming the holder (exit 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from console.engine.api import ReleaseRequest
from console.errors import UserError
from console.events import Kind
from console.kube.client import ClusterError
from console.locks import LockError, ReleaseLock, lease_name
from console.plan import Plan
from console.preflight import CheckResult, PreflightReport, check_names_in_use, run_preflight

if TYPE_CHECKING:
    from console.engine.core import Engine

log = logging.getLogger(__name__)


def preflight_checks(engine: Engine, request: ReleaseRequest, release_id: str,
                     extra: Sequence[str] = ()) -> PreflightReport:
    """PREFLIGHT_STARTED (naming the checks and `extra` ones the caller adds), then
    every check with its PREFLIGHT_RESULT."""
    try:
        plan: Any = engine.plan(request)
        clusters = [engine.config.cluster(c) for c in plan.order]
    except UserError as exc:
        plan, clusters = exc, []
    engine.event(Kind.PREFLIGHT_STARTED, release_id, None, "pre-flight started",
                 checks=check_names_in_use() + list(extra))
    return run_preflight(engine.config, request.tag, plan, clusters, engine.driver,
                         on_result=lambda result: preflight_result(engine, release_id,
                                                                   result))


def preflight_result(engine: Engine, release_id: str, result: CheckResult) -> None:
    """Tell the listeners one check's result."""
    engine.event(Kind.PREFLIGHT_RESULT, release_id, result.cluster,
                 f"{result.check}: {'ok' if result.ok else result.detail}",
                 check=result.check, ok=result.ok, detail=result.detail)


def preflight_finished(engine: Engine, release_id: str, report: PreflightReport) -> None:
    """Tell the listeners how pre-flight ended."""
    engine.event(Kind.PREFLIGHT_FINISHED, release_id, None,
                 "pre-flight passed" if report.ok else
                 f"pre-flight failed: {len(report.failures)} check(s)",
                 ok=report.ok, failures=[
                     {"cluster": r.cluster, "check": r.check, "detail": r.detail}
                     for r in report.failures])


def take_lock(engine: Engine, plan: Plan, release_id: str, operator: str,
              report: PreflightReport) -> tuple[ReleaseLock | None, PreflightReport]:
    """The last pre-flight check: ensure each target's namespace and take its Lease.

    All or nothing; a lease another release holds (`LockHeld`, naming the holder) or
    a cluster where the lease cannot be taken is a failed `lock` check. Returns the
    held lock (None on failure) and the report with the `lock` results added.
    """
    def prepare(cid: str) -> tuple[Any, str]:
        driver = engine.driver(cid)
        driver.ensure_namespace()   # the lease lives in the app namespace
        return driver.client, driver.namespace

    clients: dict[str, tuple[Any, str]] = {}
    results: list[CheckResult] = []
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(plan.order))),
                            thread_name_prefix="lock") as pool:
        futures = {cid: pool.submit(prepare, cid) for cid in plan.order}
        for cid, future in futures.items():
            try:
                clients[cid] = future.result()
            except (ClusterError, UserError) as exc:
                reason = exc.reason if isinstance(exc, ClusterError) else str(exc)
                results.append(CheckResult("lock", False, f"cannot prepare the release "
                                           f"lock: {reason}", cid))
    lock: ReleaseLock | None = None
    if not results:
        lock = ReleaseLock.for_clusters(
            clients, engine.config.app.name, release_id, user=operator or None,
            duration=engine.lock_duration, timeout=engine.request_timeout,
            on_lost=lambda cid, why: log.warning("release %s: lock lost on %s: %s",
                                                 release_id, cid, why))
        try:
            lock.acquire(reentrant=True)
        except LockError as exc:
            lock = None
            results.append(CheckResult("lock", False, str(exc), exc.cluster))
    if lock is not None:
        name = lease_name(engine.config.app.name)
        results = [CheckResult("lock", True, f"lease {name} taken for this release", cid)
                   for cid in plan.order]
    for result in results:
        preflight_result(engine, release_id, result)
    order = {cid: i for i, cid in enumerate(plan.order)}
    merged = sorted(report.results + tuple(results),
                    key=lambda r: (r.cluster is not None, order.get(r.cluster or "", -1)))
    return lock, PreflightReport(tuple(merged), report.live)

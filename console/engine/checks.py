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
from console.freeze import Block, blocking
from console.kube.client import ClusterError
from console.locks import LockError, ReleaseLock, lease_name
from console.plan import Plan
from console.preflight import CheckResult, PreflightReport, check_names_in_use, run_preflight

if TYPE_CHECKING:
    from console.engine.core import Engine

log = logging.getLogger(__name__)


def preflight_checks(engine: Engine, request: ReleaseRequest, release_id: str,
                     extra: Sequence[str] = (),
                     blocks: Sequence[Block] | None = None) -> PreflightReport:
    """PREFLIGHT_STARTED (naming the checks and `extra` ones the caller adds), then
    every check with its PREFLIGHT_RESULT. With freeze windows in the fleet file, the
    `freeze` check reads `blocks` (default: the windows open now over the plan)."""
    try:
        plan: Any = engine.plan(request)
        clusters = [engine.config.cluster(c) for c in plan.order]
    except UserError as exc:
        plan, clusters = exc, []
    freezing = bool(engine.config.freeze)
    engine.event(Kind.PREFLIGHT_STARTED, release_id, None, "pre-flight started",
                 checks=check_names_in_use() + (["freeze"] if freezing else []) + list(extra))
    report = run_preflight(engine.config, request.tag, plan, clusters, engine.driver,
                           on_result=lambda result: preflight_result(engine, release_id,
                                                                     result))
    if not freezing:
        return report
    frozen = freeze_results(blocks if blocks is not None else
                            blocking(engine.config.freeze, clusters, engine.clock()), request)
    for result in frozen:
        preflight_result(engine, release_id, result)
    release_wide = [r for r in report.results if r.cluster is None]
    per_cluster = [r for r in report.results if r.cluster is not None]
    return PreflightReport(tuple(release_wide + frozen + per_cluster), report.live)


def freeze_blocks(engine: Engine, plan: Plan) -> list[Block]:
    """The freeze windows open now over the plan's targets."""
    if not engine.config.freeze:
        return []
    clusters = [engine.config.cluster(c) for c in plan.order]
    return blocking(engine.config.freeze, clusters, engine.clock())


def freeze_results(blocks: Sequence[Block], request: ReleaseRequest) -> list[CheckResult]:
    """The `freeze` check: each open window over the targets fails the release, unless
    the request overrides freezes (then it passes, naming who and why)."""
    if not blocks:
        return [CheckResult("freeze", True, "no freeze window open")]
    if request.override_freeze:
        who = request.operator or "unknown operator"
        return [CheckResult("freeze", True, f"{b.describe()}; overridden by {who}: "
                            f"{request.override_freeze}") for b in blocks]
    return [CheckResult("freeze", False, f"{b.describe()}; release anyway with "
                        "--override-freeze --reason TEXT (rollbacks are always allowed)")
            for b in blocks]


def freeze_opened(engine: Engine, plan: Plan, done: Any, ignore: Sequence[str]) -> str | None:
    """Why no new cluster may start because a freeze window opened during the release
    (one not overridden, covering a target without a result yet), or None."""
    if not engine.config.freeze:
        return None
    remaining = [engine.config.cluster(c) for c in plan.order if c not in done]
    found = blocking(engine.config.freeze, remaining, engine.clock(), ignore)
    if not found:
        return None
    return f"{found[0].describe()}: it opened during the release; no new cluster starts"


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
        # The lease lives in the app namespace. Pre-flight just read the Deployment there:
        # when it exists, so does its namespace (one read less per cluster; a namespace
        # deleted since makes the lease's read fail the `lock` check, naming it).
        live = report.live.get(cid)
        if live is None or not live.exists:
            driver.ensure_namespace()
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

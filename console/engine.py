"""The release engine: runs a plan against the fleet and says what happened, as events.

`Engine.run(request, approver, control)` is one release: plan, pre-flight (nothing is
touched unless every check passes), the release lock (`console.locks`: each target's
namespace ensured, then one Lease per app and cluster, all or nothing, renewed while
the release runs and given back at its end; a lease another release holds is a failed
`lock` pre-flight check naming the holder, exit 2; a lease lost mid-release starts no
new cluster, exit 3), then wave after wave - clusters of a wave really at
once on a thread pool bounded by `max_parallel` - with the plan's failure policy
(serial stops at the first failure; otherwise a failure budget past which no new
cluster starts), an approval gate before each gated wave (the `Approver` decides:
approve, reject, or abort and optionally roll back), pause/resume/abort from a
`ReleaseControl`, and an automatic rollback of every failed cluster to what it ran
before. Manual actions: `rollback` (one cluster, to its previous revision or a named
version), `rollback_release` (every cluster a release reached, found by the release-id
annotation the clusters carry), `status` and `detail`.

Every action is told to the listeners as `console.events.Event`s. Manual rollbacks emit
CLUSTER_ROLLING_BACK / CLUSTER_ROLLED_BACK with `release_id` "" (one cluster) or the id
of the release being rolled back (`rollback_release`), and `by` in their data. A listener that raises
is reported (logged, kept in `listener_errors`) and never stops a release - except at
RELEASE_STARTED, where a failure to record the release (the ledger) stops it before any
cluster is touched. The engine never imports Textual; the TUI runs it in a worker.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from console.errors import UserError, ValidationError
from console.events import Event, Kind, Listener
from console.kube.client import ClusterError, KubeClient, new_api_client
from console.locks import DEFAULT_DURATION as LOCK_DURATION
from console.locks import Holder, LockError, ReleaseLock, lease_name
from console.kube.driver import (ANN_PREVIOUS, ANN_RELEASE, ANN_VERSION, ClusterDriver,
                                 LiveDeployment, Progress, Revision, RolloutInterrupted)
from console.plan import Plan, build_plan, select
from console.preflight import CheckResult, PreflightReport, check_names_in_use, run_preflight

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 3.0      # s per cluster for `status()`; an unreachable one never stalls the rest
REQUEST_TIMEOUT = 10.0    # s for each ordinary API call during a release
FAIL_FAST_GRACE = 10.0    # s a new pod may sit in ErrImagePull/CrashLoopBackOff before failing
UNREACHABLE_GRACE = 30.0  # s a cluster may stop answering mid-rollout before it fails
CONTROL_POLL = 0.2        # s between looks at the pause/abort state while clusters run


# --------------------------------------------------------------------------- the API types


@dataclass(frozen=True)
class ReleaseRequest:
    """What to release where, as the CLI flags or the TUI form give it."""

    tag: str
    clusters: str = ""
    strategy: str = "serial"
    order: tuple[str, ...] = ()
    max_parallel: int | None = None
    max_failures: str | None = None
    operator: str = ""


class GateDecision(str, Enum):
    """The answer at a gate."""

    APPROVE = "approve"
    REJECT = "reject"
    ABORT = "abort"


@dataclass(frozen=True)
class ClusterResult:
    """How one cluster ended (outcome: healthy|failed|rolled_back|skipped|interrupted)."""

    cluster: str
    outcome: str
    from_version: str | None = None
    to_version: str | None = None
    duration: float = 0.0
    error: str | None = None
    rolled_back_to: str | None = None


@dataclass(frozen=True)
class GateRequest:
    """The question at a gate: the finished wave's results and who is next."""

    release_id: str
    finished_wave: int
    next_wave: int
    results: tuple[ClusterResult, ...]
    next_clusters: tuple[str, ...]


@dataclass(frozen=True)
class GateAnswer:
    """The answer: decision, whether to roll back what was reached (abort), and who."""

    decision: GateDecision
    rollback: bool = False
    by: str = ""


Approver = Callable[[GateRequest], GateAnswer]


@dataclass(frozen=True)
class ReleaseResult:
    """How a release ended (outcome: ok|failed|stopped|aborted|preflight_failed)."""

    release_id: str
    outcome: str
    exit_code: int
    clusters: tuple[ClusterResult, ...]
    preflight: PreflightReport | None = None
    message: str = ""


@dataclass(frozen=True)
class ClusterStatus:
    """One cluster's live state, as `status()` reads it."""

    cluster: str
    version: str | None
    image: str | None
    revision: int | None
    ready: int
    desired: int
    reachable: bool
    error: str | None = None
    release_id: str | None = None
    previous_version: str | None = None


@dataclass(frozen=True)
class PodInfo:
    """One pod for the detail view."""

    name: str
    phase: str
    ready: bool
    restarts: int
    reason: str
    image: str


@dataclass(frozen=True)
class EventInfo:
    """One Kubernetes event for the detail view's timeline."""

    time: str
    type: str
    reason: str
    object: str
    message: str


@dataclass(frozen=True)
class ClusterDetail:
    """Pods, rollout history, recent events and the last error of one cluster."""

    cluster: str
    pods: tuple[PodInfo, ...] = ()
    revisions: tuple[Revision, ...] = ()
    events: tuple[EventInfo, ...] = ()
    last_error: str | None = None


class ReleaseControl:
    """Pause, resume or abort a running release from another thread (the TUI, a signal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paused = False
        self._abort: bool | None = None   # None: not aborted; else whether to roll back
        self._observers: list[Callable[[str, str], None]] = []
        self.aborted_event = threading.Event()

    @property
    def paused(self) -> bool:
        """True while no new cluster may start."""
        return self._paused

    @property
    def aborted(self) -> bool:
        """True once `abort` was called."""
        return self._abort is not None

    @property
    def rollback_on_abort(self) -> bool:
        """Whether the abort asked to roll back what the release reached."""
        return bool(self._abort)

    def pause(self, by: str = "") -> None:
        """Start no new cluster until `resume` (running ones finish)."""
        with self._lock:
            changed, self._paused = not self._paused, True
        if changed:
            self._notify("paused", by)

    def resume(self, by: str = "") -> None:
        """Let new clusters start again."""
        with self._lock:
            changed, self._paused = self._paused, False
        if changed:
            self._notify("resumed", by)

    def abort(self, rollback: bool = False, by: str = "") -> None:
        """Stop starting clusters, interrupt running rollouts; optionally roll back all reached."""
        with self._lock:
            if self._abort is None:
                self._abort = rollback
        self.aborted_event.set()
        self._notify("aborted", by)

    def subscribe(self, observer: Callable[[str, str], None]) -> None:
        """Call `observer(what, by)` on pause/resume/abort (the engine emits events)."""
        with self._lock:
            self._observers.append(observer)

    def unsubscribe(self, observer: Callable[[str, str], None]) -> None:
        """Stop calling `observer`."""
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _notify(self, what: str, by: str) -> None:
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            observer(what, by)


def new_release_id(now: datetime | None = None) -> str:
    """A release id such as `r-20261125-1402-ab12` (UTC minute plus 4 random hex)."""
    now = now or datetime.now(timezone.utc)
    return f"r-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


# --------------------------------------------------------------------------- the engine


@dataclass
class _Run:
    """The mutable state of one release while it runs."""

    release_id: str
    tag: str
    plan: Plan
    control: ReleaseControl
    before: dict[str, LiveDeployment]
    results: dict[str, ClusterResult] = field(default_factory=dict)
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    release_lock: ReleaseLock | None = None

    def lock_lost(self) -> str | None:
        """Why no new cluster may start because a lease was lost (None while all are held)."""
        lost = dict(self.release_lock.lost) if self.release_lock is not None else {}
        if not lost:
            return None
        cid = sorted(lost)[0]
        return f"release lock lost on {cid} ({lost[cid]}); no new cluster starts"

    def budget_exceeded(self) -> bool:
        if self.plan.stop_on_first_failure:
            return self.failures > 0
        return self.failures > self.plan.max_failures


class Engine:
    """Runs releases and manual actions on one fleet; thread-safe; never imports textual."""

    def __init__(self, config: Any, listeners: Sequence[Listener] = (), *,
                 grace: float = FAIL_FAST_GRACE, request_timeout: float = REQUEST_TIMEOUT,
                 status_timeout: float = STATUS_TIMEOUT,
                 rollout_timeout: float | None = None,
                 unreachable_grace: float = UNREACHABLE_GRACE,
                 lock_duration: int = LOCK_DURATION) -> None:
        """`config` is a loaded `FleetConfig`; `rollout_timeout` overrides the app's;
        `grace` is the fail-fast grace, `unreachable_grace` how long a cluster may stop
        answering during a rollout before it fails; `lock_duration` how long (s) a
        release's leases outlive a console that stopped renewing them."""
        self.config = config
        self.listeners: list[Listener] = list(listeners)
        self.grace = grace
        self.request_timeout = request_timeout
        self.status_timeout = status_timeout
        self.unreachable_grace = unreachable_grace
        self.rollout_timeout = rollout_timeout or config.app.rollout_timeout
        self.lock_duration = lock_duration
        self.listener_errors: list[str] = []
        self._drivers: dict[str, ClusterDriver] = {}
        self._drivers_lock = threading.Lock()
        self._last_error: dict[str, str] = {}

    # ---------------------------------------------------------------- events

    def add_listener(self, listener: Listener) -> None:
        """Also tell `listener` about every later event."""
        self.listeners.append(listener)

    def emit(self, event: Event, strict: bool = False) -> None:
        """Tell every listener; a listener's exception is reported, not raised (unless `strict`)."""
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a listener must never kill a release
                if strict:
                    raise
                text = f"listener {getattr(listener, '__qualname__', type(listener).__name__)} " \
                       f"failed on {event.kind.value}: {type(exc).__name__}: {exc}"
                self.listener_errors.append(text)
                log.warning("%s", text)

    def _event(self, kind: Kind, release_id: str, cluster: str | None, message: str,
               **data: Any) -> None:
        self.emit(Event(kind, release_id, cluster, message, data))

    # ---------------------------------------------------------------- drivers

    def driver(self, cluster_id: str) -> ClusterDriver:
        """The (cached) driver of one cluster; raises `UserError` for bad credentials."""
        with self._drivers_lock:
            driver = self._drivers.get(cluster_id)
        if driver is not None:
            return driver
        from console.credentials import resolve
        cluster = self.config.cluster(cluster_id)
        kubeconfig = resolve(cluster, self.config)
        api = new_api_client(cluster_id, kubeconfig, kubeconfig.get("current-context"))
        driver = ClusterDriver(KubeClient(cluster_id, api, self.request_timeout),
                               self.config.app.name, cluster.namespace, grace=self.grace,
                               unreachable_grace=self.unreachable_grace)
        with self._drivers_lock:
            # Another thread may have built one meanwhile: keep the first.
            existing = self._drivers.setdefault(cluster_id, driver)
        if existing is not driver:
            driver.client.close()
        return existing

    def close(self) -> None:
        """Release every cluster client."""
        with self._drivers_lock:
            drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            driver.client.close()

    # ---------------------------------------------------------------- planning

    def plan(self, request: ReleaseRequest) -> Plan:
        """The plan for `request`; raises `UserError` (bad selector, order, strategy)."""
        targets = select(self.config, request.clusters)
        return build_plan(self.config, targets, request.strategy, request.order,
                          request.max_parallel, request.max_failures)

    def preflight(self, request: ReleaseRequest, release_id: str = "") -> PreflightReport:
        """Run every pre-flight check for `request` (touches nothing); emits PREFLIGHT_*."""
        report = self._preflight_checks(request, release_id)
        self._preflight_finished(release_id, report)
        return report

    def _preflight_checks(self, request: ReleaseRequest, release_id: str,
                          extra: Sequence[str] = ()) -> PreflightReport:
        """PREFLIGHT_STARTED (naming the checks and `extra` ones the caller adds), then
        every check with its PREFLIGHT_RESULT."""
        try:
            plan: Any = self.plan(request)
            clusters = [self.config.cluster(c) for c in plan.order]
        except UserError as exc:
            plan, clusters = exc, []
        self._event(Kind.PREFLIGHT_STARTED, release_id, None, "pre-flight started",
                    checks=check_names_in_use() + list(extra))
        return run_preflight(self.config, request.tag, plan, clusters, self.driver,
                             on_result=lambda result: self._preflight_result(release_id,
                                                                             result))

    def _preflight_result(self, release_id: str, result: CheckResult) -> None:
        self._event(Kind.PREFLIGHT_RESULT, release_id, result.cluster,
                    f"{result.check}: {'ok' if result.ok else result.detail}",
                    check=result.check, ok=result.ok, detail=result.detail)

    def _preflight_finished(self, release_id: str, report: PreflightReport) -> None:
        self._event(Kind.PREFLIGHT_FINISHED, release_id, None,
                    "pre-flight passed" if report.ok else
                    f"pre-flight failed: {len(report.failures)} check(s)",
                    ok=report.ok, failures=[
                        {"cluster": r.cluster, "check": r.check, "detail": r.detail}
                        for r in report.failures])

    # ---------------------------------------------------------------- the release lock

    def _take_lock(self, plan: Plan, release_id: str, operator: str,
                   report: PreflightReport) -> tuple[ReleaseLock | None, PreflightReport]:
        """The last pre-flight check: ensure each target's namespace and take its Lease.

        All or nothing; a lease another release holds (`LockHeld`, naming the holder) or
        a cluster where the lease cannot be taken is a failed `lock` check. Returns the
        held lock (None on failure) and the report with the `lock` results added.
        """
        def prepare(cid: str) -> tuple[Any, str]:
            driver = self.driver(cid)
            driver.ensure_namespace()   # the lease lives in the app namespace
            return driver.client.api, driver.namespace

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
                clients, self.config.app.name, release_id, user=operator or None,
                duration=self.lock_duration, timeout=self.request_timeout,
                on_lost=lambda cid, why: log.warning("release %s: lock lost on %s: %s",
                                                     release_id, cid, why))
            try:
                lock.acquire(reentrant=True)
            except LockError as exc:
                lock = None
                results.append(CheckResult("lock", False, str(exc), exc.cluster))
        if lock is not None:
            name = lease_name(self.config.app.name)
            results = [CheckResult("lock", True, f"lease {name} taken for this release", cid)
                       for cid in plan.order]
        for result in results:
            self._preflight_result(release_id, result)
        order = {cid: i for i, cid in enumerate(plan.order)}
        merged = sorted(report.results + tuple(results),
                        key=lambda r: (r.cluster is not None, order.get(r.cluster or "", -1)))
        return lock, PreflightReport(tuple(merged), report.live)

    def lease_holders(self, cluster_ids: Sequence[str]) -> dict[str, Holder | None]:
        """Who holds the app's release lock on each cluster (None: free, expired, or
        unreadable), read concurrently with the status timeout."""
        from console.locks import ClusterLease

        def one(cid: str) -> Holder | None:
            try:
                driver = self.driver(cid)
                lease = ClusterLease(driver.client.api, cid, driver.namespace,
                                     self.config.app.name, "(reader)",
                                     timeout=self.status_timeout)
                return lease.holder()
            except (ClusterError, UserError):
                return None

        ids = list(cluster_ids)
        if not ids:
            return {}
        with ThreadPoolExecutor(max_workers=min(32, len(ids)),
                                thread_name_prefix="lease-read") as pool:
            return dict(zip(ids, pool.map(one, ids)))

    def reconcile_unfinished(self, ledger: Any) -> list[Any]:
        """Close the releases a stopped console left open in `ledger` (`console.history.
        Ledger`) with what the clusters really run; returns them, closed.

        A release whose lease is still held on one of its clusters is running in a live
        console (on another machine, say): it is left alone. A lease that cannot be read
        does not count as held (the release is closed with what can be read).
        """
        closed = []
        for release in ledger.unfinished():
            holders = self.lease_holders(release.targets)
            if any(h is not None and h.identity.endswith(f"/{release.id}")
                   for h in holders.values()):
                continue
            live = {s.cluster: s.version for s in self.status(release.targets)
                    if s.reachable}
            ledger.reconcile(release.id, live)
            closed.extend(ledger.releases(ids={release.id}))
        return closed

    # ---------------------------------------------------------------- a release

    def run(self, request: ReleaseRequest, approver: Approver,
            control: ReleaseControl | None = None) -> ReleaseResult:
        """Run one release to its end (blocking). Raises `UserError` for bad input."""
        from console.names import validate_tag
        validate_tag(request.tag)
        plan = self.plan(request)
        control = control or ReleaseControl()
        release_id = new_release_id()
        app = self.config.app
        self._event(Kind.RELEASE_PLANNED, release_id, None,
                    f"release {app.name} {request.tag} to {len(plan.targets)} cluster(s), "
                    f"{plan.strategy}",
                    app=app.name, version=request.tag, image=app.image_ref(request.tag),
                    strategy=plan.strategy, targets=list(plan.order),
                    waves=plan.to_json()["waves"], operator=request.operator,
                    max_parallel=plan.max_parallel, max_failures=plan.max_failures)
        report = self._preflight_checks(request, release_id, extra=("lock",))
        lock = None
        if report.ok:
            # Taken last, so a release that fails its checks never holds anyone up.
            lock, report = self._take_lock(plan, release_id, request.operator, report)
        self._preflight_finished(release_id, report)
        if not report.ok:
            results = tuple(ClusterResult(c, "skipped", report.live.get(c, LiveDeployment(False))
                                          .version, request.tag, error="pre-flight failed")
                            for c in plan.order)
            held = [r.detail for r in report.failures if r.check == "lock"]
            return self._finish(release_id, "preflight_failed", 2, results, report,
                                "; ".join(held) if held else
                                "pre-flight failed; nothing was touched")
        assert lock is not None
        try:
            return self._run_locked(request, approver, control, plan, release_id, report,
                                    lock)
        finally:
            for problem in lock.release():
                log.warning("release %s: %s", release_id, problem)

    def _run_locked(self, request: ReleaseRequest, approver: Approver,
                    control: ReleaseControl, plan: Plan, release_id: str,
                    report: PreflightReport, lock: ReleaseLock) -> ReleaseResult:
        """The release once pre-flight passed and every lease is held."""
        try:
            self.emit(Event(Kind.RELEASE_STARTED, release_id,
                            message=f"release {release_id} started",
                            data={"version": request.tag, "targets": list(plan.order)}),
                      strict=True)
        except Exception as exc:  # noqa: BLE001 - e.g. the ledger could not record the start
            results = tuple(ClusterResult(c, "skipped", None, request.tag,
                                          error="release not started") for c in plan.order)
            return self._finish(release_id, "preflight_failed", 2, results, report,
                                f"could not record the release start: {exc}")
        run = _Run(release_id, request.tag, plan, control, dict(report.live),
                   release_lock=lock)

        def on_control(what: str, by: str) -> None:
            if what == "paused":
                self._event(Kind.PAUSED, release_id, None, f"paused{_by(by)}", by=by)
            elif what == "resumed":
                self._event(Kind.RESUMED, release_id, None, f"resumed{_by(by)}", by=by)

        control.subscribe(on_control)
        try:
            outcome, code, message = self._run_waves(run, approver)
        finally:
            control.unsubscribe(on_control)
        ordered = tuple(run.results.get(c) or ClusterResult(c, "skipped", None, request.tag,
                                                            error="not started")
                        for c in plan.order)
        return self._finish(release_id, outcome, code, ordered, report, message)

    def _finish(self, release_id: str, outcome: str, code: int,
                results: tuple[ClusterResult, ...], report: PreflightReport | None,
                message: str) -> ReleaseResult:
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        self._event(Kind.RELEASE_FINISHED, release_id, None,
                    f"release {outcome}: {summary}" + (f" ({message})" if message else ""),
                    outcome=outcome, exit_code=code, summary=counts, detail=message)
        return ReleaseResult(release_id, outcome, code, results, report, message)

    def _run_waves(self, run: _Run, approver: Approver) -> tuple[str, int, str]:
        """Every wave in turn; returns (outcome, exit code, message)."""
        plan = run.plan
        with ThreadPoolExecutor(max_workers=max(1, plan.max_parallel),
                                thread_name_prefix=f"release-{run.release_id}") as pool:
            for wave in plan.waves:
                # A spent failure budget ends the release before anyone is asked at a gate.
                if run.budget_exceeded():
                    self._skip_rest(run, wave.index, self._budget_reason(run))
                    return "failed", 1, self._budget_reason(run)
                if run.lock_lost():
                    return self._lock_lost(run, wave.index)
                if wave.gate_before and wave.index > 0:
                    stop = self._gate(run, approver, wave.index, wave.clusters)
                    if stop is not None:
                        self._skip_rest(run, wave.index, stop[2])
                        return stop
                if run.control.aborted:
                    return self._aborted(run, wave.index)
                if run.lock_lost():   # the gate may have waited long
                    return self._lock_lost(run, wave.index)
                self._event(Kind.WAVE_STARTED, run.release_id, None,
                            f"wave {wave.index + 1} of {len(plan.waves)}: "
                            f"{', '.join(wave.clusters)}",
                            wave=wave.index, clusters=list(wave.clusters))
                self._run_wave(run, pool, wave.index, wave.clusters)
                wave_results = [run.results[c] for c in wave.clusters if c in run.results]
                self._event(Kind.WAVE_FINISHED, run.release_id, None,
                            f"wave {wave.index + 1} finished",
                            wave=wave.index,
                            healthy=sum(r.outcome == "healthy" for r in wave_results),
                            failed=sum(r.outcome in ("failed", "rolled_back")
                                       for r in wave_results))
                if run.control.aborted:
                    return self._aborted(run, wave.index + 1)
        if any(r.outcome == "skipped" and (r.error or "").startswith("release lock lost")
               for r in run.results.values()):
            return self._lock_lost(run, len(plan.waves))
        if run.failures:
            if run.budget_exceeded():
                return "failed", 1, self._budget_reason(run)
            return "failed", 1, f"{run.failures} cluster(s) failed (within the failure budget)"
        return "ok", 0, ""

    def _lock_lost(self, run: _Run, from_wave: int) -> tuple[str, int, str]:
        """Another release may own the clusters now: start nothing more (exit 3)."""
        reason = run.lock_lost() or "release lock lost"
        self._skip_rest(run, from_wave, reason)
        return "aborted", 3, reason

    def _budget_reason(self, run: _Run) -> str:
        if run.plan.stop_on_first_failure:
            return "stopped at the first failure (serial)"
        return (f"failure budget exceeded: {run.failures} failed, "
                f"{run.plan.max_failures} tolerated")

    def _run_wave(self, run: _Run, pool: ThreadPoolExecutor, wave: int,
                  clusters: Sequence[str]) -> None:
        """Start the wave's clusters as slots free up; stop starting on budget, pause, abort."""
        pending = deque(clusters)
        running: dict[Future, str] = {}
        cancel = run.control.aborted_event
        while pending or running:
            stop_reason = None
            if run.control.aborted:
                stop_reason = "release aborted"
            elif run.lock_lost():
                stop_reason = run.lock_lost()
            elif run.budget_exceeded():
                stop_reason = self._budget_reason(run)
            if stop_reason:
                while pending:
                    self._skip(run, pending.popleft(), stop_reason)
            elif not run.control.paused:
                while pending and len(running) < run.plan.max_parallel:
                    cid = pending.popleft()
                    running[pool.submit(self._deploy_cluster, run, cid, wave, cancel)] = cid
            if not running:
                if pending:  # paused with nothing running: wait for resume or abort
                    cancel.wait(CONTROL_POLL)
                continue
            done, _ = wait(list(running), timeout=CONTROL_POLL, return_when=FIRST_COMPLETED)
            for future in done:
                cid = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a bug in one cluster's worker
                    log.exception("deploying %s failed unexpectedly", cid)
                    result = ClusterResult(cid, "failed", None, run.tag,
                                           error=f"internal error: {exc}")
                with run.lock:
                    run.results[cid] = result
                    if result.outcome in ("failed", "rolled_back"):
                        run.failures += 1

    def _skip(self, run: _Run, cid: str, reason: str) -> None:
        before = run.before.get(cid)
        run.results[cid] = ClusterResult(cid, "skipped", before.version if before else None,
                                         run.tag, error=reason)
        self._event(Kind.CLUSTER_SKIPPED, run.release_id, cid, f"skipped: {reason}",
                    reason=reason)

    def _skip_rest(self, run: _Run, from_wave: int, reason: str) -> None:
        for wave in run.plan.waves[from_wave:]:
            for cid in wave.clusters:
                if cid not in run.results:
                    self._skip(run, cid, reason)

    def _gate(self, run: _Run, approver: Approver, next_wave: int,
              next_clusters: tuple[str, ...]) -> tuple[str, int, str] | None:
        """Ask the approver; None to go on, else how the release ends."""
        finished = [run.results[c] for w in run.plan.waves[:next_wave] for c in w.clusters
                    if c in run.results]
        request = GateRequest(run.release_id, next_wave - 1, next_wave, tuple(finished),
                              next_clusters)
        self._event(Kind.GATE_WAITING, run.release_id, None,
                    f"waiting for approval to start wave {next_wave + 1}: "
                    f"{', '.join(next_clusters)}", wave=next_wave, clusters=list(next_clusters))
        try:
            answer = approver(request)
        except Exception as exc:  # noqa: BLE001 - an approver that fails stops, it never approves
            answer = GateAnswer(GateDecision.REJECT, by=f"approver error: {exc}")
        decision = GateDecision(answer.decision)
        self._event(Kind.GATE_DECIDED, run.release_id, None,
                    f"gate {decision.value}{_by(answer.by)}", decision=decision.value,
                    by=answer.by, rollback=answer.rollback, wave=next_wave)
        if decision is GateDecision.APPROVE:
            return None
        if decision is GateDecision.REJECT:
            return "stopped", 3, f"stopped at the gate before wave {next_wave + 1}" \
                                 f"{_by(answer.by)}"
        if answer.rollback:
            self._rollback_reached(run, "aborted at the gate")
        return "aborted", 3, f"aborted at the gate before wave {next_wave + 1}{_by(answer.by)}" \
                             + ("; reached clusters rolled back" if answer.rollback else "")

    def _aborted(self, run: _Run, from_wave: int) -> tuple[str, int, str]:
        self._skip_rest(run, from_wave, "release aborted")
        if run.control.rollback_on_abort:
            self._rollback_reached(run, "release aborted")
            return "aborted", 3, "aborted; reached clusters rolled back"
        return "aborted", 3, "aborted"

    def _rollback_reached(self, run: _Run, why: str) -> None:
        """Roll back every cluster this release changed and left running it."""
        reached = [c for c, r in run.results.items() if r.outcome in ("healthy", "interrupted")]
        if not reached:
            return

        def one(cid: str) -> ClusterResult:
            result = run.results[cid]
            before = run.before.get(cid, LiveDeployment(False))
            started = time.monotonic()
            ok, error = self._restore(run.release_id, cid, before, result.to_version, why)
            return replace(result, outcome="rolled_back" if ok else "failed",
                           error=error or why,
                           rolled_back_to=before.version if ok else None,
                           duration=result.duration + time.monotonic() - started)

        with ThreadPoolExecutor(max_workers=max(1, min(len(reached), run.plan.max_parallel)),
                                thread_name_prefix="rollback") as pool:
            for result in pool.map(one, reached):
                run.results[result.cluster] = result

    # ---------------------------------------------------------------- one cluster

    def _deploy_cluster(self, run: _Run, cid: str, wave: int,
                        cancel: threading.Event) -> ClusterResult:
        """Deploy the release to one cluster; on failure roll it back. Never raises."""
        started = time.monotonic()
        rid = run.release_id
        before = run.before.get(cid)
        touched = False
        try:
            driver = self.driver(cid)
            # Read again now: a gate may have waited long since pre-flight, and the
            # rollback target must be what the cluster ran just before we touched it.
            before = driver.live()
            run.before[cid] = before
            self._event(Kind.CLUSTER_STARTED, rid, cid,
                        f"{before.version or 'nothing'} -> {run.tag}",
                        from_version=before.version, to_version=run.tag, wave=wave)
            driver.ensure_namespace()
            objects = self._render(cid, run.tag)
            touched = True
            applied = driver.apply(objects, {ANN_VERSION: run.tag, ANN_RELEASE: rid,
                                             ANN_PREVIOUS: before.version or ""})
            driver.follow(applied, self.rollout_timeout,
                          on_progress=self._progress_listener(rid, cid), cancel=cancel)
            driver.verify(applied)
        except RolloutInterrupted:
            duration = time.monotonic() - started
            self._event(Kind.CLUSTER_FAILED, rid, cid, "interrupted: release aborted",
                        error="interrupted: release aborted", duration=duration,
                        outcome="interrupted")
            return ClusterResult(cid, "interrupted", before.version if before else None,
                                 run.tag, duration, "interrupted: release aborted")
        except (ClusterError, UserError) as exc:
            error = exc.reason if isinstance(exc, ClusterError) else str(exc)
            duration = time.monotonic() - started
            self._last_error[cid] = error
            if isinstance(exc, ClusterError) and exc.unreachable:
                self._event(Kind.CLUSTER_UNREACHABLE, rid, cid, error, error=error)
            self._event(Kind.CLUSTER_FAILED, rid, cid, error, error=error, duration=duration)
            from_version = before.version if before else None
            if not touched or before is None:
                return ClusterResult(cid, "failed", from_version, run.tag, duration, error)
            ok, rb_error = self._restore(rid, cid, before, run.tag, "automatic rollback")
            duration = time.monotonic() - started
            if ok:
                return ClusterResult(cid, "rolled_back", from_version, run.tag, duration, error,
                                     rolled_back_to=before.version)
            return ClusterResult(cid, "failed", from_version, run.tag, duration,
                                 f"{error}; rollback failed: {rb_error}")
        duration = time.monotonic() - started
        self._last_error.pop(cid, None)
        self._event(Kind.CLUSTER_HEALTHY, rid, cid, f"healthy at {run.tag} in {duration:.1f}s",
                    version=run.tag, duration=duration)
        return ClusterResult(cid, "healthy", before.version, run.tag, duration)

    def _progress_listener(self, rid: str, cid: str) -> Callable[[Progress], None]:
        def on_progress(p: Progress) -> None:
            message = p.message if not p.problem else f"{p.message} [{p.problem}]"
            self._event(Kind.CLUSTER_PROGRESS, rid, cid, message, desired=p.desired,
                        updated=p.updated, ready=p.ready, available=p.available,
                        phase=p.phase, problem=p.problem)
        return on_progress

    def _render(self, cid: str, tag: str) -> list[dict[str, Any]]:
        from console.render import render
        cluster = self.config.cluster(cid)
        return list(render(self.config, cluster, tag))

    def _restore(self, rid: str, cid: str, before: LiveDeployment, from_version: str | None,
                 why: str) -> tuple[bool, str | None]:
        """Put `cid` back to `before` and wait for it; (ok, error). Emits ROLLING/ROLLED_BACK."""
        self._event(Kind.CLUSTER_ROLLING_BACK, rid, cid,
                    f"{why}: {from_version or '?'} -> {before.version or 'nothing'}",
                    from_version=from_version, to_version=before.version)
        try:
            driver = self.driver(cid)
            if not before.exists or before.template is None:
                driver.delete_deployment()
            else:
                now = driver.live()
                annotations = {k: before.annotations.get(k, "")
                               for k in (ANN_VERSION, ANN_RELEASE, ANN_PREVIOUS)}
                restored = driver.restore(before.template, now, annotations)
                driver.follow(restored, self.rollout_timeout)
                driver.verify(restored)
        except (ClusterError, UserError, RolloutInterrupted) as exc:
            error = exc.reason if isinstance(exc, ClusterError) else str(exc)
            self._last_error[cid] = f"rollback failed: {error}"
            self._event(Kind.CLUSTER_ROLLED_BACK, rid, cid, f"rollback failed: {error}",
                        version=before.version, ok=False, error=error)
            return False, error
        self._event(Kind.CLUSTER_ROLLED_BACK, rid, cid,
                    f"rolled back to {before.version or 'nothing (deployment removed)'}",
                    version=before.version, ok=True, error=None)
        return True, None

    # ---------------------------------------------------------------- manual actions

    def rollback(self, cluster_id: str, to_version: str | None = None, *,
                 by: str = "", release_id: str = "") -> ClusterResult:
        """Roll one cluster back: to its previous revision (as `kubectl rollout undo`) or
        to `to_version` (its revision if one exists, else a fresh apply of that tag).

        Raises `UserError` when there is nothing to roll back to; a cluster failure is a
        `failed` result.
        """
        cluster = self.config.cluster(cluster_id)
        if to_version is not None:
            from console.names import validate_tag
            validate_tag(to_version, "--to")
        started = time.monotonic()
        try:
            driver = self.driver(cluster.id)
            live = driver.live()
            if not live.exists:
                raise ValidationError(f"cluster {cluster.id!r}: {self.config.app.name} is not "
                                      f"deployed in namespace {cluster.namespace}")
            revisions = driver.revisions(live)
            target = self._rollback_target(cluster.id, live, revisions, to_version)
        except ClusterError as exc:
            return ClusterResult(cluster.id, "failed", None, to_version,
                                 time.monotonic() - started, exc.reason)
        version = target.version if isinstance(target, Revision) else target
        action = new_release_id()
        self._event(Kind.CLUSTER_ROLLING_BACK, release_id, cluster.id,
                    f"rollback {live.version} -> {version}{_by(by)}",
                    from_version=live.version, to_version=version, by=by)
        try:
            annotations = {ANN_VERSION: version or "", ANN_RELEASE: action,
                           ANN_PREVIOUS: live.version or ""}
            if isinstance(target, Revision):
                written = driver.restore(target.template, live, annotations)
            else:
                written = driver.apply(self._render(cluster.id, target), annotations)
            driver.follow(written, self.rollout_timeout)
            driver.verify(written)
        except (ClusterError, UserError, RolloutInterrupted) as exc:
            error = exc.reason if isinstance(exc, ClusterError) else str(exc)
            self._last_error[cluster.id] = f"rollback failed: {error}"
            self._event(Kind.CLUSTER_ROLLED_BACK, release_id, cluster.id,
                        f"rollback failed: {error}", version=version, ok=False, error=error,
                        by=by)
            return ClusterResult(cluster.id, "failed", live.version, version,
                                 time.monotonic() - started, error)
        self._event(Kind.CLUSTER_ROLLED_BACK, release_id, cluster.id,
                    f"rolled back to {version}", version=version, ok=True, error=None, by=by)
        return ClusterResult(cluster.id, "rolled_back", live.version, version,
                             time.monotonic() - started, None, rolled_back_to=version)

    def _rollback_target(self, cid: str, live: LiveDeployment, revisions: list[Revision],
                         to_version: str | None) -> Revision | str:
        if to_version is None:
            older = [r for r in revisions if live.revision is None or r.number < live.revision]
            # Skip revisions that run what runs now (kubectl undo would be a no-op there).
            older = [r for r in older if r.image != live.image]
            if not older:
                raise ValidationError(f"cluster {cid!r}: no previous revision to roll back to "
                                      f"(it runs {live.version})")
            return older[-1]
        if to_version == live.version:
            raise ValidationError(f"cluster {cid!r}: already runs {to_version}")
        matching = [r for r in revisions if r.version == to_version]
        return matching[-1] if matching else to_version

    def rollback_release(self, release_id: str, *, by: str = "") -> list[ClusterResult]:
        """Roll back every cluster that `release_id` reached (its annotation says so) to the
        version each ran before. Raises `UserError` when no cluster carries that release."""
        from console.names import validate_release_id
        validate_release_id(release_id, "--release")
        statuses = self.status()
        reached = [s for s in statuses if s.release_id == release_id]
        unreachable = [s for s in statuses if not s.reachable]
        if not reached:
            hint = f" ({len(unreachable)} cluster(s) did not answer: " \
                   f"{', '.join(s.cluster for s in unreachable)})" if unreachable else ""
            raise ValidationError(f"--release: no cluster runs release {release_id!r}{hint}")

        def one(status: ClusterStatus) -> ClusterResult:
            if not status.previous_version:
                return ClusterResult(status.cluster, "skipped", status.version, None,
                                     error=f"release {release_id} was the first version "
                                     "here; nothing to roll back to")
            try:
                return self.rollback(status.cluster, status.previous_version, by=by,
                                     release_id=release_id)
            except UserError as exc:  # one cluster's refusal must not stop the others
                return ClusterResult(status.cluster, "failed", status.version,
                                     status.previous_version, error=str(exc))

        with ThreadPoolExecutor(max_workers=min(32, len(reached)),
                                thread_name_prefix="rollback-release") as pool:
            results = list(pool.map(one, reached))
        # A cluster that did not answer may carry the release too: say so, never skip it silently.
        results += [ClusterResult(s.cluster, "failed", None, None,
                                  error=f"could not tell whether release {release_id} reached "
                                  f"it: {s.error}") for s in unreachable]
        return results

    # ---------------------------------------------------------------- reading

    def status(self, cluster_ids: Sequence[str] | None = None) -> list[ClusterStatus]:
        """Every cluster's (or `cluster_ids`') live version, read concurrently with short
        timeouts, in config order."""
        wanted = set(cluster_ids) if cluster_ids is not None else None
        clusters = [c for c in self.config.clusters if wanted is None or c.id in wanted]
        if not clusters:
            return []

        def one(cluster: Any) -> ClusterStatus:
            try:
                live = self.driver(cluster.id).live(timeout=self.status_timeout)
            except ClusterError as exc:
                return ClusterStatus(cluster.id, None, None, None, 0, 0, False, exc.reason)
            except UserError as exc:
                return ClusterStatus(cluster.id, None, None, None, 0, 0, False, str(exc))
            return ClusterStatus(cluster.id, live.version, live.image, live.revision,
                                 live.ready, live.desired, True, None, live.release_id,
                                 live.previous_version or None)

        pool = ThreadPoolExecutor(max_workers=min(32, len(clusters)),
                                  thread_name_prefix="status")
        futures = [pool.submit(one, c) for c in clusters]
        # Retries of a refused connection add a little to the per-call timeout.
        done, _ = wait(futures, timeout=self.status_timeout * 2 + 2)
        pool.shutdown(wait=False)
        out: list[ClusterStatus] = []
        for cluster, future in zip(clusters, futures):
            if future in done:
                out.append(future.result())
            else:
                out.append(ClusterStatus(cluster.id, None, None, None, 0, 0, False,
                                         f"no answer within {self.status_timeout * 2 + 2:g}s"))
        return out

    def detail(self, cluster_id: str) -> ClusterDetail:
        """Pods, rollout history, recent events and the last error of one cluster."""
        cluster = self.config.cluster(cluster_id)
        last = self._last_error.get(cluster.id)
        try:
            driver = self.driver(cluster.id)
            live = driver.live(timeout=self.status_timeout)
            pods = driver.pods(live) if live.exists else []
            revisions = driver.revisions(live) if live.exists else []
            events = driver.events()
        except ClusterError as exc:
            return ClusterDetail(cluster.id, last_error=exc.reason)
        except UserError as exc:
            return ClusterDetail(cluster.id, last_error=str(exc))
        return ClusterDetail(cluster.id, tuple(_pod_info(p, self.config.app.name) for p in pods),
                             tuple(revisions), tuple(_event_info(e) for e in events), last)


def _by(by: str) -> str:
    return f" by {by}" if by else ""


def _pod_info(pod: dict[str, Any], app: str) -> PodInfo:
    from console.kube.rollout import pod_problems, pod_ready
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    problems = pod_problems(pod)
    reason = problems[0].reason if problems else ""
    if not reason:
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting:
                reason = waiting.get("reason", "")
                break
    containers = (pod.get("spec") or {}).get("containers") or []
    image = next((c.get("image", "") for c in containers if c.get("name") == app),
                 containers[0].get("image", "") if containers else "")
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "")
    return PodInfo(meta.get("name", ""), phase, pod_ready(pod), restarts, reason, image)


def _event_info(event: dict[str, Any]) -> EventInfo:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    when = event.get("lastTimestamp") or event.get("eventTime") or \
        (event.get("metadata") or {}).get("creationTimestamp") or ""
    return EventInfo(str(when), event.get("type", ""), event.get("reason", ""),
                     f"{involved.get('kind', '')}/{involved.get('name', '')}".strip("/"),
                     event.get("message") or event.get("note") or "")

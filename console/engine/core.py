"""`Engine`: one fleet's releases and manual actions, and the listeners told about them.

The class holds what every action shares - the fleet config, the timeouts, one cached
driver per cluster, the listeners and the last error seen per cluster - and hands the
work to the modules named for it: `waves` (a release), `rollbacks` (automatic and manual
rollbacks), `checks` (pre-flight and the release lock) and `queries` (status, detail,
lease holders, reconciling the ledger). Every action is told to the listeners as
`console.events.Event`s; a listener that raises is reported (logged, kept in
`listener_errors`) and never stops a release - except at RELEASE_STARTED, where a failure
to record the release (the ledger) stops it before any cluster is touched.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from console.engine import checks, queries, rollback_choice, rollbacks, waves
from console.engine.api import (Approver, ClusterDetail, ClusterResult, ClusterStatus,
                                ReleaseControl, ReleaseRequest, ReleaseResult)
from console.engine.rollback_choice import RollbackPlan
from console.events import Event, Kind, Listener
from console import freeze
from console.freeze import Clock
from console.kube.client import KubeClient, environment_proxies, new_api_client
from console.kube.driver import ClusterDriver
from console.locks import DEFAULT_DURATION as LOCK_DURATION
from console.locks import Holder
from console.plan import Plan, build_plan, select, shard_plan
from console.preflight import PreflightReport

if TYPE_CHECKING:
    from console.engine.waves import ReleaseRun

log = logging.getLogger(__name__)

# Builds the driver of one cluster from its id (the engine caches what it returns).
DriverFactory = Callable[[str], ClusterDriver]

STATUS_TIMEOUT = 3.0      # s per cluster for `status()`; an unreachable one never stalls the rest
REQUEST_TIMEOUT = 10.0    # s for each ordinary API call during a release
FAIL_FAST_GRACE = 10.0    # s a new pod may sit in ErrImagePull/CrashLoopBackOff before failing
UNREACHABLE_GRACE = 30.0  # s a cluster may stop answering mid-rollout before it fails
LISTENER_ERRORS_KEPT = 100


class Engine:
    """Runs releases and manual actions on one fleet; thread-safe; never imports textual."""

    def __init__(self, config: Any, listeners: Sequence[Listener] = (), *,
                 grace: float = FAIL_FAST_GRACE, request_timeout: float = REQUEST_TIMEOUT,
                 status_timeout: float = STATUS_TIMEOUT,
                 rollout_timeout: float | None = None,
                 unreachable_grace: float = UNREACHABLE_GRACE,
                 lock_duration: int = LOCK_DURATION, clock: Clock | None = None,
                 driver_factory: DriverFactory | None = None) -> None:
        """`config` is a loaded `FleetConfig`; `rollout_timeout` overrides the app's;
        `grace` is the fail-fast grace, `unreachable_grace` how long a cluster may stop
        answering during a rollout before it fails; `lock_duration` how long (s) a
        release's leases outlive a console that stopped renewing them; `clock` is the
        aware "now" the fleet file's freeze windows are read against (tests pin it);
        `driver_factory` builds a cluster's driver from its id (default `build_driver`;
        a test may build the real driver another way, e.g. straight from the
        simulator's kubeconfig)."""
        self.config = config
        self.listeners: list[Listener] = list(listeners)
        self.grace = grace
        self.request_timeout = request_timeout
        self.status_timeout = status_timeout
        self.status_readers = queries.STATUS_READERS  # clusters `status()` reads at once
        # A one-shot reader's engine (`release-console status`): a cluster whose
        # kubeconfig is plain gets a client made without the client library
        # (`console.kube.plain_api`), which then need not even be imported.
        self.plain_clients = False
        self.unreachable_grace = unreachable_grace
        self.rollout_timeout = rollout_timeout or config.app.rollout_timeout
        self.lock_duration = lock_duration
        # Looked up now, not at import: a test pins `console.freeze.utc_now` for the CLI.
        self.clock: Clock = clock if clock is not None else freeze.utc_now
        # The latest listener failures (bounded: an engine lives as long as a TUI session).
        self.listener_errors: deque[str] = deque(maxlen=LISTENER_ERRORS_KEPT)
        # The last error seen per cluster (a failed rollout or rollback), for `detail`.
        self.last_errors: dict[str, str] = {}
        self._drivers: dict[str, ClusterDriver] = {}
        self._drivers_lock = threading.Lock()
        # The releases running in this engine now, by id (manual actions act through them).
        self._runs: dict[str, ReleaseRun] = {}
        self._driver_factory: DriverFactory = driver_factory or self.build_driver

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

    def event(self, kind: Kind, release_id: str, cluster: str | None, message: str,
              **data: Any) -> None:
        """Emit one event made of these parts (none is made for an engine nobody listens
        to, such as `check`'s: scrubbing its 9 results per cluster was 8% of its CPU)."""
        if self.listeners:
            self.emit(Event(kind, release_id, cluster, message, data))

    # ---------------------------------------------------------------- drivers

    def driver(self, cluster_id: str) -> ClusterDriver:
        """The (cached) driver of one cluster; raises `UserError` for bad credentials."""
        with self._drivers_lock:
            driver = self._drivers.get(cluster_id)
        if driver is not None:
            return driver
        driver = self._driver_factory(cluster_id)
        with self._drivers_lock:
            # Another thread may have built one meanwhile: keep the first.
            existing = self._drivers.setdefault(cluster_id, driver)
        if existing is not driver:
            driver.client.close()
        return existing

    def build_driver(self, cluster_id: str) -> ClusterDriver:
        """The default driver factory: the cluster's credentials resolved, its own client,
        and the driver the fleet file picks (manifests, or a Helm chart)."""
        from console.credentials import resolve
        from console.kube.drivers import make_driver
        cluster = self.config.cluster(cluster_id)
        kubeconfig = resolve(cluster, self.config)
        api: Any = None
        if self.plain_clients:
            from console.kube.plain_api import plain_api
            api = plain_api(kubeconfig, environment_proxies())
        if api is None:
            api = new_api_client(cluster_id, kubeconfig, kubeconfig.get("current-context"))
        return make_driver(self.config, cluster,
                           KubeClient(cluster_id, api, self.request_timeout), kubeconfig,
                           grace=self.grace, unreachable_grace=self.unreachable_grace)

    def close(self) -> None:
        """Release every cluster client."""
        with self._drivers_lock:
            drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            driver.client.close()

    # ---------------------------------------------------------------- running releases

    def register_run(self, run: ReleaseRun, running: bool = True) -> None:
        """Note a release of this engine that holds its leases now (or no longer)."""
        with self._drivers_lock:
            if running:
                self._runs[run.release_id] = run
            else:
                self._runs.pop(run.release_id, None)

    def running(self, release_id: str) -> ReleaseRun | None:
        """The running release `release_id` of this engine, if any."""
        with self._drivers_lock:
            return self._runs.get(release_id)

    def run_holding(self, cluster_id: str) -> ReleaseRun | None:
        """The running release of this engine whose lease covers `cluster_id`, if any."""
        with self._drivers_lock:
            runs = list(self._runs.values())
        return next((run for run in runs if run.holds(cluster_id)), None)

    # ---------------------------------------------------------------- planning

    def plan(self, request: ReleaseRequest) -> Plan:
        """The plan for `request`; raises `UserError` (bad selector, order, strategy)."""
        targets = select(self.config, request.clusters)
        plan = build_plan(self.config, targets, request.strategy, request.order,
                          request.max_parallel, request.max_failures, request.bake,
                          request.pace, request.on_failure)
        # A shard plans the whole release and keeps its slice (waves and budget global).
        return shard_plan(plan, *request.shard) if request.shard else plan

    def preflight(self, request: ReleaseRequest, release_id: str = "") -> PreflightReport:
        """Run every pre-flight check for `request` (touches nothing); emits PREFLIGHT_*."""
        report = checks.preflight_checks(self, request, release_id)
        checks.preflight_finished(self, release_id, report)
        return report

    # ---------------------------------------------------------------- releases

    def run(self, request: ReleaseRequest, approver: Approver,
            control: ReleaseControl | None = None) -> ReleaseResult:
        """Run one release to its end (blocking). Raises `UserError` for bad input."""
        return waves.run_release(self, request, approver, control or ReleaseControl())

    def rollback(self, cluster_id: str, to_version: str | None = None, *,
                 by: str = "", release_id: str = "",
                 expect_from: str | None = None, digest: str | None = None) -> ClusterResult:
        """Roll one cluster back: to its previous revision (as `kubectl rollout undo`) or
        to `to_version` (its revision if one exists, else a fresh apply of that tag,
        pinned to `digest` - the one the ledger recorded for it - when given).
        Which version a person meant is `plan_rollback`'s; `expect_from` (the version
        the confirmation named) refuses when the cluster runs another one by now.

        Raises `UserError` when there is nothing to roll back to; a cluster failure is a
        `failed` result.
        """
        return rollbacks.rollback(self, cluster_id, to_version, by=by, release_id=release_id,
                                  expect_from=expect_from, digest=digest)

    def plan_rollback(self, cluster_id: str, to: str | None,
                      releases: Sequence[Any]) -> RollbackPlan:
        """Where `rollback CLUSTER [--to to]` would go and why, from the ledger's
        `releases` of that cluster and its live version; touches nothing (see
        `console.engine.rollback_choice`). Raises `UserError` when refused."""
        return rollback_choice.plan_rollback(self, cluster_id, to, releases)

    def rollback_release(self, release_id: str, *, by: str = "",
                         releases: Sequence[Any] = ()) -> list[ClusterResult]:
        """Roll back every cluster that `release_id` reached (its annotation says so) to the
        version each ran before - pinned to the digest the ledger's `releases` recorded
        for it there. Raises `UserError` when no cluster carries that release."""
        return rollbacks.rollback_release(self, release_id, by=by, releases=releases)

    # ---------------------------------------------------------------- reading

    def status(self, cluster_ids: Sequence[str] | None = None, *,
               keep_connections: bool = True) -> list[ClusterStatus]:
        """Every cluster's (or `cluster_ids`') live version, read concurrently with short
        timeouts, in config order (`keep_connections=False`: a one-shot reading that
        closes each cluster's connection once read - see `queries.status`)."""
        return queries.status(self, cluster_ids, keep_connections=keep_connections)

    def detail(self, cluster_id: str) -> ClusterDetail:
        """Pods, rollout history, recent events and the last error of one cluster."""
        return queries.detail(self, cluster_id)

    def lease_holders(self, cluster_ids: Sequence[str]) -> dict[str, Holder | None]:
        """Who holds the app's release lock on each cluster (None: free, expired, or
        unreadable), read concurrently with the status timeout."""
        return queries.lease_holders(self, cluster_ids)

    def reconcile_unfinished(self, ledger: Any) -> list[Any]:
        """Close the releases a stopped console left open in `ledger` (`console.history.
        Ledger`) with what the clusters really run; returns them, closed.

        A release whose lease is still held on one of its clusters is running in a live
        console (on another machine, say): it is left alone. A lease that cannot be read
        does not count as held (the release is closed with what can be read).
        """
        return queries.reconcile_unfinished(self, ledger)

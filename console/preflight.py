"""Pre-flight: every check a release must pass before it touches a single cluster.

Checks come in two kinds. Release checks (`ReleaseCheck`) look at the request as a
whole - the tag is valid, the plan is sound. Cluster checks (`ClusterCheck`) run once per
target cluster, in order, each cluster in its own thread so the whole fleet is checked
at once; a check that needs the cluster to answer is skipped (and says so) after an
earlier check found it unreachable. More checks plug in with `register` (or the
`checks=` argument of `run_preflight`): the credentials work adds registry, RBAC,
render + dry-run and node-capacity checks this way.

The checks of this module: the cluster's credentials resolve and its API server answers
(`GET /version`, short timeout); the cluster id and its namespace are valid names; the
namespace exists, or the credentials may create it; and the app's live version is read
(for the printed plan and the `from_version` of the release).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from console.errors import UserError
from console.kube.client import ClusterError
from console.kube.driver import ClusterDriver, LiveDeployment

PING_TIMEOUT = 5.0   # s for `/version` and the other pre-flight reads
MAX_WORKERS = 64     # clusters checked at once


@dataclass(frozen=True)
class CheckResult:
    """One check of one cluster (`cluster` None for release-wide checks)."""

    check: str
    ok: bool
    detail: str = ""
    cluster: str | None = None


@dataclass
class ClusterContext:
    """What a cluster check may use and leave for the next checks of the same cluster."""

    cluster: Any            # console.config.Cluster
    config: Any             # console.config.FleetConfig
    tag: str
    driver_for: Callable[[str], ClusterDriver]
    reachable: bool = True  # False once a check found the cluster not answering
    live: LiveDeployment | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def driver(self) -> ClusterDriver:
        """The cluster's driver (credentials resolved on first use; raises on failure)."""
        return self.driver_for(self.cluster.id)


@dataclass(frozen=True)
class ClusterCheck:
    """A named per-cluster check; `needs_cluster` checks are skipped when it is unreachable."""

    name: str
    run: Callable[[ClusterContext], CheckResult]
    needs_cluster: bool = True


@dataclass(frozen=True)
class ReleaseCheck:
    """A named release-wide check, given the request's tag and the plan (or its error)."""

    name: str
    run: Callable[[Any, str, Any], CheckResult]   # (config, tag, plan) -> result


@dataclass(frozen=True)
class PreflightReport:
    """Every result, and the live deployments read on the way."""

    results: tuple[CheckResult, ...]
    live: Mapping[str, LiveDeployment]

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The failed checks, in order."""
        return tuple(r for r in self.results if not r.ok)

    def table(self) -> str:
        """A plain-text table: CLUSTER  CHECK  RESULT  DETAIL."""
        rows = [("CLUSTER", "CHECK", "RESULT", "DETAIL")]
        for r in self.results:
            rows.append((r.cluster or "(release)", r.check, "ok" if r.ok else "FAIL",
                         " ".join(r.detail.split())))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths)), row[3]])
                         .rstrip() for row in rows)


# --------------------------------------------------------------------------- checks


def check_tag(config: Any, tag: str, plan: Any) -> CheckResult:
    """The image tag follows the OCI tag grammar."""
    from console.names import validate_tag
    try:
        validate_tag(tag)
    except UserError as exc:
        return CheckResult("tag", False, str(exc))
    return CheckResult("tag", True, config.app.image_ref(tag))


def check_plan(config: Any, tag: str, plan: Any) -> CheckResult:
    """The plan was built (selection, order and strategy are sound) and has targets."""
    if isinstance(plan, Exception):
        return CheckResult("plan", False, str(plan))
    if not plan.targets:
        return CheckResult("plan", False, "no target clusters")
    return CheckResult("plan", True, f"{plan.strategy}: {len(plan.targets)} cluster(s) in "
                       f"{len(plan.waves)} wave(s)")


def check_names(ctx: ClusterContext) -> CheckResult:
    """The cluster id and its namespace are DNS-1123 labels."""
    from console.names import validate_dns_label
    try:
        validate_dns_label(ctx.cluster.id, "cluster id")
        validate_dns_label(ctx.cluster.namespace, "namespace")
    except UserError as exc:
        return CheckResult("names", False, str(exc), ctx.cluster.id)
    return CheckResult("names", True, f"namespace {ctx.cluster.namespace}", ctx.cluster.id)


def check_cluster_answers(ctx: ClusterContext) -> CheckResult:
    """The credentials resolve and the API server answers `/version`."""
    try:
        version = ctx.driver.ping(timeout=PING_TIMEOUT)
    except (ClusterError, UserError) as exc:
        ctx.reachable = False
        return CheckResult("cluster", False, _reason(exc), ctx.cluster.id)
    return CheckResult("cluster", True, f"answers ({version or 'version unknown'})",
                       ctx.cluster.id)


def check_namespace(ctx: ClusterContext) -> CheckResult:
    """The namespace exists, or the credentials may create it."""
    ns = ctx.cluster.namespace
    driver = ctx.driver
    try:
        if driver.namespace_exists(timeout=PING_TIMEOUT):
            return CheckResult("namespace", True, f"{ns} exists", ctx.cluster.id)
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"verb": "create", "resource": "namespaces",
                                                  "version": "v1"}}}
        answer = driver.client.request("POST",
                                       "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                       body=review, timeout=PING_TIMEOUT)
    except ClusterError as exc:
        return CheckResult("namespace", False, _reason(exc), ctx.cluster.id)
    if (answer.get("status") or {}).get("allowed"):
        return CheckResult("namespace", True, f"{ns} absent; will be created", ctx.cluster.id)
    return CheckResult("namespace", False, f"namespace {ns} does not exist and the credentials "
                       "may not create it (ask an admin to apply `release-console rbac "
                       f"{ctx.cluster.id}`)", ctx.cluster.id)


def check_live_version(ctx: ClusterContext) -> CheckResult:
    """Read what the cluster runs now (the release's from-version)."""
    try:
        ctx.live = ctx.driver.live(timeout=PING_TIMEOUT)
    except ClusterError as exc:
        return CheckResult("live", False, _reason(exc), ctx.cluster.id)
    if not ctx.live.exists:
        return CheckResult("live", True, "not deployed yet", ctx.cluster.id)
    return CheckResult("live", True, f"runs {ctx.live.version or ctx.live.image}",
                       ctx.cluster.id)


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, ClusterError) else str(exc)


RELEASE_CHECKS: list[ReleaseCheck] = [ReleaseCheck("tag", check_tag),
                                      ReleaseCheck("plan", check_plan)]
CLUSTER_CHECKS: list[ClusterCheck] = [
    ClusterCheck("names", check_names, needs_cluster=False),
    ClusterCheck("cluster", check_cluster_answers),
    ClusterCheck("namespace", check_namespace),
    ClusterCheck("live", check_live_version),
]
_registry_lock = threading.Lock()
# Modules whose import registers more checks.
PLUGIN_MODULES = ("console.preflight_checks", "console.preflight_helm")


def load_plugins() -> None:
    """Import the modules that register more checks (the credentials work's
    `console.preflight_checks`: registry, RBAC, values, dry-run, capacity), if installed."""
    import importlib
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def check_names_in_use() -> list[str]:
    """The names of every check a pre-flight runs now (release checks first)."""
    load_plugins()
    return [c.name for c in RELEASE_CHECKS] + [c.name for c in CLUSTER_CHECKS]


def register(check: ClusterCheck | ReleaseCheck) -> None:
    """Add a check to every later pre-flight (e.g. registry, RBAC, dry-run, capacity)."""
    with _registry_lock:
        target = RELEASE_CHECKS if isinstance(check, ReleaseCheck) else CLUSTER_CHECKS
        if all(c.name != check.name for c in target):
            target.append(check)


def run_preflight(config: Any, tag: str, plan: Any, clusters: Sequence[Any],
                  driver_for: Callable[[str], ClusterDriver],
                  on_result: Callable[[CheckResult], None] | None = None,
                  checks: Sequence[ClusterCheck] | None = None,
                  release_checks: Sequence[ReleaseCheck] | None = None) -> PreflightReport:
    """Run every check; clusters concurrently. `plan` may be the exception building it raised.

    `on_result` is called for each result as it is known (from worker threads).
    """
    load_plugins()
    results: list[CheckResult] = []
    lock = threading.Lock()

    def report(result: CheckResult) -> None:
        with lock:
            results.append(result)
        if on_result is not None:
            on_result(result)

    for check in release_checks if release_checks is not None else list(RELEASE_CHECKS):
        report(check.run(config, tag, plan))
    cluster_checks = list(checks) if checks is not None else list(CLUSTER_CHECKS)
    live: dict[str, LiveDeployment] = {}

    def one(cluster: Any) -> None:
        ctx = ClusterContext(cluster, config, tag, driver_for)
        for check in cluster_checks:
            if check.needs_cluster and not ctx.reachable:
                report(CheckResult(check.name, False, "not checked: the cluster does not "
                                   "answer", cluster.id))
                continue
            try:
                result = check.run(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken check fails, never crashes pre-flight
                result = CheckResult(check.name, False, f"check failed: {_reason(exc)}",
                                     cluster.id)
            report(result)
        if ctx.live is not None:
            with lock:
                live[cluster.id] = ctx.live

    if clusters:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(clusters)),
                                thread_name_prefix="preflight") as pool:
            list(pool.map(one, clusters))
    order = {c.id: i for i, c in enumerate(clusters)}
    names = [c.name for c in cluster_checks]
    # Stable, readable order: release checks, then per cluster in plan order.
    results.sort(key=lambda r: (r.cluster is not None, order.get(r.cluster or "", -1),
                                names.index(r.check) if r.check in names else len(names)))
    return PreflightReport(tuple(results), live)

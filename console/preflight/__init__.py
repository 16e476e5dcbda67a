"""Pre-flight: every check a release must pass before it touches a single cluster.

The checks, in the order they run (an explicit list: `RELEASE_CHECKS`, `CLUSTER_CHECKS`):

- release-wide (`release.py`): `tag`, `plan`, `image` (the tag exists in the registry);
  `chart` (helm runs, `helm lint` passes; `helm.py`);
- per cluster, every cluster at once, each in its own thread: `credentials`, `names`,
  `cluster` (it answers; the namespace read) - `cluster.py`; `access` (one
  SelfSubjectRulesReview against `console.rbac`) - `access.py`; `namespace`, `live` -
  `cluster.py`; `values`, `dry-run` (server-side, also on a first release) -
  `manifests.py`; `capacity` (the release's pods against the nodes' free room, as the
  scheduler counts it) - `capacity.py`.

A cluster whose credentials cannot be loaded gets that one line and no other; one that does
not answer gets one failing line, and its checks that need the cluster are left out.
Requests per cluster: the Deployment (where it exists it also proves the namespace; else
the namespace is read too), the rules review, one dry run per object, the nodes and the
pods - five for a one-Deployment app that runs already, six on a cluster's first release.

`model.py` holds what a check is, what it is given and what it answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from console.kube.driver import ClusterDriver, LiveDeployment
from console.preflight.access import access_check
from console.preflight.capacity import capacity_check
from console.preflight.cluster import (check_cluster_answers, check_credentials,
                                       check_live_version, check_names, check_namespace)
from console.preflight.manifests import dry_run_check, values_check
from console.preflight.model import (CheckResult, ClusterCheck, ClusterContext,
                                     PreflightReport, ReleaseCheck, reason)
from console.preflight.release import check_plan, check_tag, image_check
from console.preflight.helm import check_chart

MAX_WORKERS = 64     # clusters checked at once

RELEASE_CHECKS: tuple[ReleaseCheck, ...] = (
    ReleaseCheck("tag", check_tag),
    ReleaseCheck("plan", check_plan),
    ReleaseCheck("image", image_check),
    ReleaseCheck("chart", check_chart),
)
CLUSTER_CHECKS: tuple[ClusterCheck, ...] = (
    ClusterCheck("credentials", check_credentials, needs_cluster=False),
    ClusterCheck("names", check_names, needs_cluster=False),
    ClusterCheck("cluster", check_cluster_answers),
    ClusterCheck("access", access_check),
    ClusterCheck("namespace", check_namespace),
    ClusterCheck("live", check_live_version),
    ClusterCheck("values", values_check, needs_cluster=False),
    ClusterCheck("dry-run", dry_run_check),
    ClusterCheck("capacity", capacity_check),
)


def check_names_in_use() -> list[str]:
    """The names of every check a pre-flight runs (release checks first)."""
    return [c.name for c in RELEASE_CHECKS] + [c.name for c in CLUSTER_CHECKS]


def run_preflight(config: Any, tag: str, plan: Any, clusters: Sequence[Any],
                  driver_for: Callable[[str], ClusterDriver],
                  on_result: Callable[[CheckResult], None] | None = None,
                  checks: Sequence[ClusterCheck] | None = None,
                  release_checks: Sequence[ReleaseCheck] | None = None) -> PreflightReport:
    """Run every check; clusters concurrently. `plan` may be the exception building it raised.

    `on_result` is called for each result as it is known (from worker threads).
    """
    results: list[CheckResult] = []
    lock = threading.Lock()

    def report(result: CheckResult) -> None:
        with lock:
            results.append(result)
        if on_result is not None:
            on_result(result)

    for check in release_checks if release_checks is not None else RELEASE_CHECKS:
        report(check.run(config, tag, plan))
    cluster_checks = list(checks) if checks is not None else list(CLUSTER_CHECKS)
    live: dict[str, LiveDeployment] = {}
    shared: dict[str, Any] = {}

    def one(cluster: Any) -> None:
        ctx = ClusterContext(cluster, config, tag, driver_for, shared=shared)
        for check in cluster_checks:
            if ctx.stopped:
                break      # no credentials: that one line says it all
            if check.needs_cluster and not ctx.reachable:
                continue   # the credentials or cluster line already says why
            try:
                result = check.run(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken check fails, never crashes pre-flight
                result = CheckResult(check.name, False, f"check failed: {reason(exc)}",
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


__all__ = ["CLUSTER_CHECKS", "RELEASE_CHECKS", "CheckResult", "ClusterCheck", "ClusterContext",
           "PreflightReport", "ReleaseCheck", "check_names_in_use", "run_preflight"]

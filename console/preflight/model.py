"""What a pre-flight check is, what it is given, and what it answers.

Two kinds of checks: release checks (`ReleaseCheck`) look at the request as a whole - the
tag, the plan, the image; cluster checks (`ClusterCheck`) run once per target cluster, in
order, with a `ClusterContext` that carries what the earlier checks of that cluster found
(the namespace exists, the credentials' rules, the live Deployment, the rendered
manifests). Every result is a `CheckResult`; a `PreflightReport` holds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.kube.client import ClusterError, KubeClient
from console.kube.driver import ClusterDriver, LiveDeployment

PING_TIMEOUT = 5.0   # s for each API call a check makes


@dataclass(frozen=True)
class CheckResult:
    """One check of one cluster (`cluster` None for release-wide checks)."""

    check: str
    ok: bool
    detail: str = ""
    cluster: str | None = None


@dataclass
class ClusterContext:
    """What a cluster check may use and leave for the next checks of the same cluster.

    `reachable` goes False when the cluster does not answer: the checks that need the
    cluster are then left out. `stopped` goes True when its credentials cannot be had:
    every later check is left out (one cause, one line).
    """

    cluster: Any            # console.config.Cluster
    config: Any             # console.config.FleetConfig
    tag: str
    driver_for: Callable[[str], ClusterDriver]
    reachable: bool = True
    stopped: bool = False
    namespace_exists: bool | None = None   # None: not known (e.g. reading it was denied)
    live: LiveDeployment | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # What is the same for every cluster of one pre-flight (the RBAC rules, the names the
    # templates use): worked out once, not per cluster. Two threads may both work it out.
    shared: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """`shared[key]`, made on first use."""
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]

    @property
    def driver(self) -> ClusterDriver:
        """The cluster's driver (credentials resolved on first use; raises on failure)."""
        return self.driver_for(self.cluster.id)


@dataclass(frozen=True)
class ClusterCheck:
    """A named per-cluster check; `needs_cluster` checks are left out when it is unreachable."""

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
        """A plain-text table: CLUSTER  CHECK  RESULT  DETAIL (a detail is never cut)."""
        rows = [("CLUSTER", "CHECK", "RESULT", "DETAIL")]
        for r in self.results:
            rows.append((r.cluster or "(release)", r.check, "ok" if r.ok else "FAIL",
                         " ".join(r.detail.split())))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths)), row[3]])
                         .rstrip() for row in rows)


def as_kube(client: Any, cluster: str | None) -> KubeClient:
    """The driver's raw-JSON client for `client` (a `KubeClient`, or a bare
    `kubernetes.client.ApiClient` wrapped in one): timeouts, bounded retries on 429/5xx,
    errors without secrets."""
    if isinstance(client, KubeClient):
        return client
    return KubeClient(cluster or "?", client, PING_TIMEOUT)


def reason(exc: Exception) -> str:
    """The safe text of a cluster or user error."""
    return exc.reason if isinstance(exc, ClusterError) else str(exc)


__all__ = ["CheckResult", "ClusterCheck", "ClusterContext", "PreflightReport", "ReleaseCheck",
           "PING_TIMEOUT", "as_kube", "reason"]

"""Read-only questions to the fleet: live status, one cluster's detail, who holds the
release lock, and closing the releases a stopped console left open in the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from console.engine.api import ClusterDetail, ClusterStatus, EventInfo, PodInfo
from console.errors import UserError
from console.kube.client import ClusterError
from console.locks import ClusterLease, Holder

if TYPE_CHECKING:
    from console.engine.core import Engine


STATUS_READERS = 32   # clusters read at once by `status()`


def status(engine: Engine, cluster_ids: Sequence[str] | None = None, *,
           keep_connections: bool = True) -> list[ClusterStatus]:
    """Every cluster's (or `cluster_ids`') live version, read concurrently with short
    timeouts, in config order.

    `keep_connections=False` is for a one-shot reading (`release-console status`, which
    exits next): each reader closes its cluster's connection as soon as it has read it,
    while the other reads still wait on the network, instead of the engine closing a
    thousand TLS connections one after the other at the end."""
    wanted = set(cluster_ids) if cluster_ids is not None else None
    clusters = [c for c in engine.config.clusters if wanted is None or c.id in wanted]
    if not clusters:
        return []

    def one(cluster: Any) -> ClusterStatus:
        try:
            driver = engine.driver(cluster.id)
            # A one-shot read's connection is its cluster's last: no TLS session to keep.
            driver.client.keep_sessions = keep_connections
            try:
                live = driver.live(timeout=engine.status_timeout)
            finally:
                if not keep_connections:
                    driver.client.close()
                    driver.client.keep_sessions = True
        except ClusterError as exc:
            return ClusterStatus(cluster.id, None, None, None, 0, 0, False, exc.reason)
        except UserError as exc:
            return ClusterStatus(cluster.id, None, None, None, 0, 0, False, str(exc))
        return ClusterStatus(cluster.id, live.version, live.image, live.revision,
                             live.ready, live.desired, True, None, live.release_id,
                             live.previous_version or None, live.helm_revision,
                             live.chart_version, live.helm_status, live.digest,
                             live.app_version)

    readers = max(1, min(engine.status_readers, len(clusters)))
    pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="status")
    futures = [pool.submit(one, c) for c in clusters]
    # One read takes at most its timeout (retries of a refused connection add a little);
    # a reader reads its share of the fleet one cluster after the other, so the whole
    # wait is that bound times the rounds - with a thousand clusters and 32 readers, one
    # round's bound would give up on most of a healthy fleet.
    bound = engine.status_timeout * 2 + 2
    done, _ = wait(futures, timeout=bound * -(-len(clusters) // readers))
    pool.shutdown(wait=False)
    out: list[ClusterStatus] = []
    for cluster, future in zip(clusters, futures):
        if future in done:
            out.append(future.result())
        else:
            future.cancel()
            out.append(ClusterStatus(cluster.id, None, None, None, 0, 0, False,
                                     f"no answer within {bound:g}s"))
    return out


def detail(engine: Engine, cluster_id: str) -> ClusterDetail:
    """Pods, rollout history, recent events and the last error of one cluster."""
    cluster = engine.config.cluster(cluster_id)
    last = engine.last_errors.get(cluster.id)
    try:
        driver = engine.driver(cluster.id)
        live = driver.live(timeout=engine.status_timeout)
        pods = driver.pods(live) if live.exists else []
        revisions = driver.revisions(live) if live.exists else []
        events = driver.events()
    except ClusterError as exc:
        return ClusterDetail(cluster.id, last_error=exc.reason)
    except UserError as exc:
        return ClusterDetail(cluster.id, last_error=str(exc))
    return ClusterDetail(cluster.id, tuple(pod_info(p, engine.config.app.name) for p in pods),
                         tuple(revisions), tuple(event_info(e) for e in events), last)


def lease_holders(engine: Engine, cluster_ids: Sequence[str]) -> dict[str, Holder | None]:
    """Who holds the app's release lock on each cluster (None: free, expired, or
    unreadable), read concurrently with the status timeout."""
    def one(cid: str) -> Holder | None:
        try:
            driver = engine.driver(cid)
            lease = ClusterLease(driver.client, cid, driver.namespace,
                                 engine.config.app.name, "(reader)",
                                 timeout=engine.status_timeout)
            return lease.holder()
        except (ClusterError, UserError):
            return None

    ids = list(cluster_ids)
    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(ids)),
                            thread_name_prefix="lease-read") as pool:
        return dict(zip(ids, pool.map(one, ids)))


def reconcile_unfinished(engine: Engine, ledger: Any) -> list[Any]:
    """Close the releases a stopped console left open in `ledger` with what the clusters
    really run; returns them, closed. One whose lease is still held runs elsewhere: left
    alone."""
    closed = []
    for release in ledger.unfinished():
        holders = lease_holders(engine, release.targets)
        if any(h is not None and h.identity.endswith(f"/{release.id}")
               for h in holders.values()):
            continue
        live = {s.cluster: s.version for s in status(engine, release.targets) if s.reachable}
        ledger.reconcile(release.id, live)
        closed.extend(ledger.releases(ids={release.id}))
    return closed


def pod_info(pod: dict[str, Any], app: str) -> PodInfo:
    """One pod object as the detail view shows it."""
    from console.kube.rollout import pod_problems, pod_ready
    meta = pod.get("metadata") or {}
    status_ = pod.get("status") or {}
    statuses = status_.get("containerStatuses") or []
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
    phase = "Terminating" if meta.get("deletionTimestamp") else status_.get("phase", "")
    return PodInfo(meta.get("name", ""), phase, pod_ready(pod), restarts, reason, image)


def event_info(event: dict[str, Any]) -> EventInfo:
    """One Kubernetes event (core/v1 or events.k8s.io/v1) as the timeline shows it."""
    involved = event.get("involvedObject") or event.get("regarding") or {}
    when = event.get("lastTimestamp") or event.get("eventTime") or \
        (event.get("metadata") or {}).get("creationTimestamp") or ""
    return EventInfo(str(when), event.get("type", ""), event.get("reason", ""),
                     f"{involved.get('kind', '')}/{involved.get('name', '')}".strip("/"),
                     event.get("message") or event.get("note") or "")

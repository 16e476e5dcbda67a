"""The simulated app's request metrics, per cluster, in the Prometheus text format.

`GET /_sim/app-metrics` on a cluster's port (no token, as an app's /metrics is scraped)
answers `http_requests_total{cluster, code}` counters: every Ready, running pod of the
cluster serves `RATE` requests a second; a pod whose image tag matches the cluster's
`bad_metrics` globs answers `BAD_SHARE` of them with 500. The counters grow with the
cluster's clock between scrapes (`SimClock`: real time, which a Prometheus measures
rates against; a `ManualClock` only as far as it is advanced, like every other time the
cluster keeps), so a release of
such a tag is healthy to Kubernetes and bad by its error rate - what a metric gate is for.
"""

from __future__ import annotations

from typing import Any

from console.sim import faults

APP_METRICS = "/_sim/app-metrics"
RATE = 10.0        # requests a second per Ready pod
BAD_SHARE = 0.5    # of them answered 500 by a pod running a bad_metrics tag


def _ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def app_metrics(cluster: Any) -> str:
    """The counters of `cluster`, brought up to now (called on the fleet's loop)."""
    now = cluster.clock.time()
    state = cluster.__dict__.setdefault("_app_metrics", {"at": now, "200": 0.0, "500": 0.0})
    elapsed, state["at"] = max(0.0, now - state["at"]), now
    globs = cluster.settings.bad_metrics
    for pod in cluster.store.list("/pods"):
        if not _ready(pod):
            continue
        images = [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or ()]
        share = BAD_SHARE if globs and any(faults.matches(i, globs) for i in images) else 0.0
        state["500"] += RATE * elapsed * share
        state["200"] += RATE * elapsed * (1 - share)
    lines = ["# HELP http_requests_total Requests the app answered, by status code.",
             "# TYPE http_requests_total counter"]
    for code in ("200", "500"):
        lines.append(f'http_requests_total{{cluster="{cluster.id}",code="{code}"}} '
                     f"{int(state[code])}")
    return "\n".join(lines) + "\n"

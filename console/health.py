"""Metric gates: a baking wave's clusters must hold the fleet file's `health:` checks.

`evaluate(health, cluster)` asks Prometheus (`GET /api/v1/query`, httpx, the configured
timeout) for each check's query with `${cluster}` filled, and says why the cluster fails:
a value above `max` or below `min` (the message names the check, the query, the value
and the threshold), or a check that could not be evaluated - Prometheus unreachable, an
error answer, a result that is not one number. An unreachable Prometheus is a failed
check, never a pass. A query that has no data yet (an empty vector, NaN: too few
samples) is not a breach by itself; it is asked again at the next interval - but every
check must give one real value during the bake (`evaluate` adds the checks that did to
`seen`, and `no_data` names the first that never did): a check with no data at the end
of the bake fails the cluster, so a misspelt metric never passes a gate.
"""

from __future__ import annotations

import math
from typing import Any

from console.config import HealthCheck, HealthConfig


def query_value(health: HealthConfig, query: str) -> float | None:
    """The one number `query` gives now (None: no data yet); raises `ValueError` naming
    what went wrong when it cannot be evaluated."""
    # Imported here: httpx (and what it pulls in) costs every engine start ~0.15 s of
    # CPU, and only a fleet with health checks ever asks Prometheus.
    import httpx

    try:
        answer = httpx.get(f"{health.url}/api/v1/query", params={"query": query},
                           timeout=health.timeout)
    except httpx.TimeoutException:
        raise ValueError(f"Prometheus {health.url} did not answer within "
                         f"{health.timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise ValueError(f"Prometheus {health.url} is unreachable "
                         f"({type(exc).__name__})") from None
    try:
        body: Any = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or not isinstance(body, dict) or \
            body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ValueError(f"Prometheus answered {answer.status_code}"
                         + (f": {error}" if error else ""))
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        raw = result[1] if len(result) == 2 else None
    elif data.get("resultType") == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"the query gives {len(result)} series, not one number "
                             "(aggregate it, e.g. with sum())")
        raw = (result[0].get("value") or [None, None])[1]
    else:
        raise ValueError(f"the query gives a {data.get('resultType')}, not one number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"the query gives {raw!r}, not a number") from None
    return None if math.isnan(value) else value


def breach(check: HealthCheck, cluster: str, value: float | None) -> str | None:
    """Why `value` breaks `check` (None: it holds, or there is no data yet)."""
    if value is None:
        return None
    query = fill(check.query, cluster)
    if check.max is not None and value > check.max:
        return f"metric check {check.name}: {query} = {value:g}, above max {check.max:g}"
    if check.min is not None and value < check.min:
        return f"metric check {check.name}: {query} = {value:g}, below min {check.min:g}"
    return None


def fill(query: str, cluster: str) -> str:
    """The query for one cluster."""
    return query.replace("${cluster}", cluster)


def evaluate(health: HealthConfig, cluster: str, seen: set[str] | None = None) -> str | None:
    """The first check `cluster` breaks, or cannot be evaluated for, now (None: all hold
    or have no data yet). The names of the checks that gave a value are added to `seen`."""
    for check in health.checks:
        query = fill(check.query, cluster)
        try:
            value = query_value(health, query)
        except ValueError as exc:
            return f"metric check {check.name} could not be evaluated ({query}): {exc}"
        if value is not None and seen is not None:
            seen.add(check.name)
        found = breach(check, cluster, value)
        if found is not None:
            return found
    return None


def no_data(health: HealthConfig, cluster: str, seen: set[str]) -> str | None:
    """Why the bake of `cluster` cannot pass: the first check that gave no value at all
    (None: every check gave one)."""
    for check in health.checks:
        if check.name not in seen:
            return (f"metric check {check.name}: no data during the bake "
                    f"({fill(check.query, cluster)} gave no value)")
    return None

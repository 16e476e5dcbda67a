"""The `health:` section: metric gates that a wave's bake must hold.

    health:
      prometheus: {url: http://127.0.0.1:9090, timeout: 5s}
      interval: 5s            # between evaluations of each check during a bake
      checks:
        - name: error-rate
          query: 'sum(rate(http_requests_total{cluster="${cluster}",code=~"5.."}[1m])) / ...'
          max: 0.01           # and/or min:

`${cluster}` in a query is the cluster id (the only placeholder). The checks run during
every bake (`bake:` of a strategy or wave, `deploy --bake`), per cluster of the wave.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

from console.config.checks import Checker
from console.config.model import HealthCheck, HealthConfig
from console.config.yaml_reader import Path_
from console.names import show

_KEYS = ("prometheus", "interval", "checks")
_PROMETHEUS_KEYS = ("url", "timeout")
_CHECK_KEYS = ("name", "query", "max", "min")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def health_section(ck: Checker, raw: Any) -> HealthConfig | None:
    """The checked `health:` mapping, or None when the file has none."""
    if raw is None:
        return None
    p: Path_ = ("health",)
    raw = ck.mapping(raw, p, _KEYS, required=("prometheus", "checks"))
    pp: Path_ = (*p, "prometheus")
    prom = ck.mapping(raw["prometheus"], pp, _PROMETHEUS_KEYS, required=("url",))
    url = ck.text(prom["url"], (*pp, "url"), what="a Prometheus URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ck.fail((*pp, "url"), f"{show(url)} is not an http(s) URL")
    timeout = ck.duration(prom.get("timeout"), (*pp, "timeout"), 5.0)
    interval = ck.duration(raw.get("interval"), (*p, "interval"), 5.0)
    checks_raw = raw["checks"]
    if not isinstance(checks_raw, list) or not checks_raw:
        raise ck.fail((*p, "checks"), "expected a list of checks (name, query, max/min)")
    checks: list[HealthCheck] = []
    for i, item in enumerate(checks_raw):
        cp: Path_ = (*p, "checks", i)
        item = ck.mapping(item, cp, _CHECK_KEYS, required=("name", "query"))
        name = ck.text(item["name"], (*cp, "name"))
        if name in {c.name for c in checks}:
            raise ck.fail((*cp, "name"), f"check {name!r} is named twice")
        query = ck.text(item["query"], (*cp, "query"), what="a PromQL query")
        for m in _PLACEHOLDER.finditer(query):
            if m.group(1) != "cluster":
                raise ck.fail((*cp, "query"), f"unknown placeholder ${{{m.group(1)}}}; "
                              "a query knows ${cluster} only")
        bounds = {k: _number(ck, item.get(k), (*cp, k)) for k in ("max", "min")}
        if bounds["max"] is None and bounds["min"] is None:
            raise ck.fail(cp, "a check needs max, min or both")
        checks.append(HealthCheck(name, query, bounds["max"], bounds["min"]))
    return HealthConfig(url.rstrip("/"), timeout, interval, tuple(checks))


def _number(ck: Checker, value: Any, path: Path_) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise ck.fail(path, f"expected a number, got {show(value)}")
    return float(value)

"""Per-cluster behaviour and faults of the simulated fleet.

Settings come from the fleet file's `sim:` blocks (unknown keys are ignored, so the file
can carry keys for newer versions; a bad value is an error naming the cluster and key),
from `SimFleet(...)` keyword arguments and `release-console sim --readiness-delay/--jitter`,
and can be changed while running with `SimFleet.set_faults(cluster_id, **settings)` or the
admin endpoint on the cluster's own port (full-rights token):

    curl --cacert DIR/ca.crt -H "Authorization: Bearer $TOKEN" -X POST \
         -d '{"error_rate": 0.3}' https://127.0.0.1:PORT/_sim/faults
    GET /_sim/counters        requests by verb and resource, injected errors

Fleet-wide (`sim:` at the top level of clusters.yaml; every key but registry_missing is
also the default for each cluster):

    readiness_delay: 1.0      seconds from pod creation to Ready
    jitter: 1.0               plus a random 0..jitter seconds per pod
    never_pull: ["*broken*"]  image tag globs that never pull (ErrImagePull/ImagePullBackOff)
    crash: ["*crash*"]        image tag globs whose containers crash (CrashLoopBackOff);
                              set later with set_faults, pods already running such an
                              image start crashing too (a crash after Ready)
    registry_missing: [...]   tag globs the demo registry reports as missing (fleet only)
    hold_ready: ["v2"]        image tag globs whose pods run but stay not Ready until the
                              setting no longer matches them (set_faults): a rollout held
                              for exactly as long as a test needs, not for a guessed time

Per cluster (`sim:` in a cluster entry), any of the above but registry_missing, plus:

    error_rate: 0.1           share of API requests answered 500 or 429 (Retry-After)
    error_codes: [500, 429]   which codes error_rate picks from (at random)
    retry_after: 1            seconds announced in Retry-After on 429
    latency: 0.2              seconds added to every API request; [0.1, 0.5] = random range
    unreachable: true         the port is closed from the start (connection refused)
    die_at: 30                seconds after start when the cluster dies (port closed,
                              watches dropped, a request on a kept-alive connection
                              answered by a reset: `SimFleet.kill`)
    revive_after: 20          seconds after dying when it comes back, state intact
    drop_reused: 1            the next N requests that arrive on a kept-alive connection
                              (one that served a request before) are dropped unanswered,
                              the connection reset: a server whose idle timeout closes
                              the connection just as the client sends on it (the request
                              is not served; counted as dropped_requests). See also
                              `SimFleet.close_idle` (idle connections closed cleanly)
    lag_generation: 2.0       seconds before the controller observes a new generation
    nodes: 3                  number of nodes; node_cpu: "4", node_memory: "16Gi" each
    bookmark_interval: 60     seconds between BOOKMARK events on quiet watches that allow them
    self_review: false        no SelfSubjectReview API (404), as an API server before
                              Kubernetes 1.28: the cluster cannot say who a token is
    bad_answer: ["v2"]        image tag globs: a write (POST/PUT/PATCH, not a dry run) whose
                              stored object runs such a tag is done, but answered 200 with
                              bad_answer_body
    bad_metrics: ["*slow*"]   image tag globs whose pods answer half their (simulated)
                              requests with 500: healthy to Kubernetes, bad by metrics
                              (GET /_sim/app-metrics, no token: http_requests_total per
                              cluster and code, 10 requests/s per Ready pod)
    bad_answer_body: "<html>" that body (default an HTML page, as a misbehaving proxy sends;
                              "[]" is JSON of the wrong shape)

Injected errors and latency apply to resource requests (not to /version, discovery or
OpenAPI, which kubectl caches), so flakiness hits the calls a release makes.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ClusterSettings:
    """The live settings of one cluster (mutated only on the fleet's loop thread)."""

    readiness_delay: float = 1.0
    jitter: float = 1.0
    never_pull: tuple[str, ...] = ()
    crash: tuple[str, ...] = ()
    hold_ready: tuple[str, ...] = ()
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 429)
    retry_after: int = 1
    latency: tuple[float, float] = (0.0, 0.0)
    unreachable: bool = False
    die_at: float | None = None
    revive_after: float | None = None
    drop_reused: int = 0
    lag_generation: float = 0.0
    nodes: int = 3
    node_cpu: str = "4"
    node_memory: str = "16Gi"
    bookmark_interval: float = 60.0
    bad_answer: tuple[str, ...] = ()
    self_review: bool = True
    bad_metrics: tuple[str, ...] = ()
    bad_answer_body: str = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    extra: dict[str, Any] = field(default_factory=dict)

    def update(self, values: Mapping[str, Any], *, strict: bool = True) -> None:
        """Set the given settings, converting types; unknown keys raise unless `strict=False`."""
        known = {f.name for f in fields(self)} - {"extra"}
        for key, value in values.items():
            if key not in known:
                if strict and key != "registry_missing":
                    raise TypeError(f"unknown simulator setting {key!r}")
                self.extra[key] = value
                continue
            try:
                converted = _convert(key, value)
            except (TypeError, ValueError, IndexError):
                raise ValueError(f"{key}: {value!r} is not a valid value") from None
            if key == "error_rate" and not 0 <= converted <= 1:
                raise ValueError(f"{key}: {value!r} must be between 0 and 1")
            setattr(self, key, converted)

    @property
    def random_faults(self) -> bool:
        """Whether requests meet faults decided at random (a seed makes them replay)."""
        rate = self.error_rate
        return (0 < rate < 1) or (rate > 0 and len(set(self.error_codes)) > 1) or \
            self.latency[1] > self.latency[0]

    def pick_latency(self, rng: random.Random) -> float:
        """Seconds to delay this request."""
        low, high = self.latency
        return low if high <= low else rng.uniform(low, high)

    def pick_error(self, rng: random.Random) -> int | None:
        """An HTTP status to fail this request with, or None."""
        if self.error_rate > 0 and rng.random() < self.error_rate and self.error_codes:
            return rng.choice(self.error_codes)
        return None


def _globs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _convert(key: str, value: Any) -> Any:
    if key in ("never_pull", "crash", "bad_answer", "bad_metrics", "hold_ready"):
        return _globs(value)
    if key == "error_codes":
        return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if key == "latency":
        if isinstance(value, (list, tuple)):
            low, high = (float(value[0]), float(value[-1]))
            return (low, high)
        return (float(value or 0), float(value or 0))
    if key in ("die_at", "revive_after"):
        return None if value is None else float(value)
    if key in ("readiness_delay", "jitter", "error_rate", "lag_generation", "bookmark_interval"):
        return float(value)
    if key in ("retry_after", "nodes", "drop_reused"):
        return int(value)
    if key in ("unreachable", "self_review"):
        return bool(value)
    return str(value)


def runs_matching(obj: Any, globs: Iterable[str]) -> bool:
    """Whether a pod or pod-template owner (`obj`, a decoded answer) runs an image whose tag
    matches one of the globs."""
    if not globs or not isinstance(obj, dict):
        return False
    spec = obj.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or spec
    return any(matches(str(c.get("image", "")), globs)
               for c in pod_spec.get("containers") or () if isinstance(c, dict))


def tag_of(image: str) -> str:
    """The tag of an image reference ("" when it has none)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def matches(image_or_tag: str, globs: Iterable[str]) -> bool:
    """Whether an image's tag (or the reference itself) matches one of the globs."""
    tag = tag_of(image_or_tag) if ("/" in image_or_tag or ":" in image_or_tag) else image_or_tag
    return any(fnmatch.fnmatchcase(tag, g) or fnmatch.fnmatchcase(image_or_tag, g) for g in globs)

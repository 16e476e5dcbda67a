"""The control channel's wire: requests, acknowledgements and live state as annotations
of the release Lease.

A steerable release (`deploy`, or one started in the console; see
`console.engine.steering`) listens on one of the
Leases it holds - its *control lease*, the lease on the first of its clusters in
sorted order, or the next one when that cluster stops answering - and keeps three
annotations there:

- `release-console/steering`: JSON `{"release", "paused", "bake", "gate", "moves"}` -
  that the release listens, and its live state for followers (`bake`: the wave baking,
  when its bake ends and whether a gate follows it; `gate`: the wave waiting for
  approval, its clusters, the approvals it needs and who gave them; `moves`: how often
  the channel moved to another lease - an announcement left on a lease whose cluster
  was down has fewer, and the asking end takes the highest);
- `release-console/control`: JSON list of requests `{"id", "release", "action", "cluster", "by",
  "operator", "confirmed", "rollback", "gate", "at"}` appended by `release-console control` (the newest
  `KEEP` are kept);
- `release-console/control-ack`: JSON object request id -> `{"ok", "detail", "refused"}`,
  written by the release when it took (or refused) a request.

The other Leases the release holds carry `release-console/control` too: the asking
console appends each request there first, as the proof the release checks that the
requester may update the app's Lease on every cluster of the release.

Every change is a read and a replace at the read `resourceVersion` (a 409 reads again),
so writers never lose each other's requests, and the lease's renewals (which replace
the object as read) carry the annotations on. Annotation changes do not touch the lease
record (`holderIdentity`, `renewTime`, ...) that other consoles judge expiry by.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from console.kube.client import ClusterError, KubeClient
from console.locks.lease import LEASES

STEERING = "release-console/steering"
CONTROL = "release-console/control"
ACK = "release-console/control-ack"
KEEP = 32                     # requests and acknowledgements kept on the lease
ATTEMPTS = 8                  # read-replace rounds before a 409 storm gives up

ACTIONS = ("pause", "resume", "abort", "approve", "reject", "skip", "retry")
NEEDS_CLUSTER = ("skip", "retry")


class ChannelError(Exception):
    """The lease could not be read or changed (the message is safe to show)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def lease_path(namespace: str, name: str) -> str:
    """The API path of one Lease."""
    return f"{LEASES.format(namespace=namespace)}/{name}"


def annotations(lease: Mapping[str, Any] | None) -> dict[str, str]:
    """The lease's annotations (empty for None)."""
    return dict(((lease or {}).get("metadata") or {}).get("annotations") or {})


def decoded(lease: Mapping[str, Any] | None, key: str, default: Any) -> Any:
    """One JSON annotation of the lease, `default` when absent or not JSON."""
    text = annotations(lease).get(key)
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def read(kube: KubeClient, namespace: str, name: str,
         timeout: float | None = None) -> dict[str, Any] | None:
    """The Lease object, None when absent; raises `ChannelError`."""
    try:
        return kube.request("GET", lease_path(namespace, name), timeout=timeout)
    except ClusterError as exc:
        if exc.status == 404:
            return None
        raise ChannelError(_why(exc, namespace, name, "read"), exc.status) from None


def change(kube: KubeClient, namespace: str, name: str,
           edit: Callable[[dict[str, Any], dict[str, str]], bool],
           timeout: float | None = None,
           current: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Read the lease, let `edit(lease, annotations)` change the annotations in place
    (returning False: nothing to write), replace it at the read version; a 409 reads
    again. `current`: the lease as this process last wrote or saw it, tried first
    instead of a read (a version changed since is a 409, and the lease is read). Returns
    the lease as written (or as read when nothing was written), None when there is no
    lease."""
    for _ in range(ATTEMPTS):
        if current is not None:
            lease: dict[str, Any] | None = dict(current)
            current = None
        else:
            lease = read(kube, namespace, name, timeout)
        if lease is None:
            return None
        notes = annotations(lease)
        if not edit(lease, notes):
            return lease
        body = dict(lease)
        body["metadata"] = {**(lease.get("metadata") or {}), "annotations": notes}
        try:
            return kube.request("PUT", lease_path(namespace, name), body=body,
                                timeout=timeout)
        except ClusterError as exc:
            if exc.status == 409:
                continue   # changed since we read it (a renewal, another request)
            if exc.status == 404:
                return None
            raise ChannelError(_why(exc, namespace, name, "update"), exc.status) from None
    raise ChannelError(f"lease {name} in namespace {namespace} kept changing while "
                       "writing to it; try again", 409)


def dump(value: Any) -> str:
    """Compact JSON for an annotation."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _why(exc: ClusterError, namespace: str, name: str, what: str) -> str:
    if exc.status == 403:
        return (f"not allowed to {what} lease {name} in namespace {namespace} (403): "
                "steering a release needs the app's own rights there (get and update on "
                "leases, coordination.k8s.io)")
    return f"cannot {what} lease {name} in namespace {namespace}: {exc.reason}"

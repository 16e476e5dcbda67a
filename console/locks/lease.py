"""One cluster's release lease: take it, renew it, give it back, and judge its holder.

See the package docstring (`console.locks`) for the protocol; this module holds the
`Lease` calls (through the cluster's `KubeClient`) and the rules: a fresh-looking
holder refuses at once, a stale-looking one is watched for its duration on this
machine's monotonic clock, a surely dead one (same boot and pid namespace, process gone)
is taken over at once.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from console.errors import UserError
from console.kube.client import ClusterError, KubeClient
from console.locks.process import ProcessId, surely_gone, this_process

log = logging.getLogger(__name__)

DEFAULT_DURATION = 60        # s a lease lives without renewal
DEFAULT_TIMEOUT = 10.0       # s per API call
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
PROCESS_ANNOTATION = "release-console/holder-process"


class LockError(UserError):
    """The lease could not be taken or checked (unreachable, forbidden, no namespace)."""

    def __init__(self, cluster: str, message: str, status: int | None = None) -> None:
        super().__init__(f"cluster {cluster!r}: {message}")
        self.cluster = cluster
        self.status = status


class LockHeld(LockError):
    """Another release holds the lease: the message names the holder and the expiry."""

    def __init__(self, cluster: str, holder: Holder) -> None:
        expires = _clock(holder.expires) if holder.expires else "unknown"
        renewed = _clock(holder.renewed) if holder.renewed else "never"
        super().__init__(cluster, f"{holder.app} is being released by {holder.identity} "
                         f"(lease {holder.name} in namespace {holder.namespace}, renewed "
                         f"{renewed}, expires {expires} unless renewed); try again after it "
                         "ends or expires", 409)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as read from the cluster (times by the holder's clock)."""

    identity: str
    app: str
    name: str
    namespace: str
    renewed: datetime | None
    expires: datetime | None


class Clock:
    """The time a lease is judged by; tests pass one they drive."""

    def monotonic(self) -> float:
        """Seconds on this machine's monotonic clock."""
        return time.monotonic()

    def now(self) -> datetime:
        """The wall clock, for the times written into the lease (and read by people)."""
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        """Wait (while watching a stale lease)."""
        time.sleep(seconds)


def lease_name(app: str) -> str:
    """The Lease of `app`: `release-console-<app>`."""
    return f"release-console-{app}"


def holder_identity(release_id: str, user: str | None = None) -> str:
    """`user@host:pid/release-id` (user: `user`, else $USER, else the login name)."""
    if not user:
        try:
            user = os.environ.get("USER") or getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    me = this_process()
    return f"{user}@{me.host}:{me.pid}/{release_id}"


def _spec(lease: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (lease or {}).get("spec") or {}


class ClusterLease:
    """The release lease of one app on one cluster."""

    def __init__(self, kube: KubeClient | Any, cluster: str, namespace: str, app: str,
                 identity: str, *, duration: int = DEFAULT_DURATION,
                 timeout: float = DEFAULT_TIMEOUT, clock: Clock | None = None,
                 process: ProcessId | None = None) -> None:
        """`kube`: that cluster's `KubeClient` (a bare `kubernetes.client.ApiClient` is
        wrapped in one); `process`: the holder process written with the lease."""
        self.kube = kube if isinstance(kube, KubeClient) else KubeClient(cluster, kube, timeout)
        self.cluster = cluster
        self.namespace = namespace
        self.app = app
        self.name = lease_name(app)
        self.identity = identity
        self.duration = int(duration)
        self.timeout = timeout
        self.clock = clock or Clock()
        self.process = process or this_process()
        self._lease: dict[str, Any] | None = None   # the last version we wrote or read
        self.renewed_at = 0.0                        # monotonic time of our last write
        # The client-go way: the record last seen and when (monotonic) it last changed.
        self._seen: tuple[Any, ...] | None = None
        self._seen_at: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(API server, namespace, lease name): the same lease, whoever's client reads it."""
        return str(self.kube.server or self.cluster), self.namespace, self.name

    # -- the protocol -------------------------------------------------------------------

    def acquire(self, current: dict[str, Any] | None = None, *, read: bool = True) -> None:
        """Take the lease, or raise LockHeld (a live holder) / LockError.

        A lease that looks stale is watched until it changes (refused) or stays unchanged
        for its duration (taken over). `current` with `read=False`: the lease as just
        read (None: absent), to save a read.
        """
        if read:
            current = self.read()
        watching = False
        while True:
            if current is None:
                status, body = self._call("POST", self._collection(), self._body(None))
                if status == 409:       # created by someone else in between
                    return self._lost_race()
                break
            holder = str(_spec(current).get("holderIdentity") or "")
            if holder and holder != self.identity and not self._takeable(current):
                if self._looks_fresh(current):
                    raise LockHeld(self.cluster, self._holder(current))
                # Looks stale by its clock: find out by watching it (the holder's clock may
                # be behind ours; a live holder renews within half of the duration).
                if not watching:
                    watching = True
                    log.warning("cluster %s: lease %s of %s looks stale by its own clock; "
                                "watching it up to %.0f s before taking it over",
                                self.cluster, self.name, holder,
                                self._lease_duration(current) - self._unchanged_for())
                self.clock.sleep(self._poll_interval(current))
                before = self._seen
                current = self.read()
                other = str(_spec(current).get("holderIdentity") or "")
                if self._seen != before and other and other != self.identity:
                    raise LockHeld(self.cluster, self._holder(current or {}))
                continue
            status, body = self._call("PUT", self._item(), self._body(current))
            if status == 409:       # changed since we read it: whoever changed it won
                return self._lost_race()
            break
        self._expect(status, body, "create" if current is None else "take over")
        self._won(body)

    def renew(self, timeout: float | None = None) -> bool:
        """Extend the lease; False when another holder took it. Raises LockError when the
        cluster could not be asked (the lease may well still be ours)."""
        if self._lease is None:
            return False
        status, body = self._call("PUT", self._item(), self._body(self._lease, renew=True),
                                  timeout)
        if status == 409:
            current = self.read(timeout)
            if current is None or _spec(current).get("holderIdentity") != self.identity:
                self._lease = current
                return False
            status, body = self._call("PUT", self._item(), self._body(current, renew=True),
                                      timeout)
            if status == 409:   # changed again between our read and write: look once more
                current = self.read(timeout)
                if current is None or _spec(current).get("holderIdentity") != self.identity:
                    self._lease = current
                    return False
                return True     # still ours; the next round renews it
        self._expect(status, body, "renew")
        self._won(body)
        return True

    def release(self) -> None:
        """Give the lease up (clear the holder) if it is still ours; raises LockError."""
        # Written over the version we last wrote (no read first): a 409 means it changed
        # meanwhile (taken over, or a late renewal of ours): read it and look again.
        current = self._lease
        for _ in range(3):
            if current is None or _spec(current).get("holderIdentity") != self.identity:
                break
            body = self._body(current, renew=True)
            body["spec"].pop("holderIdentity", None)
            body["metadata"]["annotations"].pop(PROCESS_ANNOTATION, None)
            status, answer = self._call("PUT", self._item(), body)
            if status == 404 and (answer.get("details") or {}).get("kind") != "namespaces":
                break       # gone already: nothing to give back
            if status != 409:
                self._expect(status, answer, "release")
                break
            current = self.read()
        self._lease = None

    def saw(self, lease: Mapping[str, Any] | None) -> None:
        """The lease as another part of this process just read or wrote it (the control
        channel keeps its annotations on it): while it is ours, the next renewal and the
        give-back write over that version. Over the version they wrote last, which the
        channel's change made stale, each cost a 409, a read and a second write."""
        if lease is None or self._lease is None or \
                _spec(lease).get("holderIdentity") != self.identity:
            return      # not held, or not ours (any more): the renewal finds out itself
        # An older version seen after a newer write is a 409 and a read, as before.
        self._lease = dict(lease)

    def read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The Lease object, or None when there is none; notes when its record changed."""
        status, body = self._call("GET", self._item(), None, timeout)
        if status == 404 and (body.get("details") or {}).get("kind") != "namespaces":
            self._observe(None)
            return None
        self._expect(status, body, "read")
        self._observe(body)
        return body

    def holder(self) -> Holder | None:
        """Who holds the lease now (None when free, absent, surely dead or, by the
        holder's own renewTime, expired). One read cannot observe expiry, so this is the
        holder's own word - for display and reconcile, never for a takeover."""
        current = self.read()
        if current is None:
            return None
        if not _spec(current).get("holderIdentity") or self._surely_dead(current) or \
                not self._looks_fresh(current):
            return None
        return self._holder(current)

    @property
    def held(self) -> dict[str, Any] | None:
        """The lease as we last wrote or saw it while it is ours (None: not held)."""
        return self._lease if self.holder_now == self.identity else None

    @property
    def holder_now(self) -> str:
        """The holder identity in the last version read or written ("" when free)."""
        return str(_spec(self._lease).get("holderIdentity") or "")

    # -- judging a holder ---------------------------------------------------------------

    def _observe(self, lease: Mapping[str, Any] | None) -> None:
        spec = _spec(lease)
        record = None if lease is None else tuple(
            spec.get(k) for k in ("holderIdentity", "leaseDurationSeconds", "acquireTime",
                                  "renewTime", "leaseTransitions"))
        if record != self._seen or self._seen_at is None:
            self._seen, self._seen_at = record, self.clock.monotonic()

    def _lease_duration(self, lease: Mapping[str, Any]) -> float:
        return float(_spec(lease).get("leaseDurationSeconds") or self.duration)

    def _takeable(self, lease: Mapping[str, Any]) -> bool:
        """Surely dead, or unchanged for its whole duration as observed here."""
        if self._surely_dead(lease):
            return True
        return self._unchanged_for() >= self._lease_duration(lease)

    def _unchanged_for(self) -> float:
        """Seconds since the record last changed, as observed here."""
        if self._seen_at is None:
            return 0.0
        return self.clock.monotonic() - self._seen_at

    def _surely_dead(self, lease: Mapping[str, Any]) -> bool:
        annotations = ((lease.get("metadata") or {}).get("annotations") or {})
        process = ProcessId.from_text(annotations.get(PROCESS_ANNOTATION, ""))
        return process is not None and surely_gone(process, self.process)

    def _looks_fresh(self, lease: Mapping[str, Any]) -> bool:
        """Whether the holder's renewTime says it is alive. Trusted only to refuse: a
        renewTime further ahead than one duration is a clock gone wrong, not a proof."""
        renewed = parse_time(_spec(lease).get("renewTime") or _spec(lease).get("acquireTime"))
        if renewed is None:
            return False
        span = timedelta(seconds=self._lease_duration(lease))
        now = self.clock.now()
        return now < renewed + span and renewed <= now + span

    def _poll_interval(self, lease: Mapping[str, Any]) -> float:
        remaining = self._lease_duration(lease) - self._unchanged_for()
        return max(0.05, min(max(0.2, self._lease_duration(lease) / 6), 5.0, remaining))

    # -- helpers ------------------------------------------------------------------------

    def _won(self, body: dict[str, Any]) -> None:
        self._lease = body
        self.renewed_at = self.clock.monotonic()
        self._observe(body)

    def _lost_race(self) -> None:
        current = self.read()
        if current is not None and _spec(current).get("holderIdentity") == self.identity:
            # Our own earlier attempt went through (a retried call): the lease is ours.
            return self._won(current)
        if current is None:
            raise LockError(self.cluster, f"lease {self.name} changed while taking it; "
                            "try again", 409)
        raise LockHeld(self.cluster, self._holder(current))

    def _body(self, current: Mapping[str, Any] | None, renew: bool = False) -> dict[str, Any]:
        now = _micro(self.clock.now())
        spec = dict(_spec(current))
        old_meta = (current or {}).get("metadata") or {}
        annotations = dict(old_meta.get("annotations") or {})
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": {"app.kubernetes.io/managed-by": "release-console",
                                           "app.kubernetes.io/name": self.app}}
        if current is not None:
            meta["resourceVersion"] = old_meta.get("resourceVersion")
        if not renew:
            if spec.get("holderIdentity") != self.identity:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + \
                    (1 if current is not None else 0)
                spec["acquireTime"] = now
            spec["holderIdentity"] = self.identity
            annotations[PROCESS_ANNOTATION] = self.process.to_text()
        meta["annotations"] = annotations
        spec["leaseDurationSeconds"] = self.duration
        spec["renewTime"] = now
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": spec}

    def _holder(self, lease: Mapping[str, Any]) -> Holder:
        spec = _spec(lease)
        renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
        expires = renewed + timedelta(seconds=self._lease_duration(lease)) if renewed else None
        return Holder(identity=str(spec.get("holderIdentity") or "?"), app=self.app,
                      name=self.name, namespace=self.namespace, renewed=renewed,
                      expires=expires)

    def _collection(self) -> str:
        return LEASES.format(namespace=self.namespace)

    def _item(self) -> str:
        return f"{self._collection()}/{self.name}"

    def _expect(self, status: int, body: Mapping[str, Any], what: str) -> None:
        if 200 <= status < 300:
            return
        message = str(body.get("message") or "") if isinstance(body, Mapping) else ""
        if status == 404 and (body.get("details") or {}).get("kind") == "namespaces":
            raise LockError(self.cluster, f"namespace {self.namespace!r} does not exist: "
                            "the release lock lives there", 404)
        if status == 403:
            raise LockError(self.cluster, f"not allowed to {what} lease {self.name} in "
                            f"namespace {self.namespace} (403): the credentials need get, "
                            "create and update on leases (coordination.k8s.io)", 403)
        raise LockError(self.cluster, f"cannot {what} the release lock "
                        f"(lease {self.name}): API error {status}: {message}".rstrip(": "),
                        status)

    def _call(self, method: str, path: str, body: Any,
              timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """One call through the cluster's client: (HTTP status, decoded body). 404 and 409
        are answers here; every other failure is a LockError."""
        try:
            # Every lease call is safe to repeat: a create or replace that went through
            # before its answer was lost comes back as 409, and `_lost_race` finds it ours.
            return 200, self.kube.request(method, path, body=body,
                                          timeout=timeout or self.timeout)
        except ClusterError as exc:
            if exc.status in (404, 409):
                return exc.status, {"message": exc.reason, "details": dict(exc.details)}
            if exc.status:
                return exc.status, {"message": exc.reason.split(": ", 1)[-1]}
            raise LockError(self.cluster, f"cannot check the release lock: {exc.reason}",
                            exc.status) from None


def _micro(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with exactly six fraction digits, UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime | None:
    """A Lease's MicroTime as an aware datetime (None: absent or unreadable)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _clock(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S UTC")

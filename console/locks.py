"""Release locks: one Kubernetes `Lease` per app and cluster, so two consoles never overlap.

A release takes, on every target cluster, the Lease `release-console-<app>` in the app's
namespace there (coordination.k8s.io/v1), with the holder identity
`user@host:pid/release-id`. Taking it uses optimistic concurrency: create it when
absent, or replace it at the `resourceVersion` read when it is free (no holder) or
expired (`renewTime + leaseDurationSeconds` has passed); a 409 means another console
won the race. A held lease refuses the release with `LockHeld` (a `UserError`, exit 2)
naming the holder and when the lease expires, before anything is touched.

While the release runs a background thread renews every lease (every third of the
lease duration); at the end the leases are released (the holder cleared). If the
console dies, the leases expire after their duration and the next release takes over -
at once when the holder ran on this host and its process is gone (a console killed
here: `user@host:pid` names a pid this host no longer runs).
Expiry compares the holder's `renewTime` with this machine's clock, as `kubectl` users
read it: clocks out of sync by more than a fraction of the duration (60 s by default)
make a takeover come early or late.

Using it (the engine, before the first cluster is touched)::

    lock = ReleaseLock.for_clusters({cid: (api_client, namespace), ...}, app, release_id)
    with lock:                 # acquire() on enter (all or nothing), release() on exit
        ...                    # lock.lost: clusters whose lease was lost (should stay empty)

`api_client` is that cluster's own `kubernetes.client.ApiClient` (for instance
`console.kube.client.new_api_client(...)`, or `KubeClient.api`); every call carries
`_request_timeout`, and 429/5xx and refused connections are retried a few times. The
lease lives in the app namespace, which must exist (the engine's
`driver.ensure_namespace()` first, on a cluster that never had the app); the
ServiceAccount needs get, create and update on `leases` (coordination.k8s.io) there.
A lost lease (`on_lost`) means another console may be releasing: stop the release.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from console.errors import UserError

DEFAULT_DURATION = 60        # s a lease lives without renewal
DEFAULT_TIMEOUT = 10.0       # s per API call
# Tries per call on 429/5xx/refused connections. More than an ordinary read gets: every
# lease call of a release must get through a flaky API (at 30% errors, 4 tries fail one
# call in 120; 6 tries one in 1,400), and the waits are capped (3.4 s in all).
ATTEMPTS = 6
MAX_BACKOFF = 1.0            # s between tries at most
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


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
                         f"{renewed}, expires {expires}); try again after it ends or expires",
                         409)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as read from the cluster."""

    identity: str
    app: str
    name: str
    namespace: str
    renewed: datetime | None
    expires: datetime | None


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
    return f"{user}@{socket.gethostname()}:{os.getpid()}/{release_id}"


class ClusterLease:
    """The release lease of one app on one cluster."""

    def __init__(self, api_client: Any, cluster: str, namespace: str, app: str,
                 identity: str, *, duration: int = DEFAULT_DURATION,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        """`api_client`: that cluster's `kubernetes.client.ApiClient`."""
        self.api = api_client
        self.cluster = cluster
        self.namespace = namespace
        self.app = app
        self.name = lease_name(app)
        self.identity = identity
        self.duration = int(duration)
        self.timeout = timeout
        self._lease: dict[str, Any] | None = None   # the last version we wrote or read
        self.renewed_at = 0.0                        # monotonic time of our last write

    @property
    def key(self) -> tuple[str, str, str]:
        """(API server, namespace, lease name): the same lease, whoever's client reads it."""
        host = str(getattr(getattr(self.api, "configuration", None), "host", "") or
                   self.cluster)
        return host, self.namespace, self.name

    # -- the protocol -------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease, or raise LockHeld (someone else holds it) / LockError."""
        current = self.read()
        if current is None:
            status, body = self._call("POST", self._collection(), self._body(None))
            if status == 409:       # created by someone else in between
                return self._lost_race()
            self._expect(status, body, "create")
        else:
            spec = current.get("spec") or {}
            holder = spec.get("holderIdentity")
            if holder and holder != self.identity and not self._expired(spec):
                raise LockHeld(self.cluster, self._holder(current))
            status, body = self._call("PUT", self._item(), self._body(current))
            if status == 409:       # changed since we read it: whoever changed it won
                return self._lost_race()
            self._expect(status, body, "take over")
        self._lease = body
        self.renewed_at = time.monotonic()

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (taken over after expiry)."""
        if self._lease is None:
            return False
        status, body = self._call("PUT", self._item(), self._body(self._lease, renew=True))
        if status == 409:
            current = self.read()
            if current is None or (current.get("spec") or {}).get("holderIdentity") != \
                    self.identity:
                self._lease = None
                return False
            status, body = self._call("PUT", self._item(), self._body(current, renew=True))
        self._expect(status, body, "renew")
        self._lease = body
        self.renewed_at = time.monotonic()
        return True

    def release(self) -> None:
        """Give the lease up (clear the holder) if it is still ours; raises LockError."""
        current = self.read()
        if current is None or (current.get("spec") or {}).get("holderIdentity") != \
                self.identity:
            self._lease = None
            return
        body = self._body(current, renew=True)
        body["spec"].pop("holderIdentity", None)
        status, answer = self._call("PUT", self._item(), body)
        if status != 409:   # 409: changed meanwhile (so no longer ours to clear)
            self._expect(status, answer, "release")
        self._lease = None

    def read(self) -> dict[str, Any] | None:
        """The Lease object, or None when there is none."""
        status, body = self._call("GET", self._item(), None)
        if status == 404:
            return None
        self._expect(status, body, "read")
        return body

    def holder(self) -> Holder | None:
        """Who holds the lease now (None when free, absent or expired)."""
        current = self.read()
        if current is None:
            return None
        spec = current.get("spec") or {}
        if not spec.get("holderIdentity") or self._expired(spec):
            return None
        return self._holder(current)

    # -- helpers ------------------------------------------------------------------------

    def _lost_race(self) -> None:
        current = self.read()
        if current is not None and (current.get("spec") or {}).get("holderIdentity") == \
                self.identity:
            # Our own earlier attempt went through (a retried call): the lease is ours.
            self._lease = current
            self.renewed_at = time.monotonic()
            return
        if current is None:
            raise LockError(self.cluster, f"lease {self.name} changed while taking it; "
                            "try again", 409)
        raise LockHeld(self.cluster, self._holder(current))

    def _body(self, current: Mapping[str, Any] | None, renew: bool = False) -> dict[str, Any]:
        now = _micro(datetime.now(timezone.utc))
        spec = dict((current or {}).get("spec") or {})
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": {"app.kubernetes.io/managed-by": "release-console",
                                           "app.kubernetes.io/name": self.app}}
        if current is not None:
            meta["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
        if not renew:
            if spec.get("holderIdentity") != self.identity:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + \
                    (1 if current is not None else 0)
                spec["acquireTime"] = now
            spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = self.duration
        spec["renewTime"] = now
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": spec}

    def _expired(self, spec: Mapping[str, Any]) -> bool:
        # A holder that never wrote a time cannot be shown alive: treat it as expired.
        expires = _expiry(spec)
        return expires is None or expires <= datetime.now(timezone.utc) or \
            _dead_here(str(spec.get("holderIdentity") or ""))

    def _holder(self, lease: Mapping[str, Any]) -> Holder:
        spec = lease.get("spec") or {}
        return Holder(identity=str(spec.get("holderIdentity") or "?"), app=self.app,
                      name=self.name, namespace=self.namespace,
                      renewed=_parse_time(spec.get("renewTime") or spec.get("acquireTime")),
                      expires=_expiry(spec))

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

    def _call(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """One API call with bounded retries: (HTTP status, decoded body)."""
        import urllib3
        from kubernetes.client.rest import ApiException

        from console.kube.client import describe

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _m, url, headers_out, payload, _p = self.api.param_serialize(
                    method=method, resource_path=path, header_params=dict(headers),
                    body=body, auth_settings=["BearerToken"])
                resp = self.api.call_api(method, url, header_params=headers_out, body=payload,
                                         _request_timeout=(min(5.0, self.timeout),
                                                           self.timeout))
                raw = resp.read()
                status = resp.status
            except ApiException as exc:
                if not exc.status and attempt < ATTEMPTS:   # a TLS handshake cut short
                    time.sleep(min(MAX_BACKOFF, 0.1 * 2 ** attempt))
                    continue
                raise LockError(self.cluster, describe(self.cluster, exc).reason,
                                exc.status) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                timed_out = isinstance(exc, urllib3.exceptions.TimeoutError)
                if attempt < ATTEMPTS and not timed_out:
                    time.sleep(min(MAX_BACKOFF, 0.1 * 2 ** attempt))
                    continue
                raise LockError(self.cluster, f"cannot check the release lock: "
                                f"{describe(self.cluster, exc).reason}") from None
            if status in RETRY_STATUSES and attempt < ATTEMPTS:
                time.sleep(min(MAX_BACKOFF, 0.1 * 2 ** attempt))
                continue
            try:
                decoded = json.loads(raw) if raw else {}
            except ValueError:
                decoded = {}
            return status, decoded if isinstance(decoded, dict) else {}
        raise AssertionError("unreachable")  # the loop always returns or raises


# Leases this process holds: (API server, namespace, lease) -> the thread that took them.
_HELD: dict[tuple[str, str, str], int] = {}
_HELD_LOCK = threading.Lock()


class ReleaseLock:
    """The leases of one release on all its clusters, renewed in the background."""

    def __init__(self, leases: Sequence[ClusterLease], *,
                 on_lost: Callable[[str, str], None] | None = None) -> None:
        """`on_lost(cluster, reason)` is called (from the renewer) when a lease is lost."""
        self.leases = sorted(leases, key=lambda lease: lease.cluster)
        self.on_lost = on_lost
        self.lost: dict[str, str] = {}
        self._held: list[ClusterLease] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_clusters(cls, clients: Mapping[str, tuple[Any, str]], app: str, release_id: str,
                     *, user: str | None = None, duration: int = DEFAULT_DURATION,
                     timeout: float = DEFAULT_TIMEOUT,
                     on_lost: Callable[[str, str], None] | None = None) -> ReleaseLock:
        """One lease per cluster: `clients` maps cluster id -> (ApiClient, namespace)."""
        identity = holder_identity(release_id, user)
        return cls([ClusterLease(api, cluster, namespace, app, identity, duration=duration,
                                 timeout=timeout)
                    for cluster, (api, namespace) in clients.items()], on_lost=on_lost)

    def acquire(self, reentrant: bool = False) -> ReleaseLock:
        """Take every lease (in cluster order) or none: on a refusal, give back and raise.

        `reentrant`: a lease an enclosing `ReleaseLock` of this same thread holds is left
        to it (the engine passes True, so a caller that locked the clusters and then runs
        the engine, which locks them too, is not refused by its own lock).
        """
        me = threading.get_ident()
        try:
            for lease in self.leases:
                with _HELD_LOCK:
                    if reentrant and _HELD.get(lease.key) == me:
                        continue
                lease.acquire()
                self._held.append(lease)
                with _HELD_LOCK:
                    _HELD[lease.key] = me
        except BaseException:
            self._give_back()
            raise
        if self._held:
            self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                            name="release-lock-renewer")
            self._thread.start()
        return self

    def release(self) -> list[str]:
        """Stop renewing and give every lease back; returns problems (never raises)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(lease.timeout for lease in self.leases) * 2 + 1)
        return self._give_back()

    def __enter__(self) -> ReleaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _give_back(self) -> list[str]:
        problems = []
        with _HELD_LOCK:
            for lease in self._held:
                _HELD.pop(lease.key, None)
        for lease in self._held:
            try:
                lease.release()
            except LockError as err:
                problems.append(str(err))
        self._held = []
        return problems

    def _renew_loop(self) -> None:
        interval = max(1.0, min(lease.duration for lease in self._held) / 3)
        while not self._stop.wait(interval):
            for lease in list(self._held):
                if lease.cluster in self.lost:
                    continue
                try:
                    if lease.renew():
                        continue
                    reason = "the lease was taken over by another release"
                except LockError as err:
                    # Keep trying while the lease is still valid; give up once it ran out.
                    if time.monotonic() - lease.renewed_at < lease.duration:
                        continue
                    reason = f"the lease expired while renewing failed: {err}"
                self.lost[lease.cluster] = reason
                if self.on_lost is not None:
                    self.on_lost(lease.cluster, reason)


def _micro(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with exactly six fraction digits, UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _dead_here(identity: str) -> bool:
    """Whether `identity` (`user@host:pid/release-id`) names a process of this host that
    is gone - a console killed here, whose lease nobody will renew or release."""
    who = identity.rsplit("/", 1)[0]
    host, _, pid_text = who.rpartition("@")[2].rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) <= 0:
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False    # exists, owned by someone else
    return False


def _expiry(spec: Mapping[str, Any]) -> datetime | None:
    renewed = _parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    if renewed is None:
        return None
    return renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))


def _clock(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S UTC")

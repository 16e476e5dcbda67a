"""One isolated Kubernetes API client per cluster, speaking raw JSON.

`KubeClient` wraps a `kubernetes.client.ApiClient` built from that cluster's own
kubeconfig (in memory, `persist_config=False`: nothing touches the global default
configuration or `~/.kube/config`) - or, for a one-shot reader's plain kubeconfig, a
`console.kube.plain_api.PlainApi`, made without the library. The ApiClient supplies the configuration (host,
TLS, the bearer token) and its REST client's urllib3 pool manager; requests themselves
skip the generated client's request serialisation and go over plain kept-alive
connections with the shared TLS context (`console.kube.direct_calls`), or straight to
urllib3 on that pool where the server needs it (a proxy, a pinned host name;
`_send`: JSON bodies, the token header set here). Objects stay plain dicts: a
release only reads a few fields, the same code serves every kind it applies, and
skipping the model round trip keeps 200 concurrent rollouts cheap.

Every call carries a timeout. Failures become `ClusterError`s whose message names the
cluster and says what went wrong (HTTP status and the server's reason, or
"unreachable") - never a token or kubeconfig content (`console.kube.cluster_errors`). Idempotent calls are retried a
bounded number of times on 429/5xx (honouring a short `Retry-After`) and on connection
errors, with jittered backoff, so a flaky cluster gets through without a retry storm.

New TLS connections are most of a rollout's CPU: requests keep theirs alive, watches
(which end by closing theirs) use a pool of their own, and every connection to a
cluster shares one TLS context (the CA loaded once).
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies

import urllib3

from console.kube.cluster_errors import ClusterError, answer_error, describe
from console.kube.private_files import private_dir
from console.kube.tls_contexts import keep_session, share_tls_context

if TYPE_CHECKING:
    from kubernetes import client as k8s

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# One call and up to five retries: every call of a release (pre-flight, lease, deploy)
# must get through a flaky API - at 10% errors four tries fail one call in 10,000, six
# one in a million; at 30% six tries still fail only one in 1,400. The waits between
# tries are capped (MAX_BACKOFF), so a dead cluster costs a few seconds, not a storm.
MAX_ATTEMPTS = 6
MAX_BACKOFF = 1.0          # s between tries at most (before jitter)
MAX_RETRY_AFTER = 2.0      # s; a longer Retry-After is shortened (we retry few times)
CONNECT_TIMEOUT = 5.0      # s
DEADLINE_PASSED = "no time left for the call (its deadline passed)"
USER_AGENT = "release-console"


def new_api_client(cluster: str, kubeconfig: Mapping[str, Any],
                   context: str | None = None) -> k8s.ApiClient:
    """An `ApiClient` for one cluster from its kubeconfig dict, isolated from all others.

    The client library needs files for CA, client certificate and key data: they go to
    0600 files in `private_files.private_dir()` (0700, removed at exit, swept by the next
    console when this one is killed), never to the shared temp directory.
    """
    # The client library is imported here, at its first use, not with this module:
    # a `status` whose clusters all read over plain connections (`console.kube.plain_api`)
    # never needs it (its import was a quarter of a second of CPU, 2026-12-02).
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    # The environment's proxy variables, as the client library reads them, but read once
    # (`proxy=""` keeps it from reading them itself: it walked the whole environment
    # twice per client, a tenth of a pre-flight's CPU at 1,000 clusters).
    proxies = environment_proxies()
    configuration = k8s.Configuration(proxy="", no_proxy=proxies.get("no", ""))
    # Retries are ours (bounded, counted, with backoff); urllib3 must not add hidden ones.
    configuration.retries = False
    try:
        k8s_config.load_kube_config_from_dict(dict(kubeconfig), context=context,
                                              persist_config=False,
                                              client_configuration=configuration,
                                              temp_file_path=str(private_dir()))
        if configuration.proxy == "":
            # No `proxy-url` in the kubeconfig: the environment's proxy for the server's
            # scheme (or `all_proxy`), as the library picks it; `no_proxy` still applies.
            configuration.proxy = proxies.get(urlsplit(configuration.host).scheme) or \
                proxies.get("all")
        api = k8s.ApiClient(configuration=configuration)
    except Exception as exc:  # noqa: BLE001 - the loader raises many types; none may leak content
        raise ClusterError(cluster, f"unusable kubeconfig ({type(exc).__name__})") from None
    hook = api.configuration.refresh_api_key_hook
    if hook is not None:
        # The loader's hook re-copies the whole configuration before every request; it
        # only ever changes something for credentials that expire (exec plugins, auth
        # providers). A static token or client certificate needs no hook at all.
        api.configuration.refresh_api_key_hook = \
            _Throttled(hook) if _expiring_credentials(kubeconfig, context) else None
    share_tls_context(api.rest_client.pool_manager)
    return api


# The variables `urllib.request.getproxies` reads that can matter to an API server's URL.
_PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
                    "ALL_PROXY", "no_proxy", "NO_PROXY", "REQUEST_METHOD")
_proxies: tuple[tuple[str | None, ...], dict[str, str]] | None = None


def environment_proxies() -> dict[str, str]:
    """`urllib.request.getproxies()`, read again only when one of its variables changed."""
    global _proxies
    seen = tuple(os.environ.get(name) for name in _PROXY_VARIABLES)
    known = _proxies
    if known is None or known[0] != seen:
        known = _proxies = (seen, getproxies())
    return known[1]


def _expiring_credentials(kubeconfig: Mapping[str, Any], context: str | None) -> bool:
    """Whether the kubeconfig's user gets credentials that expire (an exec plugin or an
    auth provider), which the loader's refresh hook renews."""
    name = context or kubeconfig.get("current-context")
    ctx: Mapping[str, Any] = next((c.get("context") or {} for c in kubeconfig.get("contexts") or []
                                   if isinstance(c, Mapping) and c.get("name") == name), {})
    user: Mapping[str, Any] = next((u.get("user") or {} for u in kubeconfig.get("users") or []
                                    if isinstance(u, Mapping) and u.get("name") == ctx.get("user")),
                                   {})
    return not isinstance(user, Mapping) or "exec" in user or "auth-provider" in user


class _Throttled:
    """Calls the loader's token refresh hook at most once per `interval` s.

    The client calls it before every request; it re-copies the whole configuration
    (reading every proxy variable of the environment) each time: ~40 us, a sixth of a
    request's CPU. Expiring tokens are refreshed 5 minutes before their expiry, so
    looking once a second changes nothing.
    """

    def __init__(self, hook: Any, interval: float = 1.0) -> None:
        self.hook = hook
        self.interval = interval
        self.next = 0.0

    def __call__(self, configuration: Any) -> None:
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.interval
            self.hook(configuration)
            # The loader's hook installs a fresh copy of itself each time: keep ours.
            fresh = configuration.refresh_api_key_hook
            if fresh is not self:
                self.hook = fresh
                configuration.refresh_api_key_hook = self


@dataclass
class WatchStream:
    """An open watch: iterate `events()`; `close()` from any thread ends it."""

    response: Any
    _closed: bool = False

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) pairs as the server sends them; ends when the server does."""
        from kubernetes.watch.watch import iter_resp_lines
        for line in iter_resp_lines(self.response):
            if not line:
                continue
            item = json.loads(line)
            yield item.get("type", ""), item.get("object") or {}

    def detach(self) -> tuple[socket.socket, bytes, bool]:
        """Take the stream's socket to read it without blocking (`console.kube.watch_hub`):
        (the socket, now non-blocking; the body bytes already read with the headers;
        whether the body is chunked). `close()` still closes the connection."""
        sock = self.response.connection.sock
        http_response = self.response._fp     # http.client's, past the headers
        reader = http_response.fp
        sock.settimeout(0)
        try:
            # The headers were read through a buffer that may hold the first events;
            # peek() returns what it holds (with a non-blocking socket it never waits).
            buffered = reader.peek()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            buffered = b""
        buffered = reader.read(len(buffered)) if buffered else b""
        # Its buffer (8 KB a stream) is not read again: let it go (the socket stays open,
        # held by the connection, which `close()` closes).
        http_response.fp = None
        reader.close()
        return sock, buffered, bool(http_response.chunked)

    def close(self) -> None:
        """Stop the stream (safe to call twice, from another thread)."""
        if not self._closed:
            self._closed = True
            # shutdown() wakes a reader blocked in recv() on another thread; close() alone
            # may leave it waiting for the next chunk.
            try:
                self.response.shutdown()
            except Exception:  # noqa: BLE001 - best effort on an already broken socket
                pass
            try:
                self.response.close()
            except Exception:  # noqa: BLE001
                pass
            try:
                self.response.release_conn()
            except Exception:  # noqa: BLE001
                pass


class TLSFailure(Exception):
    """A call's TLS failed (`reason`: urllib3's error, as "SSLError\\n<its text>")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KubeClient:
    """Raw-JSON calls to one cluster, each with a timeout, bounded retries and safe errors."""

    def __init__(self, cluster: str, api_client: k8s.ApiClient, timeout: float = 10.0) -> None:
        self.cluster = cluster
        self.api = api_client
        self.timeout = timeout
        self.server = api_client.configuration.host
        # Whether a new connection's TLS session is kept for the cluster's next one (a
        # watch's). Off for a one-shot read (`Engine.status(keep_connections=False)`):
        # its connection is the cluster's last, and getting the session from OpenSSL cost
        # ~0.3 ms of CPU per read, a sixth of a `status` read's.
        self.keep_sessions = True
        # Calls go over plain kept-alive connections of the client's own
        # (`console.kube.direct_calls`), not urllib3's pool: half a call's CPU. False:
        # urllib3's pool (which a proxy or a pinned host name needs anyway).
        self.direct = True
        self._direct: Any = None
        # Watches get connections of their own: a watch's connection cannot be reused
        # once we end it early, and taken from the shared pool it would cost the next
        # request a new TLS handshake (the largest CPU cost of a cluster's rollout).
        self._watch_rest: Any = None
        self._watch_lock = threading.Lock()
        # id(PoolManager) -> its pool for the server; the path the server URL carries
        # (a proxy in front of the API server may serve it under one).
        self._pools: dict[int, Any] = {}
        self._prefix = (urllib3.util.parse_url(self.server).path or "").rstrip("/")

    def close(self) -> None:
        """Release the connection pools (and close their idle connections now)."""
        # urllib3's PoolManager.clear() only forgets its pools (their connections close
        # when they are collected): the ones this client kept are closed here.
        pools, self._pools = list(self._pools.values()), {}
        direct, self._direct = self._direct or None, None
        for closing in (*pools, direct, self.api, self._watch_rest):
            try:
                if closing is not None:
                    closing.close()
            except Exception:  # noqa: BLE001 - closing a pool must never fail a release
                pass

    def _watch_client(self) -> Any:
        """The REST client (own connection pool, same configuration) watches use."""
        with self._watch_lock:
            if self._watch_rest is None:
                from kubernetes.client.rest import RESTClientObject
                self._watch_rest = RESTClientObject(self.api.configuration)
                shared = self.api.rest_client.pool_manager.connection_pool_kw.get("ssl_context")
                if shared is not None:
                    share_tls_context(self._watch_rest.pool_manager, shared)
            return self._watch_rest

    def _host_pool(self, manager: Any) -> Any:
        """The connection pool of the cluster's host in `manager` (kept: one lookup per
        client, not per call); None for a manager through a proxy (left to it)."""
        if type(manager) is not urllib3.PoolManager:
            return None
        pool = self._pools.get(id(manager))
        if pool is None or pool.pool is None:       # first use, or closed since
            pool = manager.connection_from_url(self.server)
            self._pools[id(manager)] = pool
        return pool

    def _direct_pool(self) -> Any:
        """The client's direct connections (None: its server needs urllib3's pool)."""
        if self._direct is None:
            from console.kube.direct_calls import DirectPool, direct_target
            with self._watch_lock:      # one pool, whichever thread calls first
                if self._direct is None:
                    target = direct_target(self.api)
                    size = getattr(self.api.configuration, "connection_pool_maxsize", 1)
                    self._direct = False if target is None else DirectPool(*target, size or 1)
        return self._direct or None

    def _send(self, method: str, path: str, query: Mapping[str, Any] | None,
              body: Any, content_type: str | None, timeout: float | tuple[float, float],
              rest: Any = None, deadline: float | None = None) -> Any:
        """One HTTP exchange on the cluster's pool (or `rest`'s); the response unread.

        Straight to urllib3 with the configuration's token: the generated client's
        request serialisation (sanitising every value, copying headers, parsing the
        content type three ways) was a third of a request's CPU, for bodies that are
        plain dicts already. A TLS failure is raised as `TLSFailure`, which `request`
        and `watch` word as the client library words its own (`answer_error`).
        """
        configuration = self.api.configuration
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["authorization"] = token
        data: bytes | str | None = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if query:
            path += "?" + urlencode({k: _query_value(v) for k, v in query.items()
                                     if v is not None})
        if rest is None and (self.direct or self.api.rest_client is None):
            # (A plain client, `console.kube.plain_api`, has no pool: always direct.)
            direct = self._direct_pool()
            if direct is not None:
                try:
                    return direct.call(method, self._prefix + path, data, headers,
                                       *timeout if isinstance(timeout, tuple) else
                                       (timeout, timeout), self.keep_sessions,
                                       deadline=deadline)
                except urllib3.exceptions.SSLError as exc:
                    raise TLSFailure(f"{type(exc).__name__}\n{exc}") from None
        limit = urllib3.Timeout(connect=timeout[0], read=timeout[1]) \
            if isinstance(timeout, tuple) else urllib3.Timeout(total=timeout)
        if deadline is not None:
            # (urllib3's total: the connect and the answer together within the time left.)
            limit = urllib3.Timeout(connect=limit.connect_timeout, read=limit.read_timeout,
                                    total=max(0.001, deadline - time.monotonic()))
        manager = (rest if rest is not None else self.api.rest_client).pool_manager
        try:
            pool = self._host_pool(manager)
            if pool is not None:
                # Straight to the cluster's connection pool: the PoolManager would parse
                # the URL and rebuild its pool key on every call (and follow redirects,
                # which an API server does not send).
                response = pool.urlopen(method, self._prefix + path, body=data,
                                        headers=headers, timeout=limit,
                                        preload_content=False, assert_same_host=False,
                                        redirect=False)
                if self.keep_sessions:
                    # Its TLS session, for the cluster's next connection (a watch's).
                    keep_session(getattr(response.connection, "sock", None))
            else:
                response = manager.urlopen(method, configuration.host + path, body=data,
                                           headers=headers, timeout=limit,
                                           preload_content=False)
        except urllib3.exceptions.SSLError as exc:
            raise TLSFailure(f"{type(exc).__name__}\n{exc}") from None
        from kubernetes.client.rest import RESTResponse   # loaded: this client has a pool
        return RESTResponse(response)

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str | None = None,
                timeout: float | None = None, retry: bool = True,
                attempts: int | None = None, deadline: float | None = None,
                cancel: threading.Event | None = None) -> dict[str, Any]:
        """One call; the decoded JSON body. Raises `ClusterError`.

        `retry` is for calls that are safe to repeat (reads, apply, patches that set
        values); a POST that creates passes `retry=False` unless it handles 409.
        `attempts` bounds the tries of a retried call below `MAX_ATTEMPTS` (a read that
        must end within a budget: `timeout` is each try's). `deadline` (a
        `time.monotonic()` time): no try starts after it, and each try's connect,
        handshake and answer get at most the time left (`DEADLINE_PASSED` when none
        is). `cancel`: once set, no further try starts (the last one's failure is
        raised).
        """
        total = timeout or self.timeout
        attempts = (min(attempts, MAX_ATTEMPTS) if attempts else MAX_ATTEMPTS) if retry else 1
        for attempt in range(1, attempts + 1):
            limit: tuple[float, float] = (min(CONNECT_TIMEOUT, total), total)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClusterError(self.cluster, DEADLINE_PASSED, 0)
                limit = (min(limit[0], left), min(total, left))
            try:
                resp = self._send(method, path, query, body, content_type, limit,
                                  deadline=deadline)
                data = resp.read()
                if not 200 <= resp.status <= 299:
                    if resp.status in RETRY_STATUSES and attempt < attempts and \
                            _pause(_backoff(attempt, resp.getheader("Retry-After")),
                                   deadline, cancel):
                        continue
                    raise answer_error(self.cluster, resp.status, resp.reason, data,
                                       self.server)
                return _decode(self.cluster, resp, data)
            except TLSFailure as exc:
                # A handshake cut short by a busy server is as transient as a refused
                # connection: try again.
                if attempt < attempts and _pause(_backoff(attempt, None), deadline, cancel):
                    continue
                raise answer_error(self.cluster, 0, exc.reason, None, self.server) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                # A refused connection or a lost keep-alive socket: try again shortly;
                # a timeout is not retried (the caller's budget is spent).
                timed_out = isinstance(exc, urllib3.exceptions.TimeoutError)
                if attempt < attempts and not timed_out and \
                        _pause(_backoff(attempt, None), deadline, cancel):
                    continue
                raise describe(self.cluster, exc, self.server) from None
        raise AssertionError("unreachable")  # the loop always returns or raises

    def watch(self, path: str, query: Mapping[str, Any], server_timeout: int,
              read_timeout: float | None = None) -> WatchStream:
        """Open a watch on a list `path` (`watch=true` added); raises `ClusterError`.

        The server ends the stream after `server_timeout` s; the read timeout is a little
        longer (unless `read_timeout` is given: a stream read without blocking needs
        one only for the headers), so a cluster that dies silently is noticed.
        """
        params = dict(query, watch="true", timeoutSeconds=server_timeout)
        read = server_timeout + 5.0 if read_timeout is None else read_timeout
        try:
            resp = self._send("GET", path, params, None, None,
                              (min(CONNECT_TIMEOUT, read), read), self._watch_client())
            if not 200 <= resp.status <= 299:
                raise answer_error(self.cluster, resp.status, resp.reason, resp.read(),
                                   self.server)
        except TLSFailure as exc:
            raise answer_error(self.cluster, 0, exc.reason, None, self.server) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise describe(self.cluster, exc, self.server) from None
        return WatchStream(resp.response)


def _decode(cluster: str, resp: Any, data: bytes) -> Any:
    """The decoded JSON of a 2xx answer. A body that is not JSON (an HTML page from a
    proxy, say) is a `ClusterError`, not a decoding traceback: the caller treats it as the
    cluster's failure (the call may still have been done on the server)."""
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        kind = (resp.getheader("Content-Type") or "no content type").split(";")[0]
        raise ClusterError(cluster, f"the API server answered {resp.status} with a body "
                           f"that is not JSON ({kind}, {len(data)} bytes)",
                           resp.status) from None


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pause(wait: float, deadline: float | None, cancel: threading.Event | None) -> bool:
    """Wait `wait` s before the next try; False (at once) when there is to be none: the
    `cancel` event set (now or while waiting), or the deadline before the wait's end."""
    if deadline is not None and time.monotonic() + wait >= deadline:
        return False
    if cancel is None:
        time.sleep(wait)
        return True
    return not cancel.is_set() and not cancel.wait(wait)


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before retry `attempt`: Retry-After (capped) or jittered exponential."""
    if retry_after:
        try:
            return min(float(retry_after), MAX_RETRY_AFTER)
        except ValueError:
            pass
    return min(0.2 * 2 ** (attempt - 1), MAX_BACKOFF) * (0.5 + random.random())

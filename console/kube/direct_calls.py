"""A client's calls over plain kept-alive `http.client` connections (`KubeClient.direct`).

urllib3's connection pool (looked up, validated and released around every call, the
URL parsed again, the headers copied) cost ~0.12 ms of CPU per call on top of
http.client's own ~0.12 ms (2026-12-02, one simulated cluster: 230-266 against 121 us
per GET of the calling thread's CPU); a 1,000-cluster release makes 13 calls per
cluster in one process, `release-console status` one. Here a call is the standard
library's connection with the cluster's shared TLS context
(`console.kube.tls_contexts`): the same CA, client certificate, verify mode and host
name check, the same connect timeout (the TCP connect and the TLS handshake) and read
timeout (each answer, set per call). `DirectPool` keeps a client's idle connections for
any of its threads, as urllib3's pool did: a call takes one (one the server has closed
meanwhile is opened again, as urllib3 does), and gives it back once its answer is read
(closes it, once the pool is closed).

Failures are raised as the urllib3 exceptions its pool raises for the same fault, so
`KubeClient.request` retries (or not) and `describe` words them exactly as before: a
refused or failed connect is `NewConnectionError` (its cause the socket's error), a
connect that timed out `ConnectTimeoutError`, a TLS failure `SSLError`, a handshake or
answer that timed out `ReadTimeoutError`, a connection lost mid-call `ProtocolError`.

A kept connection the server closed while idle is not used again (`dropped`, as urllib3
checks); one it closes just as a call goes out (its idle timeout's race) is lost before
any answer (`LostConnection`): a read (GET, HEAD) is sent again at once on a new
connection, a write is not - the server may have taken it - and fails as before.

Only a plain HTTPS server with the shared context goes this way; a proxy, a
`tls-server-name`, a pinned host name or fingerprint, or a context urllib3 had to make
itself stay on urllib3's pool (`direct_target` says None).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from typing import Any

import urllib3
from urllib3.exceptions import (ConnectTimeoutError, NameResolutionError, NewConnectionError,
                                ProtocolError, ReadTimeoutError, SSLError)
from urllib3.util.wait import wait_for_read

from console.kube.tls_contexts import keep_session

from console.kube.plain_api import PlainApi


def direct_target(api: Any) -> tuple[str, int, ssl.SSLContext] | None:
    """(host, port, TLS context) of the API server of `api` (a `kubernetes.client.ApiClient`,
    or a `PlainApi`) for a direct connection; None where urllib3's pool must make it."""
    if isinstance(api, PlainApi):
        return api.direct                             # made for one: always direct
    manager = api.rest_client.pool_manager
    if type(manager) is not urllib3.PoolManager:
        return None                                   # a proxy
    kw = manager.connection_pool_kw
    context = kw.get("ssl_context")
    if context is None or any(kw.get(k) is not None for k in
                              ("server_hostname", "assert_hostname", "assert_fingerprint")):
        return None
    url = urllib3.util.parse_url(api.configuration.host)
    if url.scheme != "https" or not url.host:
        return None
    return url.host, url.port or 443, context


class LostConnection(ProtocolError):
    """The connection was lost (reset, closed) before any answer to the call came: while
    sending it or waiting for the status line. On a kept connection that is most often
    the server's idle timeout closing it just as the call was sent."""


# What a connection the server closed or reset raises (a clean TLS close reads as an
# empty status line: `RemoteDisconnected`, a ConnectionResetError).
_LOST = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
# Calls sent again at once when their kept connection was lost before any answer: those
# that change nothing. A write is not (the server may have taken it before the
# connection went): `KubeClient.request` retries it, with a backoff, only when its
# caller says it is safe to repeat.
RESENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class DirectResponse:
    """An answer read whole, with what `KubeClient.request` and `ApiException` read of
    the client library's `RESTResponse`."""

    def __init__(self, response: http.client.HTTPResponse, data: bytes) -> None:
        self.status = response.status
        self.reason = response.reason
        self.data = data
        self.headers = response.msg

    def read(self) -> bytes:
        """The body (already read)."""
        return self.data

    def getheader(self, name: str, default: str | None = None) -> str | None:
        """One header's value."""
        return self.headers.get(name, default)

    def getheaders(self) -> Any:
        """All the headers."""
        return self.headers


class DirectConnection:
    """One connection to a cluster's API server, opened at its first call and kept for the
    next; one call at a time (`DirectPool` hands it to one thread at a time)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.context = context
        self._conn: http.client.HTTPSConnection | None = None

    def call(self, method: str, url: str, body: bytes | str | None, headers: dict[str, str],
             connect_timeout: float, read_timeout: float,
             keep: bool = False, deadline: float | None = None) -> DirectResponse:
        """One exchange, the answer read whole; raises the urllib3 exceptions above.
        `keep`: keep the connection's TLS session for the server's next connection.
        `deadline` (monotonic): the connect, the handshake and the answer each get at
        most the time left then (so a new connection's connect and handshake do not
        add to the answer's time past it)."""
        conn = self._conn
        if isinstance(body, str):
            body = body.encode("utf-8")     # as urllib3 sends it (http.client: Latin-1)
        answered = False
        try:
            if conn is None:
                conn = self._conn = self._connect(connect_timeout, read_timeout, url,
                                                  deadline)
            if conn.sock is not None:
                # A kept connection: this call's read timeout, not the first call's (a
                # new one: what its connect and handshake left of the deadline).
                conn.sock.settimeout(_within(read_timeout, deadline))
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            answered = True
            data = response.read()
            if keep:
                keep_session(conn.sock)     # once per connection (later calls return)
        except urllib3.exceptions.HTTPError:
            self.close()                       # already urllib3's (from the connect)
            raise
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if not answered and isinstance(exc, _LOST) and not _timed_out(exc):
                raise LostConnection("Connection aborted.", exc) from exc
            raise _mapped(exc, url, read_timeout) from exc
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return DirectResponse(response, data)

    def _connect(self, connect_timeout: float, read_timeout: float,
                 url: str, deadline: float | None = None) -> http.client.HTTPSConnection:
        """A connection with its TCP connect and TLS handshake done."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=connect_timeout,
                                           context=self.context)
        try:
            sock = socket.create_connection((conn.host, conn.port),
                                            _within(connect_timeout, deadline))
        except socket.gaierror as exc:
            raise NameResolutionError(conn.host, conn, exc) from exc  # type: ignore[arg-type]
        except TimeoutError:
            raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. "
                                      f"(connect timeout={connect_timeout})") from None
        except OSError as exc:
            raise NewConnectionError(conn, "Failed to establish a new connection: "  # type: ignore[arg-type]
                                     f"{exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The handshake gets the connect timeout, as urllib3 gives it (its pool sets
            # the connection's timeout to the connect timeout until the handshake is
            # done, and words a handshake that timed out a read timeout of that value);
            # the answers get the read timeout.
            sock.settimeout(_within(connect_timeout, deadline))
            conn.sock = self.context.wrap_socket(sock, server_hostname=conn.host)
            conn.sock.settimeout(read_timeout)
        except (OSError, ValueError) as exc:      # ssl.CertificateError is a ValueError
            sock.close()
            raise _mapped(exc, url, connect_timeout) from exc
        except BaseException:
            sock.close()
            raise
        return conn

    def dropped(self) -> bool:
        """Whether the kept connection was closed by the server (or sent something
        unasked) while idle - as urllib3 checks a pooled connection before reusing it."""
        sock = self._conn.sock if self._conn is not None else None
        return sock is not None and wait_for_read(sock, timeout=0.0)

    def close(self) -> None:
        """Close the connection, if open (safe to call twice)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class DirectPool:
    """A client's idle direct connections to its API server, for any of its threads: at
    most `maxsize` are kept (urllib3's pool size for it); more run at once when needed,
    and the ones beyond it are closed once read. Once the pool is closed, a call still
    out (or started after) closes its connection when read instead of keeping it."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, maxsize: int) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.maxsize = max(1, maxsize)
        self._idle: list[DirectConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def call(self, method: str, url: str, body: bytes | str | None, headers: dict[str, str],
             connect_timeout: float, read_timeout: float,
             keep: bool = False, deadline: float | None = None) -> DirectResponse:
        """One exchange on an idle connection (or a new one); see `DirectConnection.call`."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = DirectConnection(self.host, self.port, self.context)
        elif conn.dropped():
            conn.close()                    # opened again by the call
        kept = conn._conn is not None
        try:
            response = conn.call(method, url, body, headers, connect_timeout, read_timeout,
                                 keep, deadline)
        except LostConnection:
            # A kept connection lost before any answer (closed by the server as the call
            # went out: `dropped` saw nothing yet): a read goes again, once, on a new
            # connection - not a try of the caller's (within the same deadline).
            if not kept or method not in RESENT_METHODS:
                raise
            response = conn.call(method, url, body, headers, connect_timeout, read_timeout,
                                 keep, deadline)
        with self._lock:
            if not self._closed and len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return response
        conn.close()
        return response

    def idle(self) -> list[DirectConnection]:
        """The kept connections (open or not)."""
        with self._lock:
            return list(self._idle)

    def close(self) -> None:
        """Close the idle connections now; one in use is closed by its call once read
        (given back to a closed pool, it would stay open until garbage-collected)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _within(timeout: float, deadline: float | None) -> float:
    """`timeout`, or the time left before `deadline` (monotonic) when that is less."""
    if deadline is None:
        return timeout
    return max(0.001, min(timeout, deadline - time.monotonic()))


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or \
        (isinstance(exc, ssl.SSLError) and "timed out" in str(exc))


def _mapped(exc: Exception, url: str, read_timeout: float) -> urllib3.exceptions.HTTPError:
    """urllib3's exception for a failure after the TCP connect (as its pool raises it)."""
    if _timed_out(exc):
        return ReadTimeoutError(None, url,  # type: ignore[arg-type]
                                f"Read timed out. (read timeout={read_timeout})")
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return SSLError(exc)
    return ProtocolError("Connection aborted.", exc)

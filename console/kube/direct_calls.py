"""A one-shot reader's calls over a plain `http.client` connection (`KubeClient.one_shot`).

`release-console status` reads each cluster once and exits: its calls gain nothing from
urllib3's connection pool (built per client, looked up, validated and released around
every call) and paid ~0.5 ms of CPU per read for it, a quarter of a read (2026-12-02,
1,000 simulated clusters). Here a call is the standard library's connection with the
cluster's shared TLS context (`console.kube.tls_contexts`): the same CA, client
certificate, verify mode and host name check, the same connect timeout (the TCP
connect and the TLS handshake) and read timeout (each answer).

Failures are raised as the urllib3 exceptions its pool raises for the same fault, so
`KubeClient.request` retries (or not) and `describe` words them exactly as before: a
refused or failed connect is `NewConnectionError` (its cause the socket's error), a
connect that timed out `ConnectTimeoutError`, a TLS failure `SSLError`, a handshake or
answer that timed out `ReadTimeoutError`, a connection lost mid-call `ProtocolError`.

Only a plain HTTPS server with the shared context goes this way; a proxy, a
`tls-server-name`, a pinned host name or fingerprint, or a context urllib3 had to make
itself stay on urllib3's pool (`direct_target` says None).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

import urllib3
from urllib3.exceptions import (ConnectTimeoutError, NameResolutionError, NewConnectionError,
                                ProtocolError, ReadTimeoutError, SSLError)

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
    """One connection to a cluster's API server, opened at the first call and kept for the
    next (a one-shot reader's calls come from one thread, one after the other); each call
gets its own read timeout."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.context = context
        self._conn: http.client.HTTPSConnection | None = None

    def call(self, method: str, url: str, body: bytes | str | None, headers: dict[str, str],
             connect_timeout: float, read_timeout: float) -> DirectResponse:
        """One exchange, the answer read whole; raises the urllib3 exceptions above."""
        conn = self._conn
        if isinstance(body, str):
            body = body.encode("utf-8")     # as urllib3 sends it (http.client: Latin-1)
        try:
            if conn is None:
                conn = self._conn = self._connect(connect_timeout, read_timeout, url)
            elif conn.sock is not None:
                # A kept connection: this call's read timeout, not the first call's.
                conn.sock.settimeout(read_timeout)
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except urllib3.exceptions.HTTPError:
            self.close()                       # already urllib3's (from the connect)
            raise
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _mapped(exc, url, read_timeout) from exc
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return DirectResponse(response, data)

    def _connect(self, connect_timeout: float, read_timeout: float,
                 url: str) -> http.client.HTTPSConnection:
        """A connection with its TCP connect and TLS handshake done."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=connect_timeout,
                                           context=self.context)
        try:
            sock = socket.create_connection((conn.host, conn.port), connect_timeout)
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
            sock.settimeout(connect_timeout)
            conn.sock = self.context.wrap_socket(sock, server_hostname=conn.host)
            conn.sock.settimeout(read_timeout)
        except (OSError, ValueError) as exc:      # ssl.CertificateError is a ValueError
            sock.close()
            raise _mapped(exc, url, connect_timeout) from exc
        except BaseException:
            sock.close()
            raise
        return conn

    def close(self) -> None:
        """Close the connection, if open (safe to call twice)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


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

"""One TLS context per distinct (verify mode, CA, client certificate) for every
connection to the clusters: `share_tls_context` gives a urllib3 pool manager the shared
context, built once from the bytes of its CA and client certificate and kept in a cache
(`console.kube.client` calls it for the requests' and the watches' pools).

Such a context also resumes TLS sessions: a new connection to a server it already spoke
to offers that server's session ticket (`keep_session` keeps it once a connection's first
answer came), so a rollout's two watch connections skip the certificate exchange and its
checks - a full handshake was the largest CPU cost of opening a watch. Sessions are kept
per context, server name and the server's address, so one cluster's ticket is only ever
offered to that cluster's server; a server that no longer knows the ticket simply does a
full handshake (whose fresh session is kept instead).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from typing import Any

import urllib3
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs


def share_tls_context(pool_manager: Any, context: ssl.SSLContext | None = None) -> None:
    """Give every connection of `pool_manager` one TLS context, made once.

    Left to itself urllib3 makes a context and loads the CA (and client certificate)
    files again for each new connection: a third of a new connection's CPU, and a
    rollout opens two (its watches). A pool through a proxy keeps urllib3's own way.
    """
    if type(pool_manager) is not urllib3.PoolManager:
        return
    kw = pool_manager.connection_pool_kw
    if context is None:
        try:
            context = _tls_context(kw)
        except (ssl.SSLError, OSError, ValueError):
            # A CA or key pair that does not load: left to urllib3, whose connection
            # fails with the TLS error the caller reports (as it always did).
            return
    kw["ssl_context"] = context
    for key in ("ca_certs", "ca_cert_data", "cert_file", "key_file"):
        kw.pop(key, None)


# (verify mode, CA, client certificate and key bytes, hostname rules) -> a TLS context.
# Clusters behind one CA (and without client certificates, or with the same one) share a
# context: building one and loading its CA cost more CPU than a `status` read's whole
# GET. The key holds the bytes, not the file names (the client writes each cluster's CA
# to a file of its own), and the context is made from exactly those bytes (the CA) or
# only kept when the files still hold them after loading (the client certificate), so
# two clusters share a context only when they verify and present exactly the same. A
# file read while the client is still writing it (its temp files are named before they
# are written) gives no certificate: that pool is left to urllib3, as before.
_tls_contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
_tls_contexts_lock = threading.Lock()


def _read_bytes(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def ca_context(ca_pem: bytes) -> ssl.SSLContext:
    """The shared context that verifies servers against the CA `ca_pem` (no client
    certificate): the very one a pool whose CA file holds these bytes gets (for a plain
    connection made without the client library, `console.kube.plain_api`). Raises
    `ssl.SSLError` (or ValueError) when `ca_pem` holds no certificate."""
    return _tls_context({"cert_reqs": ssl.CERT_REQUIRED}, ca_file=ca_pem)


def _tls_context(kw: Mapping[str, Any], ca_file: bytes | None = None) -> ssl.SSLContext:
    """The (shared) TLS context for a pool's CA, client certificate and verify mode
    (`ca_file`: the CA file's bytes, when they are at hand rather than in a file)."""
    cert_reqs = resolve_cert_reqs(kw.get("cert_reqs"))
    if ca_file is None:
        ca_file = _read_bytes(kw.get("ca_certs"))
    ca_data = kw.get("ca_cert_data")
    cert, key_bytes = _read_bytes(kw.get("cert_file")), _read_bytes(kw.get("key_file"))
    # urllib3 turns a context's own hostname check off for a pool with `assert_hostname`
    # or `assert_fingerprint` (and checks itself): only pools alike in those share one.
    key = (cert_reqs, ca_file, ca_data, cert, key_bytes,
           repr(kw.get("assert_hostname")), repr(kw.get("assert_fingerprint")))
    with _tls_contexts_lock:
        found = _tls_contexts.get(key)
    if found is not None:
        return found
    context = create_urllib3_context(cert_reqs=cert_reqs)
    if ca_file is not None or ca_data:
        if ca_file is not None:
            # A CA file is PEM text (what `cafile=` reads); loaded from the bytes read.
            context.load_verify_locations(cadata=ca_file.decode("ascii"))
        if ca_data:
            context.load_verify_locations(cadata=ca_data)
    else:
        context.load_default_certs()
    if kw.get("cert_file"):
        context.load_cert_chain(kw["cert_file"], kw.get("key_file"))
        if (_read_bytes(kw.get("cert_file")), _read_bytes(kw.get("key_file"))) != \
                (cert, key_bytes):
            raise ValueError("the client certificate changed while it was loaded")
    context.sslsocket_class = _ResumingSocket
    with _tls_contexts_lock:
        # Another thread may have built the same one meanwhile: keep the first.
        return _tls_contexts.setdefault(key, context)


# (id of the shared context, server name, the server's address) -> its last TLS session.
# The contexts live as long as the process (`_tls_contexts`), so their ids stay theirs.
_sessions: dict[tuple[int, str | None, Any], ssl.SSLSession] = {}


def _session_key(context: ssl.SSLContext, sock: Any, server_hostname: str | None) -> Any:
    try:
        return (id(context), server_hostname, sock.getpeername())
    except (OSError, AttributeError):
        return None


class _ResumingSocket(ssl.SSLSocket):
    """The TLS socket of a shared context: offers the server's kept session, if any
    (`ssl.SSLContext.sslsocket_class` is the documented hook for a socket class)."""

    @classmethod
    def _create(cls, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
                suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                context: ssl.SSLContext | None = None,
                session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        if session is None and not server_side and context is not None:
            key = _session_key(context, sock, server_hostname)
            session = _sessions.get(key) if key is not None else None
        return super()._create(sock, server_side, do_handshake_on_connect,
                               suppress_ragged_eofs, server_hostname, context, session)


def keep_session(sock: Any) -> None:
    """Keep the TLS session of a connection that has just read its first answer (its
    session ticket comes before it), for the next connection to the same server. Only
    the thread that owns the connection may call it; later calls return at once."""
    if type(sock) is not _ResumingSocket or sock.__dict__.get("_kept"):
        return
    sock._kept = True
    if sock.session_reused:
        return      # resumed: the kept session still stands
    session = sock.session
    if session is not None and session.has_ticket:
        key = _session_key(sock.context, sock, sock.server_hostname)
        if key is not None:
            _sessions[key] = session

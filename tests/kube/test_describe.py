"""How `console.kube.client.describe` names a failed connection: by the socket error's
errno, never by the words of its message (issue 10: no control flow on message text)."""

from __future__ import annotations

import errno
import socket

import urllib3

from console.kube.client import describe


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_named_refused():
    pool = urllib3.PoolManager(retries=False, timeout=5)
    try:
        pool.request("GET", f"http://127.0.0.1:{closed_port()}/version")
    except urllib3.exceptions.HTTPError as exc:
        error = describe("eu", exc, "https://eu.example")
    else:
        raise AssertionError("a closed port answered")
    assert error.unreachable and error.reason.endswith(": connection refused")


def test_other_connect_failures_are_not_refused_whatever_their_text_says():
    cause = OSError(errno.EHOSTUNREACH, "no route to host (not refused)")
    try:
        try:
            raise cause
        except OSError as inner:
            raise urllib3.exceptions.NewConnectionError(
                None, f"Failed to establish a new connection: {inner}") from inner
    except urllib3.exceptions.NewConnectionError as exc:
        error = describe("eu", exc)
    assert error.reason == "unreachable: cannot connect to the API server"

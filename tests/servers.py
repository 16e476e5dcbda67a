"""Helpers for the tests that start real servers (OpenBao, docker-registry, SMTP)."""

from __future__ import annotations

import signal
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL,
    so a killed pytest run leaves no server behind (Linux `PR_SET_PDEATHSIG`)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass

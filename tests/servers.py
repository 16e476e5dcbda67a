"""Helpers for the tests that start real servers (OpenBao, docker-registry, SMTP)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


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


def stop_server(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM a server still running and wait for it; SIGKILL it after `grace` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_until_up(name: str, process: subprocess.Popen, log: Path,
                  probe: Callable[[], bool], stop: Callable[[], None],
                  timeout: float = 20.0) -> None:
    """Wait until `probe()` is true (HTTP errors count as not yet); if the server exits
    first, or `timeout` passes, stop it and fail with the end of its `log`."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: "
                               f"{log.read_text()[-2000:]}")
        try:
            if probe():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"{name} did not answer within {timeout:g} s")
        time.sleep(0.05)

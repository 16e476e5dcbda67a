"""Real pipes for the printer stories: one whose buffer is full (a reader that stops
reading), a `deploy --json` process writing into one (`deploy_unread`: the two, and
their end), and what is left in one."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def filled_pipe(size: int = 0) -> tuple[int, int]:
    """A real pipe (of `size` bytes, if given) whose buffer is full of spaces: the next
    write to it waits until it is read. Returns (read end, write end)."""
    read_end, write_end = os.pipe()
    if size:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, size)
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b" " * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def deploy_into(config_path: Path, write_end: int, *flags: str,
                as_json: bool = True, stderr_too: bool = False) -> subprocess.Popen:
    """`deploy --json` (or its human lines) as a process with stdout on `write_end`
    (closed here: the caller keeps only the read end) and stderr piped - or, with
    `stderr_too`, on `write_end` as well (`2>&1`)."""
    proc = subprocess.Popen([sys.executable, "-m", "console", "deploy",
                             *(["--json"] if as_json else []),
                             "--config", str(config_path), *flags],
                            stdin=subprocess.DEVNULL, stdout=write_end,
                            stderr=write_end if stderr_too else subprocess.PIPE,
                            text=True, env=dict(os.environ))
    os.close(write_end)
    return proc


def left_in(read_end: int) -> bytes:
    """Everything the pipe holds now (its writer gone or not), without waiting."""
    os.set_blocking(read_end, False)
    left = b""
    while True:
        try:
            piece = os.read(read_end, 65536)
        except BlockingIOError:
            return left
        if not piece:
            return left
        left += piece


def stopped(proc: subprocess.Popen) -> None:
    """Kill `proc` if it still runs, and reap it (a test's way out, passed or not)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


@contextmanager
def deploy_unread(config_path: Path, *flags: str, size: int = 0, as_json: bool = True,
                  stderr_too: bool = False) -> Iterator[tuple[subprocess.Popen, int]]:
    """`deploy_into` a `filled_pipe` (of `size` bytes, if given): yields (the process,
    the pipe's read end, for the test to read or leave unread); on the way out the
    process is killed if it still runs, and the read end closed."""
    read_end, write_end = filled_pipe(size)
    proc = deploy_into(config_path, write_end, *flags, as_json=as_json,
                       stderr_too=stderr_too)
    try:
        yield proc, read_end
    finally:
        stopped(proc)
        os.close(read_end)


def finished(proc: subprocess.Popen, what: str | Callable[[], str],
             timeout: float = 180) -> Any:
    """The process's stderr once it exited (None when it is not piped); killed, and
    an AssertionError saying it did not exit `what` (or what `what()` says then),
    after `timeout` s."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        err = proc.communicate(timeout=30)[1]
        if callable(what):
            what = what()
        raise AssertionError(f"deploy did not exit {what}; stderr: "
                             f"{(err or '(the pipe)')[-2000:]}") from None


def read_to_end(read_end: int) -> bytes:
    """Everything written to the pipe until its last writer closed it."""
    read = b""
    while piece := os.read(read_end, 65536):
        read += piece
    return read

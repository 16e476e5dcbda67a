"""Real pipes for the printer stories: one whose buffer is full (a reader that stops
reading), a `deploy --json` process writing into one, and what is left in one."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path


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

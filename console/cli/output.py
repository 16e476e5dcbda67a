"""A command's output on stdout, ended quietly when its reader goes away (`| head`).

`out(line)` prints one line and flushes it, so a closed pipe shows at once; once the
reader has gone, stdout points at /dev/null (the interpreter's last flush stays
quiet, no "Exception ignored ... BrokenPipeError") and `out` returns False, so a long
listing can stop early. The command's own exit code stands: `status | head` still says
whether every cluster could be read. `console.cli.main` catches a BrokenPipeError
from anything printed otherwise the same way.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

_state = {"gone": False}


def out(line: str = "", stream: TextIO | None = None) -> bool:
    """Print `line` to `stream` (default stdout); False (and nothing printed) once the
    reader has gone."""
    target = sys.stdout if stream is None else stream
    if target is sys.stdout and _state["gone"]:
        return False
    try:
        print(line, file=target, flush=True)
    except BrokenPipeError:
        if target is sys.stdout:
            reader_gone()
        return False
    return True


def reader_gone() -> None:
    """Stdout's reader closed the pipe: send whatever is still buffered or printed to
    /dev/null instead of raising at every later write and at exit."""
    _state["gone"] = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass   # stdout without a file descriptor (a test's capture): nothing to redirect


__all__ = ["out", "reader_gone"]

"""Child processes of the lab: started with their output in a log file, killed with the lab.

Each child gets PR_SET_PDEATHSIG=SIGKILL (Linux), so a lab whose Python process dies
without stopping (SIGKILL, a crashed test run) leaves no etcd or kube-apiserver behind.
The signal fires when the *thread* that started the child ends, so children are started
from the thread that owns the lab (the main thread of `lab up`, a test session's thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: stop() still ends every child


@dataclass
class Child:
    """One started program and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The end of its log (for errors that say why a component did not come up)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_bytes(self) -> int:
        """Resident memory (VmRSS) of the process, 0 once it has ended."""
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0


def start(name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Child:
    """Start `argv` with stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                 preexec_fn=_die_with_parent, close_fds=True)
    return Child(name, popen, log)


def stop_all(waves: Sequence[Sequence[Child]], grace: float = 10.0) -> list[str]:
    """Stop the children wave after wave: SIGTERM a wave, wait for it, then the next, up
    to `grace` seconds in all; SIGKILL what is left then. The names of the SIGKILLed.

    Waves let what depends on a server end before it (kube-apiservers before the etcd
    they keep retrying, which otherwise holds them until the grace runs out).
    """
    deadline = time.monotonic() + grace
    killed: list[str] = []
    for wave in waves:
        for child in wave:
            if child.alive():
                child.popen.send_signal(signal.SIGTERM)
        for child in wave:
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(child.name)
                child.popen.kill()
                child.popen.wait(5)
    return killed

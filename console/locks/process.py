"""Which console process holds a lease, precisely enough to tell that it is surely gone.

`host:pid` is not enough: two consoles in containers with the same hostname (the
container's default) see each other's pids as "not running here", and pids are reused.
A `ProcessId` adds what makes a pid unambiguous on Linux:

- the kernel's boot id (`/proc/sys/kernel/random/boot_id`): the same machine, same boot;
- the pid namespace (`/proc/self/ns/pid`, e.g. `pid:[4026531836]`): the same pid space,
  so the pid names the same process table;
- the process start time (field 22 of `/proc/PID/stat`, clock ticks since boot): the
  same process, not a later one that got the pid again.

`surely_gone(other)` is True only when all of that matches this process's view and the
pid runs no more (or runs a process started at another time). Anything unknown or
different (another machine, another container, a system without /proc) is not a sure
match: the caller must wait for the lease to expire.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache

PROC = "/proc"


@dataclass(frozen=True)
class ProcessId:
    """A process as another console on the same machine can check it."""

    host: str
    pid: int
    boot_id: str = ""
    pid_ns: str = ""
    start: str = ""          # start time in clock ticks since boot, as /proc says

    def to_text(self) -> str:
        """`boot=... pidns=... pid=... start=... host=...` (stored beside the lease holder)."""
        return (f"boot={self.boot_id or '-'} pidns={self.pid_ns or '-'} pid={self.pid} "
                f"start={self.start or '-'} host={self.host or '-'}")

    @classmethod
    def from_text(cls, text: str) -> ProcessId | None:
        """The inverse of `to_text`; None for anything else (another console's format)."""
        fields: dict[str, str] = {}
        for part in str(text or "").split():
            key, sep, value = part.partition("=")
            if not sep:
                return None
            fields[key] = "" if value == "-" else value
        pid = fields.get("pid", "")
        if not pid.isdigit():
            return None
        return cls(host=fields.get("host", ""), pid=int(pid), boot_id=fields.get("boot", ""),
                   pid_ns=fields.get("pidns", ""), start=fields.get("start", ""))


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _start_time(pid: int, proc: str = PROC) -> str:
    """Field 22 of /proc/PID/stat ("" when the process does not exist or cannot be read)."""
    stat = _read(f"{proc}/{pid}/stat")
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    _, sep, rest = stat.rpartition(")")
    if not sep:
        return ""
    fields = rest.split()
    return fields[19] if len(fields) > 19 else ""


def _pid_namespace(proc: str = PROC) -> str:
    try:
        return os.readlink(f"{proc}/self/ns/pid")
    except OSError:
        return ""


@lru_cache(maxsize=1)
def _this(pid: int) -> ProcessId:
    # Cached per pid: a forked child (pid differs) computes its own.
    return ProcessId(host=socket.gethostname(), pid=pid,
                     boot_id=_read(f"{PROC}/sys/kernel/random/boot_id"),
                     pid_ns=_pid_namespace(), start=_start_time(pid))


def this_process() -> ProcessId:
    """This console process."""
    return _this(os.getpid())


def surely_gone(other: ProcessId, me: ProcessId | None = None) -> bool:
    """Whether `other` is certainly not running: same boot and pid namespace as this
    process (so its pid means the same here), and that pid is free or started at another
    time. False whenever that cannot be told for sure."""
    me = me or this_process()
    if not (me.boot_id and me.pid_ns and other.boot_id and other.pid_ns and other.start):
        return False
    if (other.boot_id, other.pid_ns) != (me.boot_id, me.pid_ns) or other.pid <= 0:
        return False
    now = _start_time(other.pid)
    if now:
        return now != other.start      # the pid runs again, as another process
    try:
        os.kill(other.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False    # exists but /proc would not tell: not sure
    return False

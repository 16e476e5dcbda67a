"""The console's private directory for the files the Kubernetes client needs.

The `kubernetes` client (and `ssl`) read the CA, the client certificate and its key from
files. They go to one 0700 directory per process (files 0600), removed at exit - never
to the shared temp directory. A console that is killed (SIGKILL, OOM, a lost CI runner)
cannot remove its directory, so every process sweeps, when it first needs its own, the
directories of consoles that are gone.

A directory's name says whose it is: `release-console.<boot>.<pidns>.<pid>.<start>.<random>`
(the kernel's boot id, the pid namespace, the pid and the process's start time in clock
ticks). It is swept only when it belongs to this user and its owner is surely dead: the
machine rebooted since (another boot id), or the same pid namespace has no process with
that pid and start time. A directory of another pid namespace (a console in another
container sharing /tmp) is left alone: its owner cannot be seen from here.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

PREFIX = "release-console."
_NAME = re.compile(re.escape(PREFIX) + r"(?P<boot>[0-9a-f]{1,32})\.(?P<pidns>\d+)\.(?P<pid>\d+)"
                   r"\.(?P<start>\d+)\.")

_lock = threading.Lock()
_private_dir: Path | None = None
_swept = False


@dataclass(frozen=True)
class Owner:
    """What identifies a process across pid reuse, reboots and containers."""

    boot: str
    pidns: int
    pid: int
    start: int

    def prefix(self) -> str:
        """The directory name's prefix for this owner."""
        return f"{PREFIX}{self.boot}.{self.pidns}.{self.pid}.{self.start}."


def _boot_id() -> str:
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text()
    except OSError:
        return "0"
    return text.strip().replace("-", "")[:32] or "0"


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (`/proc/PID/stat` field 22);
    None when there is no such process (or no /proc to ask)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def this_process() -> Owner:
    """The running process as an `Owner`."""
    pid = os.getpid()
    return Owner(_boot_id(), _pid_namespace(), pid, start_time(pid) or 0)


def _owner_is_gone(owner: Owner, me: Owner) -> bool:
    if owner.boot != me.boot:
        return me.boot != "0"          # rebooted since (unless we cannot tell)
    if owner.pidns != me.pidns or me.pidns == 0:
        return False                   # another container's console: cannot see it
    started = start_time(owner.pid)
    return started is None or started != owner.start


def sweep_dead(directory: Path | None = None) -> list[Path]:
    """Remove the private directories of consoles that are gone; returns what was removed."""
    base = Path(directory or tempfile.gettempdir())
    me = this_process()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid != uid or not entry.is_dir(follow_symlinks=False):
            continue
        owner = Owner(match["boot"], int(match["pidns"]), int(match["pid"]), int(match["start"]))
        if owner == me or not _owner_is_gone(owner, me):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def private_dir() -> Path:
    """This process's 0700 directory for credential files, removed at exit.

    The first call sweeps the directories that killed consoles left behind.
    """
    global _private_dir, _swept
    made = _private_dir
    if _swept and made is not None and os.path.isdir(made):
        # Made and swept already: no lock (every cluster's client asks, and `status`
        # builds 32 at once - they queued on the lock around this check's system call).
        return made
    with _lock:
        if not _swept:
            _swept = True
            sweep_dead()
        if _private_dir is None or not _private_dir.is_dir():
            _private_dir = Path(tempfile.mkdtemp(prefix=this_process().prefix()))
            atexit.register(shutil.rmtree, _private_dir, ignore_errors=True)
        return _private_dir

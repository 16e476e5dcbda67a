"""`deploy` and `check` keep their threads on one CPU (`--all-cpus` lets them spread).

The engine is Python threads, and only one of them runs Python at a time (the GIL); on
two cores its ~100 threads handing that lock to each other across the cores spent a
third more CPU, and took longer, than the same work kept on one core
(`bench/release_fleet.py --clusters 1000 --readiness 20 --no-kubectl`, 2026-12-02 15:05,
alternated: whole run 14.5 against 23.9 CPU s, `check` 4.4 against 6.8 CPU s; `check`
alone, three pairs: 4.5-4.7 against 6.6-7.2 CPU s - docs/scale.md). The CPU kept is the
one the process is on when it starts, where the kernel's scheduler put it, so two
consoles started side by side mostly land on different ones.

Not for a release shipped with Helm (its `helm` processes inherit the affinity and are Go
programs that use every core they get), nor for a fleet whose credentials run programs
(`allow_exec` / `allow_auth_provider`: a token plugin per cluster, `aws eks get-token`
alone ~0.3 CPU s). Only the command's own thread and what it starts are kept: `console.cli
.main` gives the calling thread its CPUs back when the command returns (a command run
in-process, as the tests do, leaves its caller as it found it). Where the CPU cannot be
told (`/proc` unreadable) nothing is pinned: every console would pile onto one CPU.
"""

from __future__ import annotations

import os
from typing import Any


def current_cpu() -> int | None:
    """The CPU this process last ran on (`/proc/self/stat`'s 39th field), or None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # The command name (field 2) may hold spaces: count from after its ")".
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def runs_programs(config: Any) -> bool:
    """Whether a release of `config` runs programs that would share the CPU kept: helm,
    or a credential plugin (exec, auth-provider) on some cluster."""
    if getattr(config.app, "chart", None) is not None:
        return True
    return any(c.credentials.allow_exec or c.credentials.allow_auth_provider
               for c in config.clusters)


def affinity() -> set[int] | None:
    """The calling thread's allowed CPUs (None where the system has no such call)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def give_back(cpus: set[int] | None) -> None:
    """Allow the calling thread `cpus` again (from `affinity()`), if it changed."""
    if cpus is not None and os.sched_getaffinity(0) != cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass


def keep_to_one_cpu() -> int | None:
    """Keep this process's thread, and every thread and child it starts from now on, on
    the CPU it runs on; that CPU, or None where there is nothing to do (one CPU allowed
    already, no affinity calls on this system, or the kernel refused)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return None
    cpu = current_cpu()
    if cpu not in allowed:
        return None
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu

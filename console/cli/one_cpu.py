"""`deploy` and `check` keep their threads on one CPU (`--all-cpus` lets them spread).

The engine is Python threads, and only one of them runs Python at a time (the GIL); on
two cores its ~100 threads handing that lock to each other across the cores spent a
third more CPU, and took longer, than the same work kept on one core
(`bench/release_fleet.py --clusters 1000 --readiness 20 --no-kubectl`, 2026-12-02 15:05,
alternated: whole run 14.5 against 23.9 CPU s, `check` 4.4 against 6.8 CPU s; `check`
alone, three pairs: 4.5-4.7 against 6.6-7.2 CPU s - docs/scale.md). The CPU kept is the
one the process is on when it starts, where the kernel's scheduler put it, so two
consoles started side by side mostly land on different ones.

Not for a release shipped with Helm: its `helm` processes inherit the affinity and are
Go programs that use every core they get.
"""

from __future__ import annotations

import os


def current_cpu() -> int | None:
    """The CPU this process last ran on (`/proc/self/stat`'s 39th field), or None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # The command name (field 2) may hold spaces: count from after its ")".
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


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
        cpu = min(allowed)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu

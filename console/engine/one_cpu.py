"""`deploy`, `check`, `rollback` and the TUI's engine process keep their threads on one
CPU (`--all-cpus`, or `RELEASE_CONSOLE_ALL_CPUS=1` for these commands and the TUI, lets
them spread). Not `drill`, whose simulated fleet runs in its own process (or whose lab
control planes, started by it, would inherit the CPU), nor `follow` (not measured).

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

A pinned process cannot leave a busy CPU by itself: `CpuWatch` (one thread, a look every
`WATCH_EVERY` s at `/proc/stat`'s per-CPU times and the process's own) moves every thread
of the process to another allowed CPU when the kept one is saturated and other programs
(a second console or shard started beside it, a busy CI neighbour) took a quarter of a
core more of it than everything took of the other. It never spreads the threads again:
with every CPU busy, spread threads meet a busy program on each CPU and pay the
cross-core handoffs besides.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

WATCH_EVERY = 2.0    # s between the watcher's looks (a move within two looks)
SATURATED = 0.10     # the kept CPU is contested below this share idle...
MARGIN = 0.25        # ...and another is better when every program took this much less of
                     # it than other programs took of the kept one
TRACE_ENV = "RELEASE_CONSOLE_CPU_TRACE"   # set: the watcher's moves and cost on stderr
ALL_CPUS_ENV = "RELEASE_CONSOLE_ALL_CPUS"  # set: nothing is kept to one CPU (`--all-cpus`)


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


def one_cpu_unless_spread(config: Any, all_cpus: bool = False) -> int | None:
    """`keep_to_one_cpu()` unless `all_cpus` (the flag), `$RELEASE_CONSOLE_ALL_CPUS` or a
    release of `config` runs programs that would inherit it; the CPU kept, or None."""
    if all_cpus or os.environ.get(ALL_CPUS_ENV) or runs_programs(config):
        return None
    return keep_to_one_cpu()


def affinity() -> set[int] | None:
    """The calling thread's allowed CPUs (None where the system has no such call)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def give_back(cpus: set[int] | None) -> None:
    """Stop the watcher (`CpuWatch`) if one runs, and allow the calling thread `cpus`
    again (from `affinity()`), if it changed."""
    stop_watching()
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
    watch(cpu, allowed)
    return cpu


def cpu_times() -> dict[int, tuple[int, int]]:
    """Each CPU's (busy, idle) clock ticks since boot, from `/proc/stat`."""
    times = {}
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if not line.startswith("cpu"):
                break
            name, *fields = line.split()
            if name == "cpu":
                continue
            # user nice system idle iowait irq softirq steal (guest is within user)
            ticks = [int(f) for f in fields[:8]]
            idle = ticks[3] + ticks[4]
            times[int(name[3:])] = (sum(ticks) - idle, idle)
    return times


def own_ticks() -> int:
    """The clock ticks this process's threads ran (user + system, `/proc/self/stat`)."""
    with open("/proc/self/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def move_threads(kept: int, cpu: int) -> int:
    """Every thread of this process kept on `kept` onto `cpu` (affinity is per thread on
    Linux; a thread started meanwhile inherits its starter's old mask, so look again until
    a look finds none left); how many threads were moved. Threads allowed other CPUs are
    not the command's (a caller's, when the command runs in-process) and stay."""
    moved = 0
    for _ in range(5):
        left = 0
        for task in os.listdir("/proc/self/task"):
            tid = int(task)
            try:
                if os.sched_getaffinity(tid) == {kept}:
                    os.sched_setaffinity(tid, {cpu})
                    left += 1
            except (ProcessLookupError, PermissionError):   # ended meanwhile
                continue
        moved += left
        if not left:
            break
    return moved


class CpuWatch(threading.Thread):
    """Looks every `every` s at how busy each allowed CPU is, and moves the process from
    the CPU it keeps to another when the kept one is contested (module docstring)."""

    def __init__(self, cpu: int, allowed: set[int], every: float = WATCH_EVERY) -> None:
        super().__init__(name="cpu-watch", daemon=True)
        self.cpu = cpu
        self.allowed = set(allowed)
        self.every = every
        self.moves: list[tuple[float, int, int]] = []   # (s since start, from, to)
        self.looks = 0
        self.cpu_seconds = 0.0      # the watcher's own CPU (thread time)
        self._halt = threading.Event()
        self._start = time.monotonic()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)

    def run(self) -> None:
        try:
            before = (cpu_times(), own_ticks())
        except (OSError, ValueError):
            return
        while not self._halt.wait(self.every):
            begun = time.thread_time()
            try:
                now = (cpu_times(), own_ticks())
                target = self.quieter(before, now)
                if target is not None:
                    move_threads(self.cpu, target)
                    self.moves.append((time.monotonic() - self._start, self.cpu, target))
                    self.cpu = target
                    now = (cpu_times(), own_ticks())   # the next look starts here
            except (OSError, ValueError):
                return
            finally:
                self.looks += 1
                self.cpu_seconds += time.thread_time() - begun
            before = now

    def quieter(self, before: tuple[dict[int, tuple[int, int]], int],
                now: tuple[dict[int, tuple[int, int]], int]) -> int | None:
        """The CPU to move to, or None to stay: the kept CPU was saturated (under
        `SATURATED` idle), and on the least busy other allowed CPU every program together
        took `MARGIN` or less of it than programs not ours took of the kept one (on an
        idle CPU we would have what they took from us; on a busy one, nothing better)."""
        (cpus0, own0), (cpus1, own1) = before, now
        busy: dict[int, float] = {}    # cpu -> the share of its time it was busy
        idle: dict[int, float] = {}
        for cpu in self.allowed:
            if cpu not in cpus0 or cpu not in cpus1:
                continue
            ticks = sum(cpus1[cpu]) - sum(cpus0[cpu])
            if ticks > 0:
                busy[cpu] = (cpus1[cpu][0] - cpus0[cpu][0]) / ticks
                idle[cpu] = (cpus1[cpu][1] - cpus0[cpu][1]) / ticks
        if self.cpu not in busy or idle[self.cpu] >= SATURATED:
            return None
        ticks = sum(cpus1[self.cpu]) - sum(cpus0[self.cpu])
        others = busy[self.cpu] - (own1 - own0) / ticks   # all of ours ran on the kept CPU
        best = min((c for c in busy if c != self.cpu), key=lambda c: busy[c], default=None)
        if best is None or busy[best] + MARGIN > others:
            return None
        return best

    def report(self) -> str:
        """One line: the moves, and what the watcher cost."""
        moves = ", ".join(f"{a} -> {b} at {t:.1f}s" for t, a, b in self.moves) or "none"
        return (f"one cpu: kept {self.cpu}; moves: {moves}; watcher {self.cpu_seconds:.4f} "
                f"CPU s in {self.looks} looks")


_watch: CpuWatch | None = None


def watch(cpu: int, allowed: set[int]) -> CpuWatch | None:
    """Start the watcher for a process kept on `cpu` (`allowed` the CPUs it may move
    to); None where /proc/stat cannot be read."""
    global _watch
    stop_watching()
    if not Path("/proc/stat").exists() or not Path("/proc/self/task").is_dir():
        return None
    _watch = CpuWatch(cpu, allowed)
    _watch.start()
    return _watch


def stop_watching() -> None:
    """Stop the watcher, if one runs (its line on stderr with `RELEASE_CONSOLE_CPU_TRACE`)."""
    global _watch
    if _watch is None:
        return
    _watch.stop()
    if os.environ.get(TRACE_ENV):
        print(_watch.report(), file=sys.stderr, flush=True)
    _watch = None

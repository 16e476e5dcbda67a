"""`release-console status` of a big fleet: the clusters' reads dealt over forked processes.

One cluster's read is mostly its TLS handshake and one GET (about 1.8 ms of CPU), and a
process's reads share one interpreter lock: a thousand of them took ~3 s of one core
while the machine's other core idled. `FleetReading` forks worker processes once the
fleet file is loaded - before any thread, connection or credential exists - gives each a
share of the clusters, reads one share itself, and puts the answers back in the fleet
file's order. Each worker reads its share exactly as `Engine.status` reads a fleet
(the same readers, timeouts and per-cluster messages) and sends back only the
`ClusterStatus`es (versions and error texts: no credential crosses the pipe).

Left in one process: small fleets (a fork costs more than it saves), systems other than
Linux, a process that already runs threads (forking one is unsafe), and fleets with a
cluster whose credentials come from Vault (an AppRole secret id may allow only a few
logins; each worker would log in on its own). A worker that dies or sends nothing usable
has its share read again by the parent; one still running past every read's bound is
killed and its clusters are "no answer", as `Engine.status` says of a read that never
ends.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from console.engine.api import ClusterStatus

# Fewer clusters than this per process and forking is not worth it (a fork, a worker's
# start and its exit cost a few ms; a read ~2 ms).
MIN_CLUSTERS_PER_WORKER = 64
# One process per CPU: one more (3 on 2 CPUs) spent ~20% more CPU and was slower in
# `bench/status_scale.py` (2026-12-02, load ~8: 3.8-5.6 s against 3.0-4.5 s wall).
MAX_PROCESSES = 8


def processes_for(config: Any, cpus: int | None = None, threads: int | None = None,
                  wanted: int | None = None) -> int:
    """How many processes read `config`'s fleet (1: no worker is forked); `cpus` and
    `threads` (this process's) default to what the system says. `wanted` asks for that
    many instead of one per usable CPU, still 1 where a fork is unsafe (not Linux, or a
    thread already running): the one place that decides whether `FleetReading` forks."""
    if threads is None:
        threads = threading.active_count()
    if not _can_fork() or threads > 1:
        return 1
    if wanted is not None:
        return max(1, wanted)
    if any(c.credentials.vault for c in config.clusters):
        return 1
    if cpus is None:
        cpus = usable_cpus()
    return max(1, min(cpus, MAX_PROCESSES, len(config.clusters) // MIN_CLUSTERS_PER_WORKER))


def usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: its affinity, lowered by a cgroup v2 CPU quota (a
    CI pod limited to 2 CPUs on a 16-CPU node gets 2 - more readers than that only
    contend for the quota, which measured slower)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    try:
        with open(cpu_max, encoding="ascii") as limit:
            quota, period = limit.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass                            # no cgroup v2 limit readable: the affinity stands
    return cpus


def _can_fork() -> bool:
    """Linux only: on macOS a fork without exec is unsafe once system frameworks are
    loaded (the proxy settings are read through them), which Python's own
    multiprocessing avoids there too."""
    return hasattr(os, "fork") and sys.platform.startswith("linux")


@dataclass
class _Worker:
    pid: int
    pipe: int
    ids: list[str]
    data: bytearray
    done: bool = False


class FleetReading:
    """The fleet's statuses being read: workers forked at construction (call it before
    starting any thread), `statuses()` reads the parent's share and gathers the rest."""

    def __init__(self, engine: Any, processes: int | None = None) -> None:
        """Fork the workers: `processes` in all, the parent included (default: one per
        usable CPU, `processes_for`, which also keeps it to 1 where a fork is unsafe; 1
        reads everything in this process, as `Engine.status`)."""
        self.engine = engine
        self.ids = [c.id for c in engine.config.clusters]
        count = processes_for(engine.config, wanted=processes)
        # Dealt round-robin: a fleet file groups slow regions together, a deal spreads them.
        self.shares = [self.ids[k::count] for k in range(count)]
        self.workers: list[_Worker] = []
        if count <= 1:
            return
        # Made before the fork, so that every worker writes its clusters' credential files
        # in the parent's private directory, which the parent removes at exit (a worker
        # ends with os._exit, which runs no exit handler).
        from console.kube.private_files import private_dir
        private_dir()
        # Everything made so far lives to the end: the collector need not walk it again
        # in any process, and a worker's collections do not copy the parent's pages.
        gc.freeze()
        try:
            for share in self.shares[1:]:
                self.workers.append(_fork(engine, share))
        except BaseException:
            self.close()
            raise
        self.began = time.monotonic()

    def statuses(self) -> list[ClusterStatus]:
        """Every cluster's `ClusterStatus`, in the fleet file's order, each read as a
        one-shot `Engine.status(keep_connections=False)` reads it."""
        if not self.workers:
            return self.engine.status(keep_connections=False)
        try:
            own = self.engine.status(self.shares[0], keep_connections=False)
            found = {s.cluster: s for s in own}
            found.update(_collect(self.engine, self.workers, self.began,
                                  max(len(w.ids) for w in self.workers)))
        finally:
            self.close()
        return [found[cid] for cid in self.ids]

    def close(self) -> None:
        """End every worker still running (safe to call twice)."""
        workers, self.workers = self.workers, []
        for worker in workers:
            _end(worker)


def _fork(engine: Any, share: list[str]) -> _Worker:
    """A worker reading `share`; it writes the pickled list of its statuses and exits."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # the worker
        code = 1
        try:
            os.close(read_end)
            # Ctrl-C reaches the whole process group: the parent decides what happens.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            data = pickle.dumps(engine.status(share, keep_connections=False),
                                protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            # No exit handlers, no flushing of the parent's buffers, no joining of
            # readers that outlived their bound: the parent owns all of that.
            os._exit(code)
    os.close(write_end)
    return _Worker(pid, read_end, share, bytearray())


def _collect(engine: Any, workers: Sequence[_Worker], began: float,
             largest: int) -> dict[str, ClusterStatus]:
    """The workers' statuses by cluster; a share that did not come back is read here."""
    from console.engine.queries import STATUS_READERS
    # A worker's reads end within Engine.status' own bound (its readers' timeouts times
    # the rounds of its share); past that and a margin, it is not coming.
    bound = engine.status_timeout * 2 + 2
    rounds = -(-largest // max(1, min(engine.status_readers or STATUS_READERS, largest)))
    deadline = began + bound * rounds + 10.0
    pending = {w.pipe: w for w in workers}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(pending), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                pending[fd].data += chunk
            else:
                pending.pop(fd).done = True
    found: dict[str, ClusterStatus] = {}
    again: list[str] = []
    for worker in workers:
        statuses = _statuses(worker)
        if statuses is not None:
            found.update((s.cluster, s) for s in statuses)
        elif worker.done:
            again.extend(worker.ids)         # it died or failed: read its share here
        else:
            for cid in worker.ids:           # still reading past every bound
                found[cid] = ClusterStatus(cid, None, None, None, 0, 0, False,
                                           f"no answer within {bound:g}s")
    if again:
        found.update((s.cluster, s) for s in engine.status(again, keep_connections=False))
    return found


def _statuses(worker: _Worker) -> list[ClusterStatus] | None:
    """What the worker sent, when it ended well and sent one status per cluster."""
    if not worker.done:
        return None
    _, status = os.waitpid(worker.pid, 0)
    worker.pid = 0
    if status != 0:
        return None
    try:
        statuses = pickle.loads(bytes(worker.data))  # noqa: S301 - our own fork's bytes
    except Exception:  # noqa: BLE001 - a truncated answer is read again, not raised
        return None
    if not isinstance(statuses, list) or \
            [getattr(s, "cluster", None) for s in statuses] != worker.ids:
        return None
    return statuses


def _end(worker: _Worker) -> None:
    """Close the worker's pipe; kill and reap it if it is still running."""
    try:
        os.close(worker.pipe)
    except OSError:
        pass
    if worker.pid:
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(worker.pid, 0)
        worker.pid = 0

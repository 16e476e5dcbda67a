"""Pacing: at most N cluster starts in any sliding window of W seconds.

`max_starts: 10/30s` on a strategy, or `deploy --pace 10/30s`, so a parallel wave of 200
clusters does not pull 200 images from the registry at once (rancher/fleet#2891). The
wave runner asks `Pacer.delay()` before each start and counts the start when it hands
the cluster to a worker (`reserve`); the worker moves that count to the moment its
rollout really begins, CLUSTER_STARTED (`began`), so the window is measured on real
starts. A reserved start counts as starting now until it begins or is released (the
worker ended without starting: `release`) - however long the hand-off takes, it never
leaves the window before it began. A cluster that must wait is told once as CLUSTER_PACED (with when a start slot
frees). The window slides: a start at t counts until t + W. A cluster started again - an
operator's retry - is a start like any other: it waits for a slot, is told CLUSTER_PACED
again, and its first start still counts until it leaves the window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from console.events import Kind

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun


class Pacer:
    """The start times inside the window; thread-safe. `limit` None: no pacing."""

    def __init__(self, limit: tuple[int, float] | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        # (cluster, when, begun) of every start in the window: a retried cluster has
        # two. A start not begun yet (reserved) counts as "now" until it begins.
        self._starts: list[tuple[str, float, bool]] = []
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds until another cluster may start (0: now)."""
        if self.limit is None:
            return 0.0
        count, window = self.limit
        now = self.clock()
        with self._lock:
            self._starts = [(c, t, b) for c, t, b in self._starts
                            if not b or t > now - window]
            times = sorted(t if b else now for _c, t, b in self._starts)
        if len(times) < count:
            return 0.0
        # The count-th newest start leaves the window first to make room.
        return max(0.0, times[-count] + window - now)

    def reserve(self, cid: str) -> None:
        """Count `cid`'s start now (it is handed to a worker)."""
        if self.limit is not None:
            with self._lock:
                self._starts.append((cid, self.clock(), False))

    def began(self, cid: str) -> None:
        """`cid`'s rollout really begins now: its start counts from here."""
        if self.limit is not None:
            with self._lock:
                for i in range(len(self._starts) - 1, -1, -1):   # its latest start
                    if self._starts[i][0] == cid:
                        self._starts[i] = (cid, max(self._starts[i][1], self.clock()), True)
                        break

    def release(self, cid: str) -> None:
        """`cid`'s worker ended without its rollout beginning (skipped, or failed before
        the start): its reserved start no longer counts."""
        if self.limit is not None:
            with self._lock:
                for i in range(len(self._starts) - 1, -1, -1):
                    c, _t, begun = self._starts[i]
                    if c == cid and not begun:
                        del self._starts[i]
                        break


def tell_paced(engine: Engine, run: ReleaseRun, wave: int, held: Sequence[str],
               delay: float) -> None:
    """Tell CLUSTER_PACED for the clusters pacing holds now (once per start of a cluster:
    a retry forgets that its first start was told, `run.paced.discard`)."""
    limit = run.plan.max_starts
    assert limit is not None
    until = time.time() + delay
    for cid in held:
        if cid in run.paced:
            continue
        run.paced.add(cid)
        engine.event(Kind.CLUSTER_PACED, run.release_id, cid,
                     f"held by pacing: at most {limit[0]} start(s) in any {limit[1]:g}s; "
                     f"a slot frees in {delay:.1f}s", wave=wave, until=round(until, 3),
                     max_starts=limit[0], window=limit[1])

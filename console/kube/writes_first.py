"""Writes before watches: the applies of a release go ahead of the watches its rollouts open.

A parallel wave starts every cluster at once; each rollout applies, then opens its two
watches (two TLS handshakes: the largest CPU cost of a start). On a busy machine the
first clusters' watch opens competed with the last clusters' applies, so the last apply -
which the release's wall time waits for - came seconds late (1,000 clusters: the last
start 11 s after the first). A rollout therefore waits, before opening its watches, while
applies are in flight in this process - at most `MAX_WAIT` s. The watches start from the
apply's resourceVersion, so waiting misses no event.

An apply counts from the moment the wave hands its cluster out (`coming()`), not only
while its request is on its way: a cluster's thread may reach its apply late on a busy
machine (its start told, its manifests rendered), and a cluster that applied meanwhile
took "no apply in flight" for "every apply done" and opened its watches ahead of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT = 5.0      # s a rollout's first watch open waits for other clusters' applies


class WritesFirst:
    """Counts the writes in flight or to come; `wait_quiet` waits until there are none."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writing = 0

    def coming(self) -> Coming:
        """A write to come (a cluster handed out, its apply not yet done): counted until
        the returned `Coming` is done."""
        with self._cond:
            self._writing += 1
        return Coming(self)

    def _done(self) -> None:
        with self._cond:
            self._writing -= 1
            if not self._writing:
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around one write (an apply) to a cluster."""
        with self._cond:
            self._writing += 1
        try:
            yield
        finally:
            self._done()

    def wait_quiet(self, limit: float = MAX_WAIT) -> bool:
        """Wait until no write is in flight, at most `limit` s; whether none is."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._writing, timeout=limit)


class Coming:
    """One write to come (`WritesFirst.coming`); `done()` once it is done or will not
    happen (idempotent: the apply's end and the cluster's end may both say so)."""

    def __init__(self, writes: WritesFirst) -> None:
        self._writes = writes
        self._lock = threading.Lock()
        self._open = True

    def done(self) -> None:
        """No longer to come."""
        with self._lock:
            was, self._open = self._open, False
        if was:
            self._writes._done()


# The process's writes: every cluster driver's applies count here.
WRITES = WritesFirst()

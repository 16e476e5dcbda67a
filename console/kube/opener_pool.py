"""`OpenerPool`: the threads that open watches for the rollout loop, `size` at a time,
plus one more thread for each open that has run over `stall` s.

A fixed pool let opens that hang on silent clusters (a connect accepted, never answered,
held until the read timeout) take every thread: a healthy cluster's re-open then waited
in the queue while its unreachable grace ran out, the console's own slowness failing it.
As `console.kube.open_gate` does for opens in flight, an open older than `stall` stops
counting against the size, so nothing waits more than `stall` s behind one that hangs.
Threads over `size` end when they find nothing to do.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from console.kube.open_gate import STALL

log = logging.getLogger(__name__)


class OpenerPool:
    """Runs submitted calls on its threads; see the module docstring."""

    def __init__(self, size: int, stall: float = STALL, name: str = "watch-open") -> None:
        self._size, self._stall, self._name = size, stall, name
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._mind_wake = threading.Condition(self._lock)
        self._jobs: deque[Callable[[], Any]] = deque()
        self._busy: dict[int, float] = {}   # worker -> when its call began
        self._idle = 0                      # workers waiting, not yet woken
        self._starting = 0                  # workers started or woken to take a job
        self._threads = 0
        self._minding = False
        self._ids = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on a pool thread (its exceptions are logged)."""
        with self._lock:
            self._jobs.append(partial(fn, *args))
            if self._place(time.monotonic()) is not None and not self._minding:
                self._minding = True
                threading.Thread(target=self._mind, name=f"{self._name}-minder",
                                 daemon=True).start()

    def threads(self) -> int:
        """Threads alive now (for tests and figures)."""
        with self._lock:
            return self._threads

    # -- under the lock -------------------------------------------------------------------

    def _place(self, now: float) -> float | None:
        """Give queued calls a thread where there is room; when to look again (None:
        every queued call has one)."""
        while len(self._jobs) > self._starting:
            if self._idle:
                self._idle -= 1
                self._starting += 1
                self._work_ready.notify()
                continue
            fresh = [began for began in self._busy.values() if now - began < self._stall]
            if len(fresh) + self._starting < self._size:
                self._threads += 1
                self._starting += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"{self._name}-{next(self._ids)}").start()
                continue
            # Full of calls younger than `stall`: the oldest of them stalls first.
            return (min(fresh) if fresh else now) + self._stall
        return None

    # -- the pool's threads -----------------------------------------------------------------

    def _mind(self) -> None:
        # Only while calls wait: wakes when the oldest call in flight turns `stall` old.
        with self._lock:
            while (at := self._place(time.monotonic())) is not None:
                self._mind_wake.wait(max(0.0, at - time.monotonic()))
            self._minding = False

    def _work(self) -> None:
        me = next(self._ids)
        with self._lock:
            while True:
                self._starting -= 1        # started or woken for a job
                if self._jobs:
                    job = self._jobs.popleft()
                    self._busy[me] = time.monotonic()
                    self._lock.release()
                    try:
                        job()
                    except Exception:  # noqa: BLE001 - one open's bug must not end the thread
                        log.exception("a watch open failed unexpectedly")
                    finally:
                        self._lock.acquire()
                        del self._busy[me]
                    self._starting += 1    # look for the next job straight away
                    continue
                if self._threads > self._size:
                    self._threads -= 1
                    return
                self._idle += 1
                self._work_ready.wait()

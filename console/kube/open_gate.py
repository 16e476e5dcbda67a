"""`OpenGate`: how many watches this process opens at once.

A parallel wave of a thousand rollouts opened two thousand watches at once: as many
threads doing TLS handshakes fought for the GIL, and each open cost two to three times
the CPU it costs alone (1,000 clusters: 19 CPU s for the wave's starts, 8 s with four at
a time). A few opens at a time keep both cores busy; the watches start from their
apply's resourceVersion, so an open that waits its turn misses nothing.

An open that takes longer than `stall` s (a cluster that hangs, or does not connect)
stops counting: it keeps its connection attempt, but no other cluster waits behind it
for longer than that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLOTS = 4       # watch opens in flight at once (both cores busy, no GIL convoy)
STALL = 2.0     # s after which an open in flight no longer holds others back
                # (a healthy one takes milliseconds of CPU, a second on a loaded machine)


class OpenGate:
    """At most `slots` opens that began less than `stall` s ago run at once; the others
    wait in turn (first come, first served)."""

    def __init__(self, slots: int = SLOTS, stall: float = STALL) -> None:
        self.slots = slots
        self.stall = stall
        self._cond = threading.Condition()
        self._began: dict[object, float] = {}    # token -> when its open began

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Around one open: waits until fewer than `slots` recent opens run."""
        token = object()
        with self._cond:
            while True:
                now = time.monotonic()
                recent = [at for at in self._began.values() if now - at < self.stall]
                if len(recent) < self.slots:
                    break
                # Woken when an open ends, or when the oldest recent one turns stale.
                self._cond.wait(min(recent) + self.stall - now)
            self._began[token] = now
        try:
            yield
        finally:
            with self._cond:
                del self._began[token]
                self._cond.notify()


# The process's gate: every rollout's watch opens (`console.kube.watch_hub.HubWatch`).
OPENS = OpenGate()

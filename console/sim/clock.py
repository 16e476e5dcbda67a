"""The simulator's clock: every time a cluster reads and every timer it sets go through one.

`SimClock` is real time: the wall clock, timers on the fleet's event loop. `ManualClock`
is time that moves only when a test says so: `fleet.advance(30)` (or `clock.advance` on
the loop thread) fires every timer that falls due, in order, each seeing the time it
was due at - pods become Ready, `minReadySeconds` pass, a progress deadline runs out,
a cluster dies and revives - without waiting for any of it:

    fleet = SimFleet(["a"], readiness_delay=30, clock=ManualClock())
    ...apply a Deployment...
    fleet.advance(31)          # its pods are Ready now

What stays in real time either way: injected `latency` (the network's) and the length of
a watch (`timeoutSeconds`, the client's read timeout is real too).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any


class SimClock:
    """Real time: `time.time()`, timers on the event loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use `loop` for timers (the fleet does this when it starts)."""
        self.loop = loop

    @classmethod
    def given(cls, clock: SimClock | None, loop: asyncio.AbstractEventLoop) -> SimClock:
        """`clock`, or (a part made on its own, outside a fleet) real time on `loop`."""
        if clock is None:
            clock = cls()
            clock.bind(loop)
        return clock

    def time(self) -> float:
        """Seconds since the epoch, as the cluster's objects record it."""
        return time.time()

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> Any:
        """Run `fn(*args)` on the loop after `delay` s; the handle has `cancel()`."""
        assert self.loop is not None, "the clock is not bound to a loop"
        return self.loop.call_later(max(delay, 0.0), fn, *args)

    async def sleep(self, delay: float) -> None:
        """Wait `delay` s of this clock's time (inside the loop)."""
        await asyncio.sleep(delay)


class _Timer:
    """A pending timer of a ManualClock."""

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run it."""
        self.cancelled = True


class ManualClock(SimClock):
    """Time that stands still until `advance`; timers fire when it passes them."""

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self._now = float(start if start is not None else time.time())
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The clock's time (seconds since the epoch)."""
        return self._now

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> _Timer:
        """Run `fn(*args)` once the clock has been advanced `delay` s past now."""
        timer = _Timer(fn, args)
        heapq.heappush(self._timers, (self._now + max(delay, 0.0), next(self._order), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        """Wait until the clock was advanced `delay` s."""
        assert self.loop is not None, "the clock is not bound to a loop"
        done = self.loop.create_future()
        self.call_later(delay, lambda: done.done() or done.set_result(None))
        await done

    async def advance(self, seconds: float) -> int:
        """Move time on by `seconds`, running every timer due by then in time order (and
        those they set, when due in the span); returns how many ran. Runs on the loop
        (`SimFleet.advance` does that): after each timer the loop's ready callbacks run
        too (the controllers' syncs), still at that timer's time."""
        target = self._now + max(seconds, 0.0)
        ran = 0
        await _settle()
        while self._timers and self._timers[0][0] <= target:
            due, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            if not timer.cancelled:
                timer.fn(*timer.args)
                ran += 1
                await _settle()
        self._now = target
        await _settle()
        return ran

    @property
    def pending(self) -> int:
        """Timers not yet due (cancelled ones excluded)."""
        return sum(not timer.cancelled for _, _, timer in self._timers)


async def _settle(rounds: int = 3) -> None:
    """Let the loop run what is ready (call_soon callbacks schedule one another)."""
    for _ in range(rounds):
        await asyncio.sleep(0)

"""Waiting without polling: `WakingEvent`, a cancel event that wakes whoever follows
it, and `take_batch`, one wait on a queue and then everything that came meanwhile (the
rollout loop of `console.kube.following` and the wave loop of `console.engine.waves` both
decide once per batch)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WakingEvent(threading.Event):
    """A cancel event that also wakes the rollouts following it when set, so they need
    not look at it twice a second (a thousand rollouts looking cost seconds of CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self._wakers: list[Callable[[], None]] = []
        self._wakers_lock = threading.Lock()

    def add_waker(self, wake: Callable[[], None]) -> None:
        """Call `wake()` when the event is set (at once if it is set already)."""
        with self._wakers_lock:
            self._wakers.append(wake)
        if self.is_set():
            wake()

    def remove_waker(self, wake: Callable[[], None]) -> None:
        """Stop calling `wake`."""
        with self._wakers_lock:
            if wake in self._wakers:
                self._wakers.remove(wake)

    def set(self) -> None:  # noqa: D102 - threading.Event API
        super().set()
        with self._wakers_lock:
            wakers = list(self._wakers)
        for wake in wakers:
            wake()


def take_batch(source: queue.SimpleQueue[T] | queue.Queue[T],
               timeout: float | None) -> list[T]:
    """Wait up to `timeout` s (None: as long as it takes) for one item, then take every
    item already queued without waiting; [] when none came in time."""
    try:
        batch = [source.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            batch.append(source.get_nowait())
        except queue.Empty:
            return batch

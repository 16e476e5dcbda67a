"""From engine threads to the UI thread: events and gate questions as Textual messages.

Events arrive from other threads (the engine process's reader thread, in batches), as
fast as clusters report. The bridge queues them and posts at most one `EventsReady`
message until the app has drained the queue, so a burst of a thousand progress events
costs the UI one message, not a thousand. Gate questions block the asking thread until
the person answers.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.message import Message

from console.events import Event, Kind

if TYPE_CHECKING:   # the engine's API module is not needed for the first frame
    from console.engine.api import GateAnswer, GateRequest

BACKLOG = 20_000   # events waiting for the UI thread before progress is thinned out


class EventsReady(Message):
    """Engine events are waiting in the bridge's queue."""

    def can_replace(self, message: Message) -> bool:
        """Two pending notices mean the same thing: drain the queue."""
        return isinstance(message, EventsReady)


class GateQuestion(Message):
    """The engine waits at a gate; `answer` must be called exactly once."""

    def __init__(self, request: GateRequest, answer: Callable[[GateAnswer | None], None]
                 ) -> None:
        super().__init__()
        self.request = request
        self.answer = answer


class EventBridge:
    """The engine listener: queue events, wake the app once per burst.

    Bounded: when more than `backlog` events wait (a UI thread that could not keep up),
    the progress events that a later one of the same cluster supersedes are dropped -
    every other event is kept, in order.
    """

    def __init__(self, post: Callable[[Message], bool], backlog: int = BACKLOG):
        self._post = post
        self._queue: deque[Event] = deque()
        self._lock = threading.Lock()
        self._posted = False
        self.backlog = backlog
        self._compact_at = backlog   # grows when what is left is all worth keeping

    def _compact(self) -> None:
        """Keep every event but superseded progress (caller holds the lock)."""
        if len(self._queue) <= self._compact_at:
            return
        latest: dict[str | None, int] = {}
        for i, event in enumerate(self._queue):
            if event.kind is Kind.CLUSTER_PROGRESS:
                latest[event.cluster] = i
        keep = set(latest.values())
        self._queue = deque(e for i, e in enumerate(self._queue)
                            if e.kind is not Kind.CLUSTER_PROGRESS or i in keep)
        # Scan again only once as much again has arrived (no scan per event).
        self._compact_at = max(self.backlog, 2 * len(self._queue))

    def __call__(self, event: Event) -> None:
        """One event (an engine `Listener`; any thread)."""
        with self._lock:
            self._queue.append(event)
            self._compact()
            if self._posted:
                return
            self._posted = True
        self._post(EventsReady())

    def extend(self, events: list[Event]) -> None:
        """Called with a batch of events (any thread)."""
        with self._lock:
            self._queue.extend(events)
            self._compact()
            if self._posted or not events:
                return
            self._posted = True
        self._post(EventsReady())

    @property
    def pending(self) -> bool:
        """Whether events wait for the app to drain them."""
        with self._lock:
            return bool(self._queue)

    def drain(self) -> list[Event]:
        """Every queued event, oldest first (UI thread)."""
        with self._lock:
            self._posted = False
            events = list(self._queue)
            self._queue.clear()
            self._compact_at = self.backlog
        return events


class GateWaiter:
    """An `Approver` for the engine: asks the UI, blocks until answered or closed."""

    def __init__(self, post: Callable[[Message], bool],
                 on_close: Callable[[GateRequest], GateAnswer]):
        self._post = post
        self._on_close = on_close
        self._closed = threading.Event()

    def close(self) -> None:
        """The app is going away: pending and future gates get `on_close(request)`."""
        self._closed.set()

    def __call__(self, request: GateRequest) -> GateAnswer:
        """Called by the engine at a gate (its thread); returns the person's answer."""
        answers: queue.Queue[GateAnswer] = queue.Queue(maxsize=1)
        if self._closed.is_set():
            return self._on_close(request)
        self._post(GateQuestion(request, answers.put))
        while True:
            try:
                return answers.get(timeout=0.25)
            except queue.Empty:
                if self._closed.is_set():
                    return self._on_close(request)

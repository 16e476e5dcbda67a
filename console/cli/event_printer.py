"""`deploy`'s (and `drill`'s) event printer: an engine listener that prints events as
JSON lines (`--json`, the `console.events` vocabulary) or as short human lines.

Lines are written by a printer thread of its own, never by the thread that made the
event: progress comes from the process's one rollout thread (`console.kube.following`),
and a reader that stops reading (a full stdout pipe) must not stop every rollout's
verdict. An output that cannot be written at all (a full disk, a terminal hung up) ends
the printing, not the release: the lines are counted and `close` says so on stderr.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any, Callable, TextIO

from console.cli.output import out


class EventPrinter:
    """Prints engine events from any thread, in their order, on a thread of its own.

    While more than `PENDING` lines wait, progress lines are dropped (they are for
    watching; every step is still printed); `close` prints what is left and says how
    many were dropped or could not be written."""

    PENDING = 1000

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        from console.events import Kind
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._start = time.monotonic()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ending: threading.Thread | None = None   # the printer thread `close` ends
        self.dropped = 0           # progress lines not printed while output was blocked
        self.failed: str | None = None   # why the output could not be written
        self.lost = 0              # lines not printed since
        self._quiet = (Kind.CLUSTER_PROGRESS, Kind.PREFLIGHT_RESULT)

    def __call__(self, event: Any) -> None:
        """Print one event (any thread; never waits for the output)."""
        progress, result = self._quiet
        if self.as_json:
            # One encoder for every line: `json.dumps` with any option builds a new one
            # per call (tens of thousands of lines in a thousand-cluster release).
            line = _JSON_LINE.encode(event.to_json())
        else:
            # Per-replica progress is for people watching a terminal; a CI log gets the steps.
            if event.kind is progress and not self.tty:
                return
            if event.kind is result and event.data.get("ok"):
                return
            elapsed = time.monotonic() - self._start
            who = f"{event.cluster}: " if event.cluster else ""
            line = f"[{elapsed:6.1f}s] {_MARK.get(event.kind.value, ' ')} {who}" \
                   f"{event.message or event.kind.value}"
        if event.kind is progress and self._lines.qsize() >= self.PENDING:
            with self._lock:
                self.dropped += 1
            return
        with self._lock:
            # Under the lock, so no line slips in after `close`'s end mark.
            if self._closed:
                # After `close` (a straggler from a thread still ending): printed here,
                # so it is neither lost nor left to a thread nobody joins - once the
                # printer thread has written every earlier line (it never takes the lock).
                if self._ending is not None:
                    self._ending.join()
                self._write([line])
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._print, daemon=True,
                                                name="event-printer")
                self._thread.start()
            self._lines.put(line)

    def _print(self) -> None:
        lines = self._lines
        while True:
            # Every line waiting goes out in one write (a thousand-cluster release prints
            # ~17,000 lines, mostly in bursts: one write and flush per line was a system
            # call each); None, put last by `close`, ends the thread.
            batch = [lines.get()]
            while batch[-1] is not None:
                try:
                    batch.append(lines.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write([line for line in batch if line is not None])
            finally:
                for _ in batch:
                    lines.task_done()
            if batch[-1] is None:
                return

    def _write(self, text: list[str]) -> None:
        if not text:
            return
        if self.failed is not None:
            self.lost += len(text)
            return
        try:
            # A reader gone (`deploy --json | head`) ends the output, not the release.
            out("\n".join(text), self.stream)
        except Exception as exc:  # noqa: BLE001 - ENOSPC, EIO, a closed stream: told at close
            # The thread must live on: `flush` (the gate question) waits for every line.
            self.failed = f"{type(exc).__name__}: {exc}"
            self.lost += len(text)

    def flush(self) -> None:
        """Wait until every line given so far is printed (or counted as not printable)."""
        if self._thread is not None:
            self._lines.join()

    def close(self) -> None:
        """Print what is left, then stop the printer thread, and say on stderr how many
        progress lines were dropped and how many lines could not be written, if any."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._closed = True
            if thread is not None:
                self._lines.put(None)
                self._ending = thread
        if thread is not None:
            thread.join()
        if self.dropped:
            print(f"release-console: {self.dropped} progress line(s) not printed while the "
                  "output was not read", file=sys.stderr, flush=True)
            self.dropped = 0
        if self.failed is not None:
            print(f"release-console: warning: {self.lost} event line(s) not printed: "
                  f"{self.failed}", file=sys.stderr, flush=True)
            self.lost = 0


def after_printing(printer: EventPrinter,
                   approver: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`approver`, asked once every event so far is printed: the terminal's question
    comes after the gate's line (events are printed by a thread of their own)."""
    def ask(request: Any) -> Any:
        printer.flush()
        return approver(request)
    return ask


# `json.dumps(..., default=str)`'s encoder, made once.
_JSON_LINE = json.JSONEncoder(default=str)
_MARK = {"cluster_healthy": "+", "cluster_failed": "!", "cluster_rolled_back": "<",
         "cluster_unreachable": "!", "cluster_skipped": "-", "gate_waiting": "?",
         "release_finished": "=", "preflight_finished": "*"}

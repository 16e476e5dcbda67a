"""`deploy`'s (and `drill`'s) event printer: an engine listener that prints events as
JSON lines (`--json`, the `console.events` vocabulary) or as short human lines.

Lines are written by a printer thread of its own, never by the thread that made the
event: progress comes from the process's one rollout thread (`console.kube.following`),
and a reader that stops reading (a full stdout pipe) must not stop every rollout's
verdict. An output that cannot be written at all (a full disk, a terminal hung up) ends
the printing, not the release: the lines are counted and `close` says so on stderr.

Nor may such a reader keep the process from ending: once the release has ended, `close`
waits for the lines left as long as the output takes some of them at least every
`stall` seconds (a slow reader loses nothing), then gives the rest up and says how many
on stderr. The printer writes to the stream's file descriptor itself, a pipe's atomic
size at a time and only once `poll` says it is writable, so it never sits in a write
(nor holds the stream's lock, which the interpreter's last flush would wait for). When
stderr is that very output (`deploy --json 2>&1 | reader`), the note waits for room the
same way, at most `stall` seconds; then stderr too moves to /dev/null, so neither the
note nor a later line on stderr can hold the process. While the release runs, stderr
itself (a pipe or a socket) goes through a pump of its own (`take_stderr`,
`console.cli.stderr_pump`): a warning written then never waits on its reader either.
"""

from __future__ import annotations

import io
import json
import os
import select
import stat
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, TextIO

from console.cli.output import reader_gone
from console.cli.stderr_pump import StderrPump, may_block


class _GivenUp(Exception):
    """The output was given up (not read for `stall` seconds after the release ended)."""


class EventPrinter:
    """Prints engine events from any thread, in their order, on a thread of its own.

    While more than `PENDING` lines wait, progress lines are dropped (they are for
    watching; every step is still printed); `close` prints what is left and says how
    many were dropped or could not be written."""

    PENDING = 1000
    STALL = 30.0      # seconds an output may take nothing once the release has ended

    def __init__(self, as_json: bool, stream: TextIO | None = None,
                 stall: float | None = None) -> None:
        from console.events import Kind
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.stall = self.STALL if stall is None else stall
        self._fd = _descriptor(self.stream)
        # A file takes any write at once (one write per batch, as before); a pipe or a
        # terminal only up to its atomic size without blocking.
        self._chunk = _FILE_CHUNK if self._fd is not None and _is_file(self._fd) \
            else select.PIPE_BUF
        self._start = time.monotonic()
        self._waiting: deque[str] = deque()
        self._cond = threading.Condition()    # guards the lines waiting and the flags
        self._thread: threading.Thread | None = None
        self._closed = False       # the release has ended: the bound on waiting applies
        self._done = False         # no printer thread takes lines any more
        self._given_up = False     # the output was not read for `stall` seconds
        self._err_shared = False   # given up, and stderr is the same file: notes wait
        self._gone = False         # the reader went away (`| head`): the rest is dropped
        self._moved = time.monotonic()   # when the output last took something
        self.queued = 0            # lines given to be printed
        self.printed = 0           # of them, written whole
        self._settled = 0          # of them, written, discarded or counted as lost
        self._discarded = 0        # not written: the reader had gone (quietly)
        self._told = 0             # not printed, and said so on stderr
        self._closed_told = False  # `close` has said its counts
        self.dropped = 0           # progress lines not printed while output was blocked
        self.failed: str | None = None   # why the output could not be written
        self._quiet = (Kind.CLUSTER_PROGRESS, Kind.PREFLIGHT_RESULT)
        self._pump: StderrPump | None = None   # stderr while the release runs

    def take_stderr(self) -> None:
        """Until `close`, nothing written to stderr (fd 2) waits on its reader: it goes
        through a `StderrPump` when stderr is a pipe or a socket (`2>&1 | reader`)."""
        if self._pump is None and not self._closed and may_block(_STDERR):
            self._pump = StderrPump(_STDERR)

    def __call__(self, event: Any) -> None:
        """Print one event (any thread; never waits for the output before `close`)."""
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
        with self._cond:
            if not self._done:
                if event.kind is progress and len(self._waiting) >= self.PENDING:
                    self.dropped += 1
                    return
                if self._thread is None:
                    self._thread = threading.Thread(target=self._print, daemon=True,
                                                    name="event-printer")
                    self._thread.start()
                self.queued += 1
                self._waiting.append(line)
                self._cond.notify_all()
                return
            # After `close` (a straggler from a thread still ending): printed here, under
            # the lock so stragglers keep their order, and told at once if it is not -
            # `close` has said its counts already.
            self.queued += 1
            self._moved = time.monotonic()
            self._output([line])
            self._settled += 1
            self._tell()

    def _print(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._done or not self._waiting:   # given up, or every line out
                    self._done = True
                    self._cond.notify_all()
                    return
                # Every line waiting goes out in one write (a thousand-cluster release
                # prints ~17,000 lines, mostly in bursts: one write per line was a system
                # call each).
                batch = list(self._waiting)
                self._waiting.clear()
                self._moved = time.monotonic()
            self._output(batch)
            with self._cond:
                self._settled += len(batch)
                self._cond.notify_all()

    def _output(self, lines: list[str]) -> None:
        """Write `lines`, or count them: `printed` gets the lines written whole."""
        if self._gone or self._given_up or self.failed is not None:
            if self._gone:
                self._discarded += len(lines)
            return
        before = self.printed
        text = "\n".join(lines) + "\n"
        try:
            if self._fd is None:
                self.stream.write(text)
                self.stream.flush()
                self.printed += len(lines)
            else:
                self._send(text.encode(self._encoding(), "replace"))
        except _GivenUp:
            pass
        except BrokenPipeError:
            # A reader gone (`deploy --json | head`) ends the output quietly, not the release.
            self._gone = True
            self._discarded += len(lines) - (self.printed - before)
            if self.stream is sys.stdout:
                reader_gone()
        except Exception as exc:  # noqa: BLE001 - ENOSPC, EIO, a closed stream: told at close
            # The thread must live on: `flush` (the gate question) waits for every line.
            self.failed = f"{type(exc).__name__}: {exc}"

    def _send(self, data: bytes) -> None:
        """Write `data` to the descriptor, whole lines of at most `_chunk` bytes at a time
        and only once `poll` says it can take them - so a pipe's write never blocks -
        counting the lines written whole; gives up once `_stalled` after `close`."""
        fd = self._fd
        assert fd is not None
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        view = memoryview(data)
        while view:
            if self._given_up:
                raise _GivenUp
            if not poller.poll(250):
                if self._stalled():
                    self._given_up = True
                continue
            chunk = view[:self._chunk].tobytes()
            if len(view) > len(chunk) and b"\n" in chunk:
                # Whole lines per write: a pipe takes them atomically, and another
                # writer of the same output (drill's notes on stderr) cannot split one.
                chunk = chunk[:chunk.rfind(b"\n") + 1]
            try:
                n = os.write(fd, chunk)
            except BlockingIOError:
                # A descriptor inherited non-blocking, filled by another writer between
                # the poll and the write: no room yet, as if the poll had said so.
                if self._stalled():
                    self._given_up = True
                time.sleep(0.05)   # the poll may say writable again at once: no spin
                continue
            self.printed += chunk[:n].count(b"\n")
            view = view[n:]
            self._moved = time.monotonic()

    def _stalled(self) -> bool:
        """The release has ended and the output has taken nothing for `stall` seconds."""
        return self._closed and time.monotonic() - self._moved > self.stall

    def _encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def flush(self) -> None:
        """Wait until every line given so far is printed (or counted as not printable),
        or the output has taken nothing for `stall` seconds."""
        with self._cond:
            target, since = self.queued, time.monotonic()
            while self._settled < target and not self._done:
                if time.monotonic() - max(since, self._moved) > self.stall:
                    return
                self._cond.wait(0.25)

    def close(self) -> None:
        """Print what is left, then stop the printer thread, and say on stderr how many
        progress lines were dropped and how many lines could not be written, if any.

        Waits as long as the output takes something at least every `stall` seconds."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._moved = time.monotonic()    # the bound counts from the release's end
            thread = self._thread
            if thread is None:
                self._done = True
            self._cond.notify_all()
        while thread is not None and thread.is_alive():
            thread.join(0.25)
            with self._cond:
                if not self._given_up and thread.is_alive() and self._stalled():
                    self._given_up = True
                if self._given_up:
                    self._done = True     # later lines are the caller's (and lost)
                    break
        if self._given_up and thread is not None:
            # The thread leaves its write within a poll; a stream without a descriptor may
            # hold it for good (a daemon thread: it does not keep the process).
            thread.join(1.0)
        if self._pump is not None:
            # What was written to stderr during the release, within the same bound - not
            # waited for at all when it is the output just given up (`2>&1`).
            pump, self._pump = self._pump, None
            shared = self._given_up and self._fd is not None and pump.shares(self._fd)
            pump.stop(0 if shared else self.stall)
            if pump.dropped and not pump.given_up and not shared:
                self._say(f"{pump.dropped} byte(s) written to stderr during the release "
                          "not printed: it was not read")
        if self._given_up:
            if self._fd is not None and self.stream is not sys.stderr:
                self._err_shared = _same_file(self._fd, _STDERR)   # before stdout moves
            if self._fd is not None and self.stream is sys.stdout:
                reader_gone()   # the summary and the last flush must not wait either
        with self._cond:
            if self.dropped:
                self._say(f"{self.dropped} progress line(s) not printed while the output was "
                     "not read")
                self.dropped = 0
            self._tell()
            self._closed_told = True

    def _tell(self) -> None:
        """Say on stderr how many lines were not printed and why, once per line."""
        missing = self.lost
        if missing <= 0:
            return
        why = self.failed if self.failed is not None else \
            f"the output took nothing for {self.stall:g}s after the release ended"
        late = " after the end of the output" if self._closed_told else ""
        self._told += missing     # a later straggler tells only its own line
        if self._given_up and self.stream is sys.stderr:
            return    # the report would wait on the very output given up
        self._say(f"warning: {missing} event line(s) not printed{late}: {why}")

    def _say(self, text: str) -> None:
        """Say `text` on stderr; when stderr is the output given up (`2>&1`), only if it
        takes the note within `stall` seconds - else stderr moves to /dev/null, so this
        note and every later line on stderr (deploy's summary) are lost, not waited on."""
        if not self._err_shared:
            _say(text)
            return
        note = f"release-console: {text}\n".encode(self._encoding(), "replace")
        if not _write_within(_STDERR, note, self.stall):
            _to_devnull(_STDERR)
            self._err_shared = False    # stderr is /dev/null now: nothing left to wait on

    @property
    def lost(self) -> int:
        """Lines given and neither printed, nor discarded after the reader went, nor
        said on stderr yet."""
        return self.queued - self.printed - self._discarded - self._told


def _say(text: str) -> None:
    try:
        print(f"release-console: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass   # stderr itself gone: nothing is left to tell it to


def _write_within(fd: int, data: bytes, seconds: float) -> bool:
    """Write `data` to `fd` only as `poll` says it can take some, giving up once it
    has taken nothing for `seconds`; True if all of it was written."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    view, moved = memoryview(data), time.monotonic()
    try:
        while view:
            if time.monotonic() - moved > seconds:
                return False
            if not poller.poll(250):
                continue
            try:
                n = os.write(fd, view[:select.PIPE_BUF])
            except BlockingIOError:     # inherited non-blocking: no room yet
                time.sleep(0.05)
                continue
            view, moved = view[n:], time.monotonic()
    except OSError:
        return False     # the reader gone, or stderr closed: nothing to tell it to
    return True


def _to_devnull(fd: int) -> None:
    """Point `fd` at /dev/null (what is printed to it later is lost, never waited on)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _same_file(a: int, b: int) -> bool:
    """Descriptors `a` and `b` are the same file (one pipe: `2>&1`)."""
    try:
        return os.path.samestat(os.fstat(a), os.fstat(b))
    except OSError:
        return False


def _descriptor(stream: TextIO) -> int | None:
    """The stream's file descriptor, its buffer written out first; None for a stream
    without one (a test's StringIO), which is then written through."""
    try:
        fd = stream.fileno()
        stream.flush()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd


def _is_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def after_printing(printer: EventPrinter,
                   approver: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`approver`, asked once every event so far is printed: the terminal's question
    comes after the gate's line (events are printed by a thread of their own)."""
    def ask(request: Any) -> Any:
        printer.flush()
        return approver(request)
    return ask


_FILE_CHUNK = 1 << 24
_STDERR = 2
# `json.dumps(..., default=str)`'s encoder, made once.
_JSON_LINE = json.JSONEncoder(default=str)
_MARK = {"cluster_healthy": "+", "cluster_failed": "!", "cluster_rolled_back": "<",
         "cluster_unreachable": "!", "cluster_skipped": "-", "gate_waiting": "?",
         "release_finished": "=", "preflight_finished": "*"}

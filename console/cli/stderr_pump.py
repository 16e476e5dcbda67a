"""Stderr during a release, never waited on: `deploy`'s file descriptor 2 is a pipe of
its own while the release runs, drained by a thread that passes what comes to the real
stderr only as `poll` says it can take it.

Why: with `deploy --json 2>&1 | reader` (or any stderr pipe) whose reader stops reading,
a warning written to stderr while the release runs - the engine's own notes through
`logging`, Python's `warnings`, a line of `print(..., file=sys.stderr)`, a program the
release starts that inherits stderr - sat in its write for ever, and with it the thread
that wrote it: a rollout, the lock's renewal, the whole release. Now every such write
goes into this process's own pipe, which a thread of the pump always reads: what the
real stderr cannot take yet waits in memory (at most `BUFFER` bytes; more is counted and
dropped), and another thread writes it on as `poll` says there is room (should a write
still wait - stdout on the same pipe took the room between the poll and the write -
only that thread waits, and `stop` does not wait for it past the bound).
When the release has ended (`stop`) what is left goes out as long as the real stderr
takes some at least every `stall` seconds; then the rest is given up, and stderr moves
to /dev/null, so nothing written later (the summary, the interpreter's last words) can
wait on it either.

Only for a pipe or a socket (a reader that may stop reading): a terminal and a file are
left as they are.
"""

from __future__ import annotations

import faulthandler
import os
import select
import stat
import sys
import threading
import time

BUFFER = 1 << 20      # bytes of stderr held while the real one takes nothing
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


def may_block(fd: int) -> bool:
    """Whether a write to `fd` can wait on a reader (a pipe or a socket)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class StderrPump:
    """File descriptor `fd` (2) made a pipe of this process's own until `stop`: one
    thread reads that pipe whatever happens (so a write to stderr never waits), another
    passes what it read on to the real stderr."""

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        self.real = os.dup(fd)            # the real stderr, written only when it has room
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        # A fatal signal's dump (faulthandler) is written from the dying thread, which
        # holds the interpreter: the pump's threads could never pass it on. It goes to
        # the real stderr directly while the pump runs.
        self._faults = faulthandler.is_enabled()
        if self._faults:
            faulthandler.enable(file=self.real, all_threads=True)
        self._read = read_end
        self._pending = bytearray()
        self._cond = threading.Condition()
        self._stall: float | None = None   # set by `stop`: the bound on the rest
        self._moved = time.monotonic()
        self.dropped = 0                   # bytes not kept (over BUFFER, or no stderr left)
        self.given_up = False              # the rest was not taken within the bound
        self._reader = threading.Thread(target=self._drain, daemon=True,
                                        name="stderr-pump-read")
        self._writer = threading.Thread(target=self._forward, daemon=True,
                                        name="stderr-pump-write")
        self._reader.start()
        self._writer.start()

    def shares(self, fd: int) -> bool:
        """Whether the real stderr is the same file as `fd` (`2>&1`)."""
        try:
            return os.path.samestat(os.fstat(self.real), os.fstat(fd))
        except OSError:
            return False

    def _drain(self) -> None:
        """Read the pipe until every writer closed it, keeping up to BUFFER bytes."""
        while True:
            try:
                data = os.read(self._read, 65536)
            except OSError:
                return
            if not data:
                return
            with self._cond:
                room = max(0, BUFFER - len(self._pending))
                self._pending += data[:room]
                self.dropped += len(data) - min(room, len(data))
                self._cond.notify_all()

    def _forward(self) -> None:
        """Write what was read to the real stderr, only as `poll` says it has room:
        whole lines, a pipe's atomic size at most (what a pipe that says writable takes
        at once). Ends once `stop` was called and nothing is left, or the rest was not
        taken for the bound."""
        poller = select.poll()
        poller.register(self.real, select.POLLOUT)
        while True:
            with self._cond:
                while not self._pending and self._stall is None:
                    self._cond.wait()
                if not self._pending:
                    return          # stopped, every byte out
                stall = self._stall
                if stall is not None and time.monotonic() - self._moved > stall:
                    self.given_up = True
                    self.dropped += len(self._pending)
                    self._pending.clear()
                    return
                chunk = bytes(self._pending[:select.PIPE_BUF])
            if len(chunk) == select.PIPE_BUF and b"\n" in chunk:
                chunk = chunk[:chunk.rfind(b"\n") + 1]
            ready = poller.poll(250)
            if not ready:
                continue
            if ready[0][1] & _GONE and not ready[0][1] & select.POLLOUT:
                n = -1                          # the reader went away
            else:
                try:
                    n = os.write(self.real, chunk)
                except BlockingIOError:
                    time.sleep(0.05)            # inherited non-blocking, filled by another
                    continue                    # writer since the poll: no spin
                except OSError:
                    n = -1
            with self._cond:
                if n < 0:
                    self.dropped += len(self._pending)
                    self._pending.clear()
                    if self._stall is not None:
                        return
                    continue
                del self._pending[:n]
                self._moved = time.monotonic()

    def stop(self, stall: float) -> None:
        """The release has ended: stderr is the real one again, what was written to it
        before goes out as long as it takes some at least every `stall` seconds (0: not
        waited for); if it does not, stderr moves to /dev/null."""
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os.dup2(self.real, self.fd)
        if self._faults:
            faulthandler.enable(file=self.fd, all_threads=True)
        # Every byte written before: read once the pipe's last writer (fd 2) is gone - a
        # program the release started may hold a copy still, so not waited for long.
        self._reader.join(0.5)
        with self._cond:
            self._moved = time.monotonic()      # the bound counts from the release's end
            self._stall = stall
            self._cond.notify_all()
        # The writer leaves within a poll of the bound - unless a write it began once
        # the poll said there was room waits (another writer, stdout, took the room
        # first): then it is left there, a daemon thread, and the rest given up.
        self._writer.join(stall + 1.0)
        if self._writer.is_alive():
            with self._cond:
                self.given_up = True
                self.dropped += len(self._pending)
                self._pending.clear()
        else:
            os.close(self.real)
        if not self._reader.is_alive():
            os.close(self._read)
        if self.given_up:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.fd)
            os.close(devnull)


__all__ = ["BUFFER", "StderrPump", "may_block"]

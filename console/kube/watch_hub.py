"""`WatchHub`: one thread that reads every open watch stream of the process.

A rollout follows two watches (its Deployment and its pods); read by a thread each, a
thousand rollouts kept two thousand threads waking for every event. Here the streams
are opened by their owner (the thread that decides the rollout, `HubWatch.open`) and then
handed to the hub, which waits on all their sockets at once (`selectors`), decodes the
chunked HTTP body and the JSON lines itself, and forwards each event to its owner's
queue - the (source, type, object) tuples of `console.kube.watch_feed`.

The hub only reads: a stream that ends (the server's `timeoutSeconds`, a 410, an error,
a read deadline passed) is closed here and its `HubWatch` marked due for opening again,
which its owner does on its own thread (a list or a connect may block; no other
cluster's events wait for it).
"""

from __future__ import annotations

import json
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from urllib3.exceptions import ReadTimeoutError

from console.kube.open_gate import OPENS
from console.kube.watch_feed import WatchFeed

log = logging.getLogger(__name__)

READ_SIZE = 65536
TICK = 1.0          # s between looks at the streams' read deadlines
GATHER = 0.02       # s the hub lets events gather after a round that read some
# s a watch's opening may wait for the response headers: as long as the owner's
# unreachable grace by default (a busy API server answers a watch late, not never), short
# of the stream's own read deadline (server timeout + 5 s) that bounded it before.
OPEN_TIMEOUT = 30.0


class StreamEnded(Exception):
    """The server ended the stream cleanly (its last chunk)."""


class ChunkedLines:
    """Incremental decoder of an HTTP/1.1 chunked body into newline-ended lines.

    `feed(data)` returns the complete lines the data finished; raises `StreamEnded` at
    the last (zero-size) chunk and `ValueError` on a malformed chunk header."""

    def __init__(self, chunked: bool = True) -> None:
        self.chunked = chunked
        self._raw = bytearray()      # undecoded transfer bytes
        self._body = bytearray()     # decoded body bytes not yet ended by a newline
        self._left = 0               # bytes of the current chunk still to take (+2: CRLF)

    def feed(self, data: bytes) -> list[bytes]:
        """The lines `data` completes (without their newline)."""
        if not self.chunked:
            self._body += data
            return self._lines()
        self._raw += data
        raw = self._raw
        pos = 0
        ended = False
        while True:
            if self._left:
                take = min(self._left, len(raw) - pos)
                if take <= 0:
                    break
                # The chunk's payload, then its CRLF (not body): payload first.
                payload = min(take, max(0, self._left - 2))
                self._body += raw[pos:pos + payload]
                self._left -= take
                pos += take
                continue
            end = raw.find(b"\r\n", pos)
            if end < 0:
                if len(raw) - pos > 1024:
                    raise ValueError("chunk header too long")
                break
            size_text = bytes(raw[pos:end]).split(b";", 1)[0].strip()
            size = int(size_text, 16)     # ValueError on garbage
            pos = end + 2
            if size == 0:
                ended = True
                break
            self._left = size + 2
        del raw[:pos]
        lines = self._lines()
        if ended:
            if self._body.strip():
                lines.append(bytes(self._body))
            self._body.clear()
            raise StreamEnded(lines)
        return lines

    def _lines(self) -> list[bytes]:
        body = self._body
        end = body.rfind(b"\n")
        if end < 0:
            return []
        lines = [line for line in bytes(body[:end]).split(b"\n") if line.strip()]
        del body[:end + 1]
        return lines


class _Stream:
    """One registered stream: its socket, decoder, and where its events go."""

    __slots__ = ("sock", "decoder", "on_event", "on_end", "idle_limit", "last_data", "close",
                 "buffered", "gone")

    def __init__(self, sock: socket.socket, decoder: ChunkedLines,
                 on_event: Callable[[dict[str, Any]], bool],
                 on_end: Callable[[BaseException | None], None], idle_limit: float,
                 close: Callable[[], None], buffered: bytes = b"") -> None:
        """`on_event(event)` gets each decoded event and returns False to end the stream;
        `on_end(error)` is called once when it ended (None: cleanly, or by `on_event`)
        - never after `WatchHub.remove`; `idle_limit`: s without data before it fails;
        `close()` closes its connection; `buffered`: body bytes read with the headers."""
        self.sock = sock
        self.buffered = buffered
        self.gone = False
        self.decoder = decoder
        self.on_event = on_event
        self.on_end = on_end
        self.idle_limit = idle_limit
        self.last_data = time.monotonic()
        self.close = close


class WatchHub:
    """The process's watch-reading thread (started on first use; a daemon)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._todo: list[tuple[str, _Stream]] = []
        self._streams: dict[int, _Stream] = {}      # id(stream) -> stream
        self._thread: threading.Thread | None = None

    def add(self, stream: _Stream) -> None:
        """Read `stream` from now on."""
        self._command("add", stream)

    def remove(self, stream: _Stream) -> None:
        """Stop reading `stream` and close it (on the hub's thread, soon)."""
        self._command("remove", stream)

    def _command(self, what: str, stream: _Stream) -> None:
        with self._lock:
            self._todo.append((what, stream))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watch-hub",
                                                daemon=True)
                self._thread.start()
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass    # the pipe is full: the hub is awake already

    # -- the hub's thread --------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK
        while True:
            timeout = max(0.0, next_tick - time.monotonic())
            ready = self._selector.select(timeout)
            for key, _mask in ready:
                stream = key.data
                if stream is None:
                    self._take_commands()
                else:
                    self._read(stream)
            if ready:
                # Let the next events gather: one round then reads (and each rollout is
                # woken for) several at once, instead of a select and a wake-up apiece.
                time.sleep(GATHER)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK
                for stream in [s for s in self._streams.values()
                               if now - s.last_data > s.idle_limit]:
                    self._end(stream, ReadTimeoutError(None, "", "no data within the watch's "
                                                       "server timeout"))

    def _take_commands(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            todo, self._todo = self._todo, []
        for what, stream in todo:
            if what == "remove":
                self._drop(stream)
            elif not stream.gone:     # added (and not removed before the hub saw it)
                self._streams[id(stream)] = stream
                try:
                    self._selector.register(stream.sock, selectors.EVENT_READ, stream)
                except (ValueError, KeyError, OSError) as exc:
                    self._end(stream, exc)
                    continue
                buffered, stream.buffered = stream.buffered, b""
                if buffered:
                    self._deliver(stream, buffered)
                # TLS may hold decrypted bytes the socket no longer signals: read now.
                self._read(stream)

    def _read(self, stream: _Stream) -> None:
        if id(stream) not in self._streams:
            return
        chunks = []
        eof = False
        try:
            while True:
                try:
                    data = stream.sock.recv(READ_SIZE)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
                        InterruptedError):
                    break
                if not data:
                    eof = True
                    break
                chunks.append(data)
        except (OSError, ValueError) as exc:
            if chunks:
                self._deliver(stream, b"".join(chunks))
            self._end(stream, exc)
            return
        if chunks:
            stream.last_data = time.monotonic()
            self._deliver(stream, b"".join(chunks))
        if eof and id(stream) in self._streams:
            self._end(stream, ConnectionResetError("the API server closed the watch"))

    def _deliver(self, stream: _Stream, data: bytes) -> None:
        if id(stream) not in self._streams:
            return
        try:
            lines = stream.decoder.feed(data)
            ended = None
        except StreamEnded as end:
            lines, ended = end.args[0], end
        except ValueError as exc:
            self._end(stream, exc)
            return
        for line in lines:
            try:
                event = json.loads(line)
                wanted = stream.on_event(event if isinstance(event, dict) else {})
            except Exception as exc:  # noqa: BLE001 - not JSON, or the owner's verdict
                self._end(stream, exc)
                return
            if not wanted:
                self._end(stream, None)     # the owner wants no more of it (e.g. a 410)
                return
        if ended is not None:
            self._end(stream, None)

    def _end(self, stream: _Stream, error: BaseException | None) -> None:
        """Close a stream and tell its owner why it ended (None: cleanly)."""
        if id(stream) not in self._streams:
            return
        self._drop(stream)
        try:
            stream.on_end(error)
        except Exception:  # noqa: BLE001 - an owner's bug must not stop every watch
            log.exception("a watch's end handler failed")

    def _drop(self, stream: _Stream) -> None:
        registered = self._streams.pop(id(stream), None) is not None
        stream.gone = True
        if registered:
            try:
                self._selector.unregister(stream.sock)
            except (KeyError, ValueError, OSError):
                pass
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - closing a broken socket
            pass


_hub: WatchHub | None = None
_hub_lock = threading.Lock()


def hub() -> WatchHub:
    """The process's hub (made on first use)."""
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = WatchHub()
        return _hub


class HubWatch(WatchFeed):
    """One watch the hub reads, opened (and opened again) by its owner's thread.

    Puts on `out` what every `WatchFeed` puts - plus ("ended", source, None) when the
    stream ended, so the owner wakes to call `open` when `due` says.

    `open()` (blocking: it may list, and connects; a few at a time in the process) is
    the owner's to call whenever `due` (a monotonic time, None while the hub reads it)
    has come: it lists when no resourceVersion is known (at first, or after 410 Gone),
    resumes from the last version seen (bookmarks included) otherwise, and backs off
    (0.5 s doubling to 5 s) after failures.
    """

    def __init__(self, client: Any, path: str, query: Mapping[str, str], source: str,
                 out: queue.SimpleQueue | queue.Queue,
                 resource_version: str | None, server_timeout: int) -> None:
        super().__init__(client, path, query, source, out, resource_version, server_timeout)
        self._lock = threading.Lock()
        self._due: float | None = 0.0        # open now
        self._backoff = 0.5
        self._stopped = False
        self._stream: _Stream | None = None

    @property
    def due(self) -> float | None:
        """When `open` should be called (None: the hub reads the stream, or stopped)."""
        with self._lock:
            return None if self._stopped else self._due

    def open(self) -> None:
        """List if needed and open the watch, then hand it to the hub; a failure is
        reported on the queue and `due` set after the backoff. Never raises."""
        with self._lock:
            if self._stopped or self._due is None:
                return
            self._due = None
        try:
            # A few at a time in the process (`console.kube.open_gate`).
            with OPENS.slot():
                self._list_if_unknown()
                opened = self.client.watch(self.path, self._watch_query(),
                                           self.server_timeout, read_timeout=OPEN_TIMEOUT)
                sock, buffered, chunked = opened.detach()
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported
            self._failed(exc)
            return
        self._recovered()
        stream = _Stream(sock, ChunkedLines(chunked), self._on_event, self._on_end,
                         self.server_timeout + 5.0, opened.close, buffered)
        with self._lock:
            if self._stopped:
                opened.close()
                return
            self._stream = stream
        hub().add(stream)

    def stop(self) -> None:
        """End the watch (from the owner's thread); no event is put after it is handled."""
        with self._lock:
            self._stopped = True
            stream, self._stream = self._stream, None
        if stream is not None:
            hub().remove(stream)

    # -- on the hub's thread -----------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> bool:
        return self._take(event.get("type", ""), event.get("object") or {})

    def _on_end(self, error: BaseException | None) -> None:
        if error is not None:
            self._failed(error)
            return
        with self._lock:
            self._stream = None
            if self._due is None:
                self._due = time.monotonic()
            self._backoff = 0.5
        self.out.put(("ended", self.source, None))

    # -- both ----------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stream = None
            self._due = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
        self._report(exc)

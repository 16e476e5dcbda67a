"""Shards given different boards (`deploy --shard K/N --shard-board CLUSTER`): how they
find each other, and how the boards they left are cleaned up.

Shards given different `--shard-board`s never meet on one board. So every shard given
a board other than the *default* one - the first target of the whole release in
sorted order, which every shard computes alike - also records on the default board
which board it uses (`"boards": {"K": CLUSTER}` beside the release's entries). A shard
waiting at the pre-flight barrier for one that never reported looks on the default
board (every poll when it is its own board, else once a heartbeat): a silent shard
found there with an entry of its own, or a record naming another board, is a split.
The shard that finds it writes a stop naming every board involved on each of them,
and every shard stops before anything is touched (exit 2), the message naming the
boards.

Cleanup: a board is taken off its lease by the last shard to end; a split release's
boards hold only some of its shards, so there each board goes once every shard *on
it* ended, and each shard takes its record off the default board (the last one
leaving it takes the release off; no record try writes once that cleanup began, and
one on its way is waited for). The record is written and read only when the
default board's cluster is reachable: where it is not, the split is found by
`--shard-timeout`, whose message names the likely cause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from console.errors import UserError
from console.kube.client import CONNECT_TIMEOUT, MAX_ATTEMPTS, MAX_RETRY_AFTER, ClusterError
from console.locks import shards as wire
from console.locks.control import ChannelError

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.plan import Plan

log = logging.getLogger(__name__)


class SplitFound(Exception):
    """Shards of this release use different boards (the message names them)."""


class BoardSplit:
    """The split half of `console.engine.shards.ShardBoard` (its board and plan)."""

    engine: Engine | None
    kube: Any
    namespace: str
    name: str
    coordinator: str
    release_id: str
    shard: int
    shards: int
    request_timeout: float
    whole: Plan | None
    label: str
    _write_stop: Callable[..., None]
    _recorded = False          # this shard's record is on the default board
    _unrecorded = 0            # failed tries to record it (the first one logged)
    _record_at = 0.0           # monotonic time of the next try
    _recording: threading.Thread | None = None   # a try running (never in the barrier)
    _tried = False             # a try reached the default board (it may have landed)
    _closing: threading.Event  # set by `clean_boards`: no try writes a record after it
    beat: float                # s between heartbeats (`ShardBoard.beat`)
    _split: frozenset[str] = frozenset()   # the boards this shard wrote a split's stop on

    @property
    def default(self) -> str:
        """The default board's cluster: the whole release's first target, sorted."""
        targets = sorted(self.whole.targets) if self.whole is not None else []
        return targets[0] if targets else self.coordinator

    def _board_at(self, cluster: str) -> tuple[Any, str] | None:
        """The client and namespace of `cluster`'s board (None: unreachable from here)."""
        if cluster == self.coordinator:
            return self.kube, self.namespace
        if self.engine is None:
            return None
        try:
            driver = self.engine.driver(cluster)
        except (ClusterError, UserError):
            return None
        return driver.client, driver.namespace

    _record_timeout = 0.0     # the request timeout of the try running (`record_wait`)

    def record_board(self) -> None:
        """Record on the default board which board this shard uses (nothing when it is
        the default one, or recorded already). A failure is logged once and tried
        again while this shard waits at the pre-flight barrier for a shard that never
        reported (`find_split`, on a thread of its own: `record_later`): after a beat,
        then 2, 4 and at most 8 beats. So one write lost to a loaded cluster costs a
        beat, not `--shard-timeout`; where the default board cannot be written at all,
        a split is found only by `--shard-timeout`."""
        if self.default == self.coordinator or self._recorded or \
                time.monotonic() < self._record_at or self._closing.is_set():
            return
        at = self._board_at(self.default)
        timeout = self._record_timeout = self.request_timeout

        def edit(board: dict[str, Any]) -> None:
            # Checked in the edit, which runs on every read-replace round: a record
            # read after this shard began its cleanup writes nothing (see clean_boards).
            if not self._closing.is_set():
                board.setdefault("boards", {})[str(self.shard)] = self.coordinator

        def write(kube: Any, namespace: str) -> None:
            # The board lease made when absent first: a cluster that does not answer
            # costs one request's timeout, once.
            wire.ensure(kube, namespace, self.name, timeout)
            wire.update(kube, namespace, self.name, self.release_id, edit, timeout)
        try:
            if at is None or self.engine is None:
                raise ChannelError("its credentials do not load")
            # Every call of the try - and every retry of one - is made only while the
            # cleanup has not begun (`Guarded`): from then on no read, ensure, create
            # or replace of it starts, so at most the one try of a call then in flight
            # is left to wait for.
            kube = Guarded(at[0], self._closing, self._reached)
            try:
                write(kube, at[1])
            except ChannelError as exc:
                if exc.status != 404:
                    raise
                # The app's namespace is not there yet (a first release): made as the
                # release's lock there would make it.
                self.engine.driver(self.default).ensure_namespace(timeout, client=kube)
                write(kube, at[1])
            self._recorded = not self._closing.is_set()
        except (ChannelError, ClusterError, UserError) as exc:
            if self._closing.is_set():
                return     # cut short by the cleanup (which cleans what it may have left)
            self._unrecorded += 1
            backoff = min(8, 2 ** (self._unrecorded - 1))
            self._record_at = time.monotonic() + self.beat * backoff
            log.log(logging.WARNING if self._unrecorded == 1 else logging.DEBUG,
                    "release %s shard %s: board not recorded on %s (tried again while "
                    "this shard waits for the others; shards given another board are "
                    "found only by --shard-timeout until it is): %s",
                    self.release_id, self.label, self.default, exc)

    def record_later(self) -> None:
        """Try `record_board` again on a thread of its own when a try is due: the
        barrier's wait never waits for it, as a cluster that does not answer costs a
        request's timeout (and its retries) each time."""
        if self.default == self.coordinator or self._recorded or \
                time.monotonic() < self._record_at or self._closing.is_set() or \
                (self._recording is not None and self._recording.is_alive()):
            return   # (on the default board itself there is nothing to record)
        self._recording = threading.Thread(target=self.record_board, daemon=True,
                                           name=f"shard-record-{self.release_id}")
        self._recording.start()

    def find_split(self, silent: list[int], here: dict[str, Any], entries: dict[str, Any],
                   read_default: bool) -> None:
        """Raise `SplitFound` when a shard of `silent` (never reported on this board)
        uses another board: its entry is on the default board, or its record there names
        another. `here`: this board as just read (the default's when it is this one);
        `read_default`: read the default board now (else only `here` is looked at)."""
        default = self.default
        if read_default:
            self.record_later()   # (when an earlier try failed)
        if default == self.coordinator:
            there: dict[str, Any] | None = here
        elif read_default and self._recorded and (at := self._board_at(default)) is not None:
            # (Not recorded there: not reachable or not writable from here - not read
            # either, until a later beat records it; the timeout finds a split then.)
            try:
                there = wire.read(*at, self.name, self.release_id, self.request_timeout)
            except ChannelError:
                there = None
        else:
            there = None
        if not there:
            return
        on: dict[str, list[int]] = {}
        for k in silent:
            recorded = (there.get("boards") or {}).get(str(k))
            if default != self.coordinator and isinstance((there.get("shards") or {})
                                                          .get(str(k)), dict):
                on.setdefault(default, []).append(k)
            elif isinstance(recorded, str) and recorded != self.coordinator:
                on.setdefault(recorded, []).append(k)
        if not on:
            return
        on.setdefault(self.coordinator, []).extend(
            int(k) for k, e in entries.items() if isinstance(e, dict) and k.isdigit())
        if self.shard not in on[self.coordinator]:
            on[self.coordinator].append(self.shard)

        def how(cluster: str) -> str:
            return "no --shard-board" if cluster == default else f"--shard-board {cluster}"
        why = ("shards report on different shard boards: " + ", ".join(
            f"{', '.join(f'{k}/{self.shards}' for k in sorted(set(ks)))} on cluster "
            f"{b!r} ({how(b)})" for b, ks in sorted(on.items())) +
            ": every shard must be given the same --shard-board; nothing was touched")
        self._split = frozenset(on) | {default}
        for cluster in sorted(self._split):
            if (at := self._board_at(cluster)) is not None:
                self._write_stop(*at, why, cluster, boards=sorted(self._split))
        raise SplitFound(why)

    def _reached(self) -> None:
        """A call of the record's try is on its way to the default board (it may land)."""
        self._tried = True

    def clean_boards(self) -> None:
        """This shard ended: take the release off every board where nothing of it is
        left - this shard's own board once every shard ended (or was found gone; on a
        split release, every shard on it), and its record on the default board (there
        once no record and no entry of a shard still running is left). All of it
        within `cleanup_wait` s: no call of it starts after that deadline, and each gets
        at most the time left."""
        deadline = time.monotonic() + self.cleanup_wait()
        split: set[str] = set()
        # No record, board lease or namespace is made after this cleanup began: from
        # here a try starts no call and no retry (`Guarded`; its edit checks too), and
        # the one try of a call then in flight is waited for (`record_wait`: its
        # connect, handshake and answer). Only then is the default board cleaned, if
        # any try reached it (one that timed out may still have been written).
        self._closing.set()
        if self._recording is not None:
            self._recording.join(timeout=max(0.0, min(self.record_wait(),
                                                      deadline - time.monotonic())))
            if self._recording.is_alive():
                log.warning("release %s shard %s: the record on %s still not answered "
                            "after %.0fs; it may stay on that board until newer "
                            "releases push it off", self.release_id, self.label,
                            self.default, self.record_wait())

        def clean(own: bool) -> Callable[[dict[str, Any]], None]:
            def edit(board: dict[str, Any]) -> None:
                entries = board.get("shards") or {}
                records = board.get("boards") or {}
                records.pop(str(self.shard), None)
                stop = board.get("stop")
                if isinstance(stop, dict) and isinstance(stop.get("boards"), list):
                    split.update(str(b) for b in stop["boards"])
                # A split release's board holds only the shards given it; a board that
                # is not this shard's holds records, or the entries of the shards on it.
                ours = (list(entries.values()) if split or self._split or not own else
                        [entries.get(str(k)) for k in range(1, self.shards + 1)])
                if not records and all(isinstance(e, dict) and (e.get("ended") or
                                                                e.get("gone")) for e in ours):
                    board.clear()
            return edit
        self._clean(self.coordinator, clean(True), deadline)
        # (Every board this shard wrote a stop on too: cleaned after that write.)
        others = split | self._split | ({self.default} if self._tried else set())
        for cluster in sorted(others - {self.coordinator}):
            self._clean(cluster, clean(False), deadline)

    def record_wait(self) -> float:
        """The longest a record try can still take once `clean_boards` began: the one
        try of the call in flight (no other starts) - a new connection's connect and
        handshake, each within the connect timeout, and the answer within the request
        timeout; twice for a read whose kept connection was lost before any answer
        (sent again at once on a new one, `console.kube.direct_calls`) - and a second
        to end."""
        timeout = self._record_timeout or self.request_timeout
        return 2 * (2 * min(CONNECT_TIMEOUT, timeout) + timeout) + 1

    def cleanup_wait(self) -> float:
        """The longest `clean_boards` takes (its deadline): what the client's retries
        of two calls would take at the request timeout, 144 s at the default 10 s."""
        return 2 * MAX_ATTEMPTS * (self.request_timeout + MAX_RETRY_AFTER)

    def _clean(self, cluster: str, clean: Callable[[dict[str, Any]], None],
               deadline: float) -> None:
        at = self._board_at(cluster)
        if at is None:
            return
        try:
            # (No lease there: no board either - the record's try never made it.)
            wire.update(Guarded(at[0], deadline=deadline), at[1], self.name,
                        self.release_id, clean, self.request_timeout, missing_ok=True)
        except ChannelError as exc:
            log.warning("release %s shard %s: shard board not cleaned up on %s: %s",
                        self.release_id, self.label, cluster, exc)


CLOSING = "not called: this shard's cleanup of the shard board began"


class Guarded:
    """A cluster's client whose calls stop: none starts (nor a retry of one) once
    `closing` is set or after `deadline` (monotonic; each try gets at most the time
    left). `reached`: called as each call starts."""

    def __init__(self, kube: Any, closing: threading.Event | None = None,
                 reached: Callable[[], None] | None = None,
                 deadline: float | None = None) -> None:
        self.kube = kube
        self.cluster = kube.cluster
        self.closing = closing
        self.reached = reached
        self.deadline = deadline

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if self.closing is not None and self.closing.is_set():
            raise ClusterError(self.cluster, CLOSING, 0)
        if self.reached is not None:
            self.reached()
        return self.kube.request(method, path, *args, deadline=self.deadline,
                                 cancel=self.closing, **kwargs)


__all__ = ["BoardSplit", "Guarded", "SplitFound"]

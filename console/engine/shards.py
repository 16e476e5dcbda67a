"""One release run as N shards (`deploy --shard K/N`): what keeps waves, gates and the
failure budget global while each process releases only its slice of the clusters.

Each shard is a whole `deploy` process with the same fleet file, selection and
`--release-id`: it plans the whole release, keeps its slice (`console.plan.shard_plan`),
runs pre-flight and takes the release locks of its own clusters only, and meets the
others on the *shard board* (`console.locks.shards`: one annotation of a Lease in the
coordinator cluster - `--shard-board CLUSTER`, else the first target in sorted order; a
shard that cannot reach it stops at once, exit 2, naming it):

- **Pre-flight is global.** A shard publishes that its pre-flight passed and waits for
  all N before any cluster is touched; a shard that failed pre-flight stops them all
  (exit 2, nothing touched).
- **Waves are global.** After wave W a shard publishes it done and waits until every
  shard has (a shard with no cluster in a wave passes through it at once); only then
  does wave W+1 start anywhere.
- **The failure budget is global.** Every shard publishes how many of its clusters
  failed; each one counts the others' (`ReleaseRun.shared_failures`) with its own, at
  every wave barrier and on every heartbeat (so a spent budget also stops new starts
  mid-wave within a beat).
- **A gate is answered once, and shows the whole release.** Every shard publishes its
  results (counted, the clusters not healthy named); at a gate each shard shows every
  shard's finished clusters and the whole next wave (`ShardBoard.gate_view`). Shard 1
  is the gate shard: it asks its approver (`--yes`, the terminal, or `release-console
  control RELEASE_ID approve`) and writes the answer on the board; the other shards
  wait for that answer and act on it (reject stops them, abort with rollback rolls back
  each shard's own clusters).
- **Every shard is steered for its own clusters.** Each listens on its own control
  lease - one with no cluster in its slice on a lease of its own on the board's cluster
  (`listen`); `taker` says which shard takes a request (pause, resume and abort: every
  one; skip and retry: the cluster's owner; approve and reject: shard 1).
- **A stop reaches every shard within a heartbeat.** A shard aborted (Ctrl-C, SIGTERM,
  `control abort`) writes a stop on the board at once; every shard reads it with its
  heartbeat, starts nothing more (`ReleaseRun.halt`) and rejects a gate it waits at or
  opens later (`ReleaseRun.open_gate`; the others' wait for shard 1's answer ends too).
- **A dead shard fails the gate.** Each shard bumps a heartbeat on the board every few
  seconds. A waiting shard judges the others by its own monotonic clock: one whose
  entry did not change for `shard_timeout` seconds (and has not reached the wave) is
  taken as gone, and the waiting shard stops (exit 3) naming it - and writes a stop on
  the board, so every other shard stops at its next barrier too.
- **The board goes with the release.** The last shard to end (every other one ended or
  was found gone) takes the release's board off the Lease.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.engine.api import (ControlChange, GateAnswer, GateDecision, Outcome,
                                ReleaseRequest)
from console.engine.shard_gates import ShardGates
from console.engine.shard_split import BoardSplit, SplitFound
from console.errors import UserError
from console.kube.client import ClusterError
from console.locks import shards as wire
from console.locks.control import ChannelError
from console.plan import shard_of

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.run_state import ReleaseRun
    from console.locks import ClusterLease, ReleaseLock
    from console.plan import Plan

log = logging.getLogger(__name__)

POLL = 0.5                 # s between looks at the board while waiting
BEAT_MAX = 5.0             # s between heartbeats at most
PREFLIGHT = -1             # the "wave" a shard has finished once its pre-flight passed
STARTING = -2              # before that
NAMED = 200                # clusters not healthy a shard names on the board (the rest counted)
# A shard ending this way stops every shard (a failed pre-flight, a rejected gate, an
# abort, a lost lock); a failed release only spends the shared budget.
STOPS_ALL = (Outcome.PREFLIGHT_FAILED, Outcome.ABORTED, Outcome.STOPPED)


@dataclass(frozen=True)
class LeaseAt:
    """A Lease to read on one cluster (`kube` None: its credentials do not load)."""

    cluster: str
    kube: Any
    namespace: str
    name: str


class ShardStop(Exception):
    """The release must stop here (the message says which shard and why)."""


class ShardBoard(ShardGates, BoardSplit):
    """This shard's end of the board (see the module docstring)."""

    def __init__(self, engine: Engine, release_id: str, shard: int, shards: int,
                 coordinator: str, timeout: float) -> None:
        driver = engine.driver(coordinator)
        self.engine: Engine | None = engine
        self.kube = driver.client
        self.namespace = driver.namespace
        self.coordinator = coordinator
        self.name = wire.board_name(engine.config.app.name)
        self.release_id = release_id
        self.shard, self.shards = shard, shards
        self.timeout = float(timeout)
        self.request_timeout = engine.request_timeout
        self.entry: dict[str, Any] = {"wave": STARTING, "failures": 0, "beat": 0}
        self._run: ReleaseRun | None = None
        self._rejected: int | None = None   # the gate `_halt` last answered
        self.whole: Plan | None = None      # the whole release's plan (every shard's)
        self.tag = ""
        self.operator = ""
        # An empty slice's listening lease on the board's cluster (`listen`).
        self.listening: ReleaseLock | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = threading.Event()   # (`BoardSplit.clean_boards` began)
        self._thread: threading.Thread | None = None

    @property
    def run(self) -> ReleaseRun | None:
        """The release once it started (set by the wave runner)."""
        return self._run

    @run.setter
    def run(self, run: ReleaseRun) -> None:
        self._run = run
        # An abort here (Ctrl-C, SIGTERM, `control abort`) goes on the board at once.
        run.control.subscribe(self._on_control)

    def _on_control(self, what: ControlChange, by: str) -> None:
        """This shard was aborted: write the stop on the board now - from a thread, as
        the signal handler that aborts must not wait on the network - so the others
        stop new starts within a heartbeat, not at their next wave barrier."""
        if what is ControlChange.ABORTED:
            why = f"shard {self.label} aborted{f' by {by}' if by else ''}"
            threading.Thread(target=self.stop_all, args=(why,), daemon=True,
                             name=f"shard-stop-{self.release_id}").start()

    def _halt(self, board: dict[str, Any]) -> None:
        """Another shard wrote a stop: no new cluster starts here (the rest skipped with
        the reason; the release ends stopped), and a gate waiting is rejected."""
        stop, run = board.get("stop"), self._run
        if run is None or not isinstance(stop, dict) or stop.get("by") == self.shard:
            return
        why = str(stop.get("why") or f"shard {stop.get('by')} stopped")
        run.halt(why)
        # Any beat while stopped (a freeze window may have set `frozen` first), once
        # per gate; a gate opened after this beat sees `frozen` (`ReleaseRun.open_gate`).
        gate = run.gate_waiting
        if gate is not None and gate != self._rejected:
            self._rejected = gate
            run.control.answer_gate(GateAnswer(GateDecision.REJECT, by=why, gate=gate))

    @property
    def beat(self) -> float:
        """Seconds between heartbeats."""
        return max(0.5, min(BEAT_MAX, self.timeout / 4))

    def listen(self, engine: Engine) -> list[ClusterLease]:
        """The lease a shard with no cluster in its slice listens on for `control`: the
        Lease `release-console-<app>.shard-K` on the board's cluster (every shard
        reaches it, and may get, create and update Leases there), held like a release
        lock until `close` - so `control` finds it as it finds a release's own leases.
        Empty when it cannot be taken (logged: the shard runs, unsteerable)."""
        from console.locks import LockError, ReleaseLock
        lock = ReleaseLock.for_clusters(
            {self.coordinator: (self.kube, self.namespace)}, engine.config.app.name,
            self.release_id, user=self.operator or None, duration=engine.lock_duration,
            timeout=self.request_timeout)
        for lease in lock.leases:
            lease.name = wire.listen_name(engine.config.app.name, self.shard)
        try:
            self.listening = lock.acquire()
        except LockError as exc:
            log.warning("release %s shard %s: no listening lease on %s: %s",
                        self.release_id, self.label, self.coordinator, exc)
            return []
        return list(lock.leases)

    def proof(self, engine: Engine) -> list[LeaseAt]:
        """The app's release Lease on every target of the whole release: where `control`
        also writes a request, the proof of its rights an empty-slice shard checks
        (`console.engine.steering`); `kube` None where the credentials do not load."""
        from console.locks import lease_name
        found = []
        for cid in (self.whole.targets if self.whole is not None else ()):
            try:
                driver = engine.driver(cid)
                found.append(LeaseAt(cid, driver.client, driver.namespace,
                                     lease_name(engine.config.app.name)))
            except (ClusterError, UserError):
                found.append(LeaseAt(cid, None, "", ""))
        return found

    def check_rights(self) -> None:
        """Refuse (`BoardUnreachable`, exit 2, before anything is touched) unless this
        shard's credentials may get, create and update Leases in the board's namespace
        - one SelfSubjectRulesReview, as pre-flight asks its own clusters. Create too:
        whoever writes first creates the board (and an empty slice's listening lease),
        so a shard without it would fail only when it happened to come first."""
        from console.engine.shard_rights import lease_rights_missing
        from console.preflight.access import describe_denial
        missing = lease_rights_missing(self.kube, self.namespace, self.request_timeout)
        if missing:
            raise BoardUnreachable(
                f"shard {self.label} may not use the shard board on cluster "
                f"{self.coordinator!r}: its credentials there lack "
                f"{', '.join(describe_denial(p, self.namespace) for p in missing)}. Every "
                "shard needs get, create and update on Leases in the app's namespace of "
                "the board's cluster; nothing was touched")

    # -- writing -----------------------------------------------------------------------

    def publish(self, **fields: Any) -> dict[str, Any]:
        """Write this shard's entry with `fields` changed; returns the board as written.
        Raises `ChannelError` when the board cannot be written."""
        with self._lock:
            self.entry.update(fields)
            self.entry["beat"] = int(self.entry.get("beat", 0)) + 1

        def edit(board: dict[str, Any]) -> None:
            if self._closing.is_set():
                return   # (a beat late for the cleanup: the board may be gone with it)
            # The entry as it is now, made for each read-replace round: a beat whose
            # round met this shard's end (a 409, read again) writes the end too - an
            # entry taken when the beat began would take the end off the board.
            with self._lock:
                entry = dict(self.entry)
            if self.run is not None:
                entry["failures"] = len(self.run.failed)
                entry["results"] = self._results()
            board.setdefault("of", self.shards)
            board.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            board.setdefault("shards", {})[str(self.shard)] = entry
        try:
            return wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                               self.request_timeout)
        except ChannelError:
            if self._closing.is_set():
                raise    # (the cleanup began: no board lease is made after it)
            # No board yet (or the namespace only now appears): create it, then once more.
            wire.ensure(self.kube, self.namespace, self.name, self.request_timeout)
            return wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                               self.request_timeout)

    def try_publish(self, **fields: Any) -> dict[str, Any] | None:
        """`publish`, a failure logged (the next beat or wait tries again)."""
        try:
            return self.publish(**fields)
        except ChannelError as exc:
            log.warning("release %s shard %s: shard board on %s: %s", self.release_id,
                        self.label, self.coordinator, exc)
            return None

    def stop_all(self, why: str) -> None:
        """Tell every shard to stop at its next barrier."""
        self._write_stop(self.kube, self.namespace, why, self.coordinator)

    def _write_stop(self, kube: Any, namespace: str, why: str, board: str,
                    boards: list[str] | None = None) -> None:
        """Write this shard's stop on the board of cluster `board` (the first stop
        written stays; `boards`: the boards of a split release, for the cleanup); a
        board that cannot be written is logged, not raised. Nothing is written where the
        release is no longer on the board: its last shard took it off (`clean_boards`)
        while this stop was on its way, and a stop there would bring the board back
        with nobody left to take it off."""
        def edit(entries: dict[str, Any]) -> None:
            if not entries:
                return
            entries.setdefault("stop", {"by": self.shard, "why": why,
                                        **({"boards": boards} if boards else {})})
        try:
            wire.update(kube, namespace, self.name, self.release_id, edit,
                        self.request_timeout)
        except ChannelError as exc:
            log.warning("release %s shard %s: could not write the stop on %s: %s",
                        self.release_id, self.label, board, exc)

    def start_beating(self) -> None:
        """Bump the heartbeat (and publish the failures) until `close`; each beat also
        reads the others' failures into the run's `shared_failures` (once `run` is set)."""
        interval = self.beat

        def beat() -> None:
            while not self._stop.wait(interval):
                board = self.try_publish()
                if board is not None:
                    self._count_others(board)
                    self._halt(board)
        self._thread = threading.Thread(target=beat, daemon=True,
                                        name=f"shard-beat-{self.release_id}")
        self._thread.start()

    def close(self, outcome: Outcome, why: str) -> None:
        """This shard ended: stop beating, publish the end (and a stop for all when the
        way it ended stops the release everywhere). The last shard to end - every other
        one ended or was found gone - takes the release's board off the lease."""
        self._stop.set()
        if self._run is not None:
            self._run.control.unsubscribe(self._on_control)
        if self._thread is not None:
            self._thread.join(timeout=self.request_timeout * 2 + 1)
        if self.listening is not None:
            for problem in self.listening.release():
                log.warning("release %s shard %s: %s", self.release_id, self.label, problem)
            self.listening = None
        self.try_publish(ended=outcome.value, why=why[:300])
        if outcome in STOPS_ALL:
            self.stop_all(f"shard {self.label} ended {outcome.value}: {why}"[:300])
        self.clean_boards()

    def _mark_gone(self, k: int) -> None:
        """Note on the board that shard `k` stopped reporting (so the last shard to end
        still cleans the board up)."""
        def edit(board: dict[str, Any]) -> None:
            entry = board.setdefault("shards", {}).setdefault(str(k), {})
            if isinstance(entry, dict) and not entry.get("ended"):
                entry["gone"] = self.shard
        try:
            wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                        self.request_timeout)
        except ChannelError:
            pass   # the board itself is unreachable: nothing to clean up there either

    def _results(self) -> dict[str, Any]:
        """This shard's results so far for the others' gates: counts by outcome, and the
        clusters that did not end healthy by name (up to NAMED, errors cut short)."""
        assert self.run is not None
        with self.run.lock:
            results = list(self.run.results.values())
        counts: dict[str, int] = {}
        named: dict[str, list[str]] = {}
        for r in results:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
            if r.outcome is not Outcome.HEALTHY and len(named) < NAMED:
                named[r.cluster] = [r.outcome.value, (r.error or "")[:120]]
        return {"counts": counts, "named": named}

    # -- reading -----------------------------------------------------------------------

    def _count_others(self, board: dict[str, Any]) -> None:
        if self.run is None:
            return
        entries = board.get("shards") or {}
        others = sum(int(e.get("failures") or 0) for k, e in entries.items()
                     if k != str(self.shard) and isinstance(e, dict))
        with self.run.lock:
            self.run.shared_failures = others

    def wait_for(self, wave: int, what: str, cancel: threading.Event | None = None) -> None:
        """Wait until every shard finished `wave` (PREFLIGHT: passed pre-flight) or
        ended; raises `ShardStop` when a shard stopped the release, a shard is gone
        (no change of its entry for `timeout` s), or `cancel` is set."""
        seen: dict[int, tuple[str, float]] = {}
        unread_since: float | None = None
        looked_elsewhere = time.monotonic()
        while True:
            now = time.monotonic()
            try:
                board = wire.read(self.kube, self.namespace, self.name, self.release_id,
                                  self.request_timeout)
                unread_since = None
            except ChannelError as exc:
                log.warning("release %s shard %s: shard board: %s", self.release_id,
                            self.label, exc)
                board = {}
                unread_since = now if unread_since is None else unread_since
                if now - unread_since > self.timeout:
                    # Not the others gone: this shard lost the board.
                    raise ShardStop(f"shard {self.label} cannot reach the shard board on "
                                    f"cluster {self.coordinator!r} for {self.timeout:g}s "
                                    f"({exc}): {what} fails") from None
                seen.clear()
            stop = board.get("stop")
            if isinstance(stop, dict) and stop.get("by") != self.shard:
                raise ShardStop(str(stop.get("why") or f"shard {stop.get('by')} stopped"))
            self._count_others(board)
            entries = board.get("shards") or {}
            waiting = []
            for k in range(1, self.shards + 1):
                entry = entries.get(str(k))
                if isinstance(entry, dict) and (entry.get("ended") or
                                                int(entry.get("wave", STARTING)) >= wave):
                    continue
                mark = json.dumps(entry, sort_keys=True)
                if k not in seen or seen[k][0] != mark:
                    seen[k] = (mark, now)
                elif now - seen[k][1] > self.timeout:
                    state = (f"never reported: can it reach the shard board on cluster "
                             f"{self.coordinator!r}, and was it given the same "
                             f"--shard-board?") if entry is None else \
                        f"last reported wave {int(entry.get('wave', STARTING)) + 1} done"
                    if entry is not None and int(entry.get("wave", STARTING)) < 0:
                        state = "never passed pre-flight"
                    self._mark_gone(k)
                    raise ShardStop(f"shard {k}/{self.shards} stopped reporting ({state}; "
                                    f"no heartbeat for {self.timeout:g}s): {what} fails")
                waiting.append(k)
            if not waiting:
                return
            silent = [k for k in waiting if entries.get(str(k)) is None]
            if wave == PREFLIGHT and silent:
                # Given different boards? (The default board: every look when it is
                # this one, else once a heartbeat.)
                again = now - looked_elsewhere > self.beat
                looked_elsewhere = now if again else looked_elsewhere
                try:
                    self.find_split(silent, board, entries, again)
                except SplitFound as exc:
                    raise ShardStop(str(exc)) from None
            if cancel is not None and cancel.wait(POLL):
                raise ShardStop("release aborted")
            if cancel is None:
                time.sleep(POLL)


def taker(action: str, cluster: str | None, shards: int) -> int | None:
    """The shard that takes a control request (`release-console control`) of a release
    run as `shards` shards: shard 1 answers the gates (approve, reject), the shard that
    owns CLUSTER skips or retries it; None: every shard (pause, resume and abort act on
    each shard's own clusters)."""
    if action in ("approve", "reject"):
        return 1
    if action in ("skip", "retry") and cluster:
        return shard_of(cluster, shards)
    return None


def coordinator(targets: Any, named: str | None = None) -> str:
    """The cluster holding the shard board: `named` (`deploy --shard-board CLUSTER`),
    else the first target of the whole release in sorted order (every shard computes
    the same)."""
    return named or sorted(targets)[0]


class BoardUnreachable(UserError):
    """This shard cannot use the shard board (exit 2, nothing touched)."""


def open_board(engine: Engine, request: ReleaseRequest, release_id: str) -> ShardBoard | None:
    """This shard's end of the shard board, written once and beating (None: not
    sharded); raises `BoardUnreachable` naming the board's cluster when this shard
    cannot reach it."""
    if request.shard is None:
        return None
    from dataclasses import replace
    whole = engine.plan(replace(request, shard=None))
    where = coordinator(whole.targets, request.shard_board)
    label = "{}/{}".format(*request.shard)
    try:
        board = ShardBoard(engine, release_id, request.shard[0], request.shard[1], where,
                           request.shard_timeout)
        board.whole, board.tag, board.operator = whole, request.tag, request.operator
        board.check_rights()
        try:
            board.publish()
        except ChannelError as exc:
            if exc.status != 404:
                raise
            # The cluster answered; the app's namespace is not there yet (it comes with
            # a first release): made as a release's lock makes it, then written again.
            engine.driver(where).ensure_namespace()
            board.publish()
        board.record_board()
    except BoardUnreachable:
        raise
    except (ChannelError, ClusterError, UserError) as exc:
        how = ("named by --shard-board" if request.shard_board else
               "the first target in sorted order; --shard-board CLUSTER names another, "
               "the same in every shard")
        raise BoardUnreachable(
            f"shard {label} cannot reach the shard board on cluster {where!r} ({how}): "
            f"{exc}. Every shard must reach that cluster; nothing was touched") from None
    board.start_beating()
    return board


__all__ = ["PREFLIGHT", "BoardUnreachable", "ShardBoard", "ShardStop", "coordinator",
           "open_board", "taker"]

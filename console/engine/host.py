"""The engine process's side of `console.engine.remote`: `EngineHost` builds one engine
and its session (`python -m console.engine.host READ_FD WRITE_FD FLEET_FILE OPTIONS`),
answers the console's calls, forwards events in batches and asks gate questions back.
The message forms are in `console.engine.remote`'s docstring.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from console.engine.api import (ControlChange, GateAnswer, GateDecision, GateRequest, ReleaseControl,
                                ReleaseRequest, ReleaseResult)
from console.engine.remote import (ENGINE_NICENESS, EVENT_BACKLOG_MAX, EVENT_BATCH_INTERVAL,
                                   EVENT_BATCH_MAX, METHODS, STOP_TIMEOUT)
from console.engine.identities import Identities, confirmed
from console.engine.one_cpu import one_cpu_unless_spread
from console.errors import UserError
from console.events import Event, Kind

GATE_LOOK = 0.25   # s between looks for a gate answer given through the control channel

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.session import Session


class EngineHost:
    """The child's side: one engine and its session, answering the console's calls."""

    def __init__(self, conn_in: Connection, conn_out: Connection, config_path: str,
                 options: Mapping[str, Any]) -> None:
        self._in = conn_in
        self._out = conn_out
        self.config_path = config_path
        self.options = dict(options)
        self._send_lock = threading.Lock()
        # Held while events are sent, so a gate question never overtakes queued events.
        self._order_lock = threading.Lock()
        # Bounded: a parent that stopped reading must not grow the child without end.
        self._events: queue.Queue[Event] = queue.Queue(maxsize=EVENT_BACKLOG_MAX)
        self._stop = threading.Event()
        self._queued = threading.Event()   # set when events wait in `_events`
        self._controls: dict[int, ReleaseControl] = {}
        self._controls_lock = threading.Lock()
        self._gates: dict[int, Future] = {}
        self._gate_ids = itertools.count(1)
        self._runs: list[threading.Thread] = []
        self._follow_watch: Any = None       # the follow screen's ChangeWatch
        self._follow_lock = threading.Lock()
        self.engine: Engine | None = None
        self.session: Session | None = None
        self.ledger_error: str | None = None
        # Who the console's person is, as each release's cluster confirms it
        # (`console.engine.identities`); made with the engine.
        self.identities: Identities | None = None
        self._key_release: dict[int, str] = {}    # release key -> its release id
        self._gate_release: dict[int, str] = {}   # gate id -> its release id
        self._running = threading.local()         # the release key of a run thread

    # -- start and stop -------------------------------------------------------------------

    def serve(self) -> None:
        """Build the engine and its session, answer calls until the console goes away."""
        from console.config import load
        from console.engine.core import Engine
        from console.session import Session, operator_name

        # The person at the keyboard comes first: the engine's work is waiting on clusters,
        # and a few milliseconds later matter nothing to a rollout, but they do to a key.
        os.nice(ENGINE_NICENESS)
        config = load(self.config_path)
        # Its threads take turns at Python's lock: on one CPU that costs less
        # (console.engine.one_cpu; the UI process is another, free to run elsewhere).
        one_cpu_unless_spread(config)
        self.engine = Engine(config, listeners=[self._queue_event], **self.options)
        self.identities = Identities(self.engine)
        try:
            self.session = Session(config, self.engine,
                                   on_warning=lambda text: self._send(("warning", text)))
        except UserError as exc:
            # The fleet can still be watched; the console refuses releases without a ledger.
            self.ledger_error = str(exc)
        # Who acts, as the session found it (the console names them at gates and pauses).
        operator = self.session.operator if self.session is not None else operator_name()
        flusher = threading.Thread(target=self._flush_events, name="events", daemon=True)
        flusher.start()
        self._send(("ready", self.ledger_error, operator))
        try:
            while True:
                self._dispatch(self._in.recv())
        except (EOFError, OSError):
            pass
        self._shutdown(flusher)

    def _shutdown(self, flusher: threading.Thread) -> None:
        """The console went away: stop a running release where it is (no rollback), and
        answer a pending gate with "stop here" so the release records how it ended."""
        for control in list(self._controls.values()):
            control.abort(rollback=False, by="console closed")
        for future in list(self._gates.values()):
            if not future.done():
                future.set_result(GateAnswer(GateDecision.REJECT, by="console closed"))
        for thread in list(self._runs):
            thread.join(timeout=STOP_TIMEOUT)
        if self.session is not None:
            # Every record committed, then what notifications are pending - within the
            # time the parent gives the child to stop.
            self.session.close(timeout=STOP_TIMEOUT / 2)
        self._follow_done()
        self._stop.set()
        flusher.join(timeout=STOP_TIMEOUT)
        if self.engine is not None:
            self.engine.close()

    # -- messages ---------------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self._out.send(message)

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "call":
            thread = threading.Thread(target=self._call, args=message[1:], daemon=True,
                                      name=f"call-{message[2]}")
            if message[2] == "run":
                self._runs = [t for t in self._runs if t.is_alive()] + [thread]
            thread.start()
        elif kind == "control":
            # A key pressed before the run call arrived acts on the release once it starts.
            kwargs = dict(message[3])
            if "by" in kwargs:
                kwargs["by"] = confirmed(self._who(self._key_release.get(message[1])),
                                         kwargs["by"])
            getattr(self._control(message[1]), message[2])(**kwargs)
        elif kind == "answer":
            # A gate decided through the control channel meanwhile is gone already.
            future = self._gates.get(message[1])
            if future is not None and not future.done():
                answer = message[2]
                who = self._who(self._gate_release.get(message[1]))
                future.set_result(GateAnswer(answer.decision, answer.rollback,
                                             confirmed(who, answer.by), answer.gate))

    def _who(self, release_id: str | None = None,
             cluster: str | None = None) -> tuple[str, bool] | None:
        """The person as the release's (or `cluster`'s) cluster confirms it (None: not
        known; see `console.engine.identities`)."""
        if self.identities is None or (release_id is None and cluster is None):
            return None
        return self.identities.who(release_id, cluster)

    def _queue_event(self, event: Event) -> None:
        """The engine listener: queue for the flusher (drops when the parent stalls).
        A release's start (emitted on its run thread) asks its cluster who we are."""
        if event.kind is Kind.RELEASE_STARTED and self.identities is not None:
            key = getattr(self._running, "key", None)
            if key is not None and event.release_id:
                self._key_release[key] = event.release_id
                self.identities.release_started(
                    event.release_id, [str(t) for t in event.data.get("targets") or ()])
        try:
            self._events.put_nowait(event)
        except queue.Full:
            return
        self._queued.set()

    def _flush_events(self) -> None:
        # Batches keep the console's wake-ups at 20 a second however fast clusters report.
        while not self._stop.is_set() or not self._events.empty():
            if not self._queued.wait(timeout=EVENT_BATCH_INTERVAL):
                continue
            self._stop.wait(EVENT_BATCH_INTERVAL)
            with self._order_lock:
                self._queued.clear()   # before draining: a later event sets it again
                self._send_queued([])

    def _send_queued(self, batch: list[Event]) -> None:
        """Send `batch` and every queued event, in batches (caller holds `_order_lock`)."""
        while True:
            while len(batch) < EVENT_BATCH_MAX:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self._send(("events", batch))
            if len(batch) < EVENT_BATCH_MAX:
                return
            batch = []

    def _approver(self, request: GateRequest, control: ReleaseControl) -> GateAnswer:
        """Ask the console's person, and take answers through the control channel too
        (`release-console control ID approve`, another console following): whichever
        decides first; the person's screen closes once the gate is decided elsewhere."""
        gate_id = next(self._gate_ids)
        answer: Future = Future()
        self._gates[gate_id] = answer
        self._gate_release[gate_id] = request.release_id
        try:
            return self._decide(request, control, gate_id, answer)
        finally:
            self._gate_release.pop(gate_id, None)

    def _decide(self, request: GateRequest, control: ReleaseControl, gate_id: int,
                answer: Future) -> GateAnswer:
        """The gate's answer: the person's, or the control channel's (see `_approver`)."""
        # Every event before the gate reaches the console before the question does: the
        # gate's ready counts are read from the state those events build (they showed 0/2
        # for a healthy cluster when the question overtook the last batch).
        with self._order_lock:
            self._send_queued([])
            self._send(("gate", gate_id, request))
        approvers: list[str] = []       # distinct identities that approved
        labels: list[str] = []          # how each is recorded
        need = max(1, request.approvals)
        while True:
            try:
                mine = answer.result(timeout=GATE_LOOK)
            except FutureTimeout:
                mine = None
            if mine is not None:
                if GateDecision(mine.decision) is not GateDecision.APPROVE or need <= 1:
                    self._gates.pop(gate_id, None)
                    return mine
                # `approvals: N`: the person's yes is one of them (once); the others
                # come through the control channel.
                self._gates.pop(gate_id, None)
                answer = Future()
                # The console's person is who the cluster says its credentials are
                # (whatever label the key was given). Only a name the cluster confirms
                # counts among distinct approvers, as for the terminal's yes: an
                # unconfirmed local name (the cluster was slow or has no
                # SelfSubjectReview) and the same person's confirmed `control approve`
                # would otherwise open a two-person gate alone.
                who = self._who(request.release_id)
                confirmed = who is not None and who[1]
                person = who[0] if who is not None and confirmed else mine.by
                counted = confirmed and person not in approvers
                if counted:
                    approvers.append(person)
                    labels.append(mine.by)
                    control.note_approval(request.next_wave, person)
                if len(approvers) >= need:
                    return GateAnswer(GateDecision.APPROVE, by=", ".join(labels))
                self._tell_approvals(request, approvers, need,
                                     again=person if confirmed and not counted else None,
                                     unconfirmed=None if confirmed else mine.by)
            remote = control.gate_answer(0, request.next_wave) if not control.aborted \
                else GateAnswer(GateDecision.ABORT, control.rollback_on_abort,
                                by="aborted while waiting")
            if remote is None:
                continue
            if GateDecision(remote.decision) is GateDecision.APPROVE:
                if remote.by not in approvers:
                    approvers.append(remote.by)
                    labels.append(remote.by)
                if len(approvers) < need:
                    self._tell_approvals(request, approvers, need)
                    continue
                remote = GateAnswer(GateDecision.APPROVE, by=", ".join(labels))
            if self._gates.pop(gate_id, None) is not None or approvers:
                return remote
            return answer.result()    # the person answered in the same instant

    def _tell_approvals(self, request: GateRequest, approvers: list[str], need: int,
                        again: str | None = None, unconfirmed: str | None = None) -> None:
        """Tell the console's person how far a gate that needs `need` distinct approvers
        is (`again`: who approved a second time; `unconfirmed`: a name the cluster did
        not confirm; neither counted): their `a` closed the question, but the gate still
        waits."""
        wave = request.next_wave + 1
        text = (f"{again} approved the gate before wave {wave} already; it needs distinct "
                "approvers. " if again else "")
        if unconfirmed:
            text += (f"{unconfirmed}'s approval is not counted: the release's cluster did "
                     "not confirm who you are (SelfSubjectReview). ")
        text += (f"Gate before wave {wave}: {len(approvers)} of {need} approvals "
                 f"({', '.join(approvers)}); it waits for {need - len(approvers)} more "
                 f"through the control channel: release-console control "
                 f"{request.release_id} approve")
        self._send(("notice", text))

    def _need_session(self) -> Session:
        if self.session is None:
            raise UserError(f"history unavailable: {self.ledger_error}")
        return self.session

    def _control(self, key: int) -> ReleaseControl:
        """The release's control, made by its run call or a key pressed before it; the
        console hears when the engine holds a cluster back in a pause."""
        with self._controls_lock:
            control = self._controls.get(key)
            if control is None:
                # Every release started in the console listens on the control channel
                # too, as a headless deploy does: `control ID pause`, another console.
                control = self._controls[key] = ReleaseControl(steerable=True)
                control.subscribe(lambda what, _by: what is ControlChange.HOLDING
                                  and self._send(("holding", key)))
        return control

    def _run(self, request: ReleaseRequest, key: int) -> ReleaseResult:
        assert self.engine is not None
        control = self._control(key)
        self._running.key = key    # its start event names the release of this key
        try:
            return self.engine.run(request, lambda gate: self._approver(gate, control),
                                   control)
        finally:
            self._running.key = None
            self._controls.pop(key, None)   # one entry per running release, not one per release ever
            release_id = self._key_release.pop(key, None)
            if release_id is not None and self.identities is not None:
                self.identities.release_ended(release_id)

    def _follow(self, release_id: str | None) -> Any:
        """The followed release now (ledger synced from its remote first, when set)."""
        from console.engine.follow import running_release, synced_snapshot
        assert self.engine is not None
        rid = release_id or running_release(self.engine)
        if rid is None:
            raise UserError("no release is running on this fleet's clusters")
        ledger = self.session.ledger if self.session is not None else None
        return synced_snapshot(self.engine, rid, ledger,
                               lambda message: self._send(("warning",
                                                           f"history remote: {message}")))

    def _follow_wait(self, clusters: list[str], timeout: float) -> bool:
        """Wait for a change of the followed release (`ChangeWatch` on `clusters`, made
        again when they differ) or `timeout` s."""
        from console.engine.follow import ChangeWatch
        assert self.engine is not None
        with self._follow_lock:
            watch = self._follow_watch
            if watch is None or watch.clusters != tuple(clusters):
                if watch is not None:
                    watch.close()
                ledger = self.session.ledger if self.session is not None else None
                watch = self._follow_watch = ChangeWatch(
                    self.engine, clusters, str(ledger.file) if ledger is not None else None)
        return watch.wait(timeout)

    def _follow_done(self) -> None:
        with self._follow_lock:
            watch, self._follow_watch = self._follow_watch, None
        if watch is not None:
            watch.close()

    def _call(self, call_id: int, method: str, args: tuple, kwargs: dict) -> None:
        engine = self.engine
        assert engine is not None
        try:
            if method == "run":
                result: Any = self._run(args[0], kwargs["control"])
            elif method == "releases":
                result = self._need_session().ledger.releases()
            elif method == "matrix":
                result = self._need_session().ledger.matrix(args[0], args[1])
            elif method == "follow":
                result = self._follow(args[0])
            elif method == "follow_wait":
                result = self._follow_wait(list(args[0]), float(args[1]))
            elif method == "follow_done":
                result = self._follow_done()
            elif method == "steer":
                from console.engine.steering_client import send
                result = send(engine, args[0], args[1], args[2],
                              rollback=bool(kwargs.get("rollback")))
            elif method == "rollback_release":
                # The ledger's releases: each cluster back to the digest recorded there;
                # the person as the first of its targets confirms it, as for a release.
                releases = self._need_session().ledger.releases()
                targets = next((list(r.targets) for r in releases if r.id == args[0]), [])
                who = self._who(cluster=min(targets)) if targets else None
                result = engine.rollback_release(
                    args[0], by=confirmed(who, kwargs.get("by", "")), releases=releases)
            elif method == "plan_rollback":
                releases = self._need_session().ledger.releases(cluster=args[0])
                result = engine.plan_rollback(args[0], args[1], releases)
            elif method in METHODS:
                result = getattr(engine, method)(*args, **kwargs)
            else:
                raise UserError(f"unknown engine call {method!r}")
            self._send(("result", call_id, result))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception:  # noqa: BLE001 - an exception that cannot cross the pipe
                exc = UserError(f"{type(exc).__name__}: {exc}")
            self._send(("error", call_id, exc))


def main(argv: list[str]) -> None:
    """`python -m console.engine.host READ_FD WRITE_FD FLEET_FILE OPTIONS_HEX`."""
    read_fd, write_fd, path, encoded = argv[:4]
    from console.redact import log_to_stderr
    log_to_stderr(traceback=True)   # stderr is the private engine log: keep the trace
    from console.engine.collector import pace_for_releases
    pace_for_releases()     # the console's engine process runs its releases
    EngineHost(Connection(int(read_fd), writable=False),
               Connection(int(write_fd), readable=False),
               path, pickle.loads(bytes.fromhex(encoded))).serve()


if __name__ == "__main__":
    main(sys.argv[1:])

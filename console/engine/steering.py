"""Steering a running release from outside: the listening end of the control channel.

Why the Lease and not a Unix socket: a release is often run by CI on another machine
(a Jenkins agent, a Kubernetes Job); the one place both that job and an operator's
terminal reach is the cluster, and the release already holds a Lease there
(`console.locks`). The wire is `console.locks.control` (annotations of the control
lease). Using the cluster also answers who may steer and who did: the API server lets
only credentials with update rights on the app's Lease - the same rights a release of
that app needs - write a request (a 403 otherwise). A release spans clusters, so rights
on one must not steer it across the others: `release-console control` writes the
request onto the release's Lease on *every* target cluster (the control lease last),
and the release takes it only once it finds it on all of them - every action, since
pause, abort and a gate decide for every cluster still to come, and skip and retry
change what the release delivers. `control` names the person by the identity the
cluster confirms (SelfSubjectReview); a request without a confirmed identity is refused. A Unix socket in the private directory would reach only the same
machine and user, and could only name a local login.

`open_channel(engine, run)` starts a thread that watches the control lease (one watch
request every `WATCH_TIMEOUT` s; while the watch fails, one GET every `POLL` s; a watch
silent for `PROBE` s is checked with one GET, so a hanging cluster is noticed), hands
each new request to the release's `ReleaseControl` - or
refuses it with the reason there is nothing to act on - writes the acknowledgement,
and keeps the live state (paused, gate waiting, approvals) in the `steering`
annotation for `release-console follow`. Every action taken is a `STEERED` event, so
the ledger records who did what. What an action may act on and what the wave runner
asks before a start are `console.engine.steering_rules`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from console.engine.api import GateAnswer, GateDecision
from console.engine.shards import taker
from console.events import Kind
from console.kube.watch_reader import WatchReader
from console.locks import control as wire

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun

log = logging.getLogger(__name__)

POLL = 0.5                 # s between looks at the live state (and, unwatched, the lease)
WATCH_TIMEOUT = 120        # s the server keeps one watch of the control lease open
RIGHTS_READERS = 32        # target leases read at once to check a request's rights
FAILOVER = 2               # failed rounds in a row before the channel moves to the next lease
WITHDRAW_EVERY = 10.0      # s before the first retry to take an old announcement off a
                           # lease; doubled after each failed try, up to WITHDRAW_MAX
WITHDRAW_MAX = 60.0
# s of silence on the watch before the lease is read anyway: a cluster that hangs
# (accepts, never answers) keeps the watch open and quiet - the read times out, and
# FAILOVER such rounds move the channel. One GET per PROBE s per release.
PROBE = 5.0
# Actions that only reduce what the release does: taken with the request shown on
# every target that can be read (see the module docstring).
REDUCING = ("pause", "abort", "reject")


class Channel:
    """The listening end for one release (see the module docstring)."""

    def __init__(self, engine: Engine, run: ReleaseRun, leases: list[Any]) -> None:
        self.engine = engine
        self.run = run
        self.leases = list(leases)          # the control lease first, then its stand-ins
        self.at = -1
        self.moves = 0                      # failovers so far: the newest announcement wins
        self.announced: set[int] = set()    # leases whose announcement is to be taken off
        self.handled: set[str] = set()
        self.approvers: dict[int, list[str]] = {}   # gate (next wave) -> who approved
        self._state: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._withdrawn_at = 0.0
        self._withdraw_wait = WITHDRAW_EVERY
        self._announced: tuple[int, dict[str, Any] | None] | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"steering-{run.release_id}")
        self._use(0)

    def _use(self, index: int) -> None:
        """Listen on the release's lease number `index` from now on."""
        lease = self.leases[index]
        self.at = index
        self.kube = lease.kube
        self.namespace = lease.namespace
        self.name = lease.name
        self.cluster = lease.cluster

    def open(self) -> Channel:
        """Announce the channel (old requests on the lease are someone else's) and listen."""
        try:
            self._announce(fresh=True)
        except wire.ChannelError as exc:
            log.warning("release %s: control channel not opened on %s: %s",
                        self.run.release_id, self.cluster, exc)
        self._thread.start()
        return self

    def _announce(self, fresh: bool) -> None:
        """Write the live state on the current lease: the release listens there. `fresh`
        (the release begins): requests and answers left there are someone else's. On a
        failover they stay: requests already written there are this release's."""
        shown = self.state()

        def announce(_lease: dict[str, Any], notes: dict[str, str]) -> bool:
            if fresh:
                notes.pop(wire.CONTROL, None)
                notes.pop(wire.ACK, None)
            notes[wire.STEERING] = wire.dump(shown)
            return True
        self.announced.add(self.at)
        lease = self.leases[self.at]
        written = wire.change(self.kube, self.namespace, self.name, announce,
                              self.engine.request_timeout, current=lease.held)
        lease.saw(written)
        # The channel's watch starts from this version, with this object as its first
        # event (no list: `_loop`).
        self._announced = (self.at, written)
        # What the lease shows now: the first round writes only when it changed (it
        # wrote the same state again: a read and a write per release).
        self._state = shown

    def close(self) -> None:
        """Stop listening and take the announcement off the lease(s)."""
        self._stop.set()
        self._thread.join(timeout=self.engine.request_timeout * 2 + 1)
        for index in sorted(self.announced, key=lambda i: i != self.at):
            try:
                self._withdraw(index)
            except wire.ChannelError as exc:
                log.warning("release %s: control channel not closed cleanly on %s: %s",
                            self.run.release_id, self.leases[index].cluster, exc)

    def _withdraw(self, index: int, timeout: float | None = None) -> None:
        """Take the announcement off lease number `index` (raises `ChannelError`)."""
        def withdraw(_lease: dict[str, Any], notes: dict[str, str]) -> bool:
            return notes.pop(wire.STEERING, None) is not None
        lease = self.leases[index]
        lease.saw(wire.change(lease.kube, lease.namespace, lease.name, withdraw,
                              timeout or self.engine.request_timeout, current=lease.held))
        self.announced.discard(index)

    def _fail_over(self) -> None:
        """The current lease failed FAILOVER rounds in a row: listen on the next one the
        release holds (back to the first after the last)."""
        if len(self.leases) < 2:
            return
        old = self.cluster
        self._use((self.at + 1) % len(self.leases))
        self.moves += 1
        log.warning("release %s: control lease on %s unreachable; listening on %s",
                    self.run.release_id, old, self.cluster)
        self._state = None
        self._announce(fresh=False)

    def _withdraw_old(self) -> None:
        """Take old announcements off leases the channel left, once their clusters answer
        again: a reader then finds one announcement of the release, where it listens.
        Throttled, with the status timeout: a cluster still down or hanging costs this
        loop a short wait, ever more rarely."""
        old = self.announced - {self.at}
        now = time.monotonic()
        if not old or now - self._withdrawn_at < self._withdraw_wait:
            return
        self._withdrawn_at = now
        failed = False
        for index in sorted(old):
            try:
                self._withdraw(index, self.engine.status_timeout)
            except wire.ChannelError:
                failed = True   # still down: a later try
        self._withdraw_wait = (min(self._withdraw_wait * 2, WITHDRAW_MAX) if failed
                               else WITHDRAW_EVERY)

    def state(self) -> dict[str, Any]:
        """The live state written for followers."""
        gate = self.run.gate_waiting
        state: dict[str, Any] = {"release": self.run.release_id,
                                 "paused": self.run.control.paused}
        if self.run.plan.shard is not None:
            # Every shard listens on a lease of its own (`console.engine.shards.taker`).
            state["shard"] = "{}/{}".format(*self.run.plan.shard)
            # Where a shard with an empty slice listens (`control` looks there for it).
            state["board"] = getattr(self.run.shards, "coordinator", None)
        if self.moves:
            # An announcement left on a lease whose cluster was down is older: the
            # asking end takes the highest.
            state["moves"] = self.moves
        baking = self.run.baking
        if baking is not None:
            # Followers count it down; the gate after the wave waits for it.
            wave, until = baking
            waves = self.run.plan.waves
            state["bake"] = {"wave": wave, "until": round(until, 3),
                             "gate": wave + 1 < len(waves) and waves[wave + 1].gate_before}
        if gate is not None:
            strategy = self.engine.config.strategies.get(self.run.plan.strategy)
            # Of a release run as shards the whole wave (`ShardBoard.whole`).
            plan = getattr(self.run.shards, "whole", None) or self.run.plan
            state["gate"] = {"wave": gate, "clusters": list(plan.waves[gate].clusters),
                             "approvals": strategy.approvals if strategy else 1,
                             "approved_by": self._approved(gate),
                             "finished": dict(self.run.gate_finished)}
            if getattr(self.run.shards, "unlisted", 0):
                # The gate's list of other shards' clusters was cut (counts exact).
                state["gate"]["unlisted"] = self.run.shards.unlisted
        return state

    def _loop(self) -> None:
        """Requests arrive through a watch of the control lease (one request per watch
        of a few minutes, not a read twice a second: issue 16); the live state is
        compared every POLL s and written when it changed. While the watch fails, every
        round reads the lease as before; FAILOVER failed rounds in a row move the channel
        to the next lease."""
        failures = 0
        while not self._stop.is_set():
            index = self.at
            heard = time.monotonic()
            events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
            # Watched from the version the announcement wrote, that lease its first event
            # (requests already there are taken as a list's would be); else listed first.
            announced, self._announced = self._announced, None
            version = None
            if announced is not None and announced[0] == index and announced[1]:
                version = (announced[1].get("metadata") or {}).get("resourceVersion")
                if version:
                    events.put(("lease", "ADDED", announced[1]))
            collection = wire.lease_path(self.namespace, self.name).rsplit("/", 1)[0]
            reader = WatchReader(self.kube, collection,
                                 {"fieldSelector": f"metadata.name={self.name}"},
                                 "lease", events, version or None, WATCH_TIMEOUT)
            reader.start()
            watching = False
            try:
                while not self._stop.is_set() and self.at == index:
                    try:
                        source, kind, obj = events.get(timeout=POLL)
                    except queue.Empty:
                        source, kind, obj = "", "", None
                    if self._stop.is_set():
                        return
                    try:
                        if source == "lease" and kind in ("ADDED", "MODIFIED"):
                            watching = True
                            heard = time.monotonic()
                            self._round(obj)
                        elif source == "error" or (source == "lease" and kind == "DELETED"):
                            watching = False
                            self._round()
                        elif watching and time.monotonic() - heard > PROBE:
                            heard = time.monotonic()   # a quiet watch: is it alive?
                            self._round()
                        else:
                            self._round(read=not watching)
                        failures = 0
                        self._withdraw_old()
                    except wire.ChannelError as exc:   # the next round tries again
                        failures += 1
                        watching = False
                        log.warning("release %s: control channel: %s",
                                    self.run.release_id, exc)
                        if failures >= FAILOVER and exc.status not in (403, 409):
                            failures = 0
                            try:
                                self._fail_over()
                            except wire.ChannelError as again:
                                log.warning("release %s: control channel: %s",
                                            self.run.release_id, again)
            finally:
                reader.stop()
                reader.join(timeout=2.0)

    def _round(self, lease: dict[str, Any] | None = None, read: bool = True) -> None:
        """Take the new requests on `lease` (read now when None and `read`; none when
        not), answer them and write the live state when it changed."""
        if lease is None and read:
            # The request timeout, not a shorter one: a read slow on a loaded machine
            # must not move the channel (a move makes askers look again).
            lease = wire.read(self.kube, self.namespace, self.name, self.engine.request_timeout)
        if lease is not None:
            # The version the release lock renews over next (`ClusterLease.saw`): our
            # writes, renewals and the asking ends' requests all change it.
            self.leases[self.at].saw(lease)
        requests = wire.decoded(lease, wire.CONTROL, []) if lease is not None else []
        answers: dict[str, dict[str, Any]] = {}
        for request in requests:
            rid = str(request.get("id") if isinstance(request, dict) else "")
            if not rid or rid in self.handled:
                continue
            self.handled.add(rid)
            if request.get("release") not in (None, "", self.run.release_id):
                continue   # left on this (stand-in) lease for an earlier release
            shard = self.run.plan.shard
            if shard is not None and taker(str(request.get("action") or ""),
                                           request.get("cluster") or None,
                                           shard[1]) not in (None, shard[0]):
                continue   # another shard's to take (its proof is on this lease too)
            try:
                ok, detail = self._take(request)
                answers[rid] = {"ok": ok, "detail": detail}
            except Refused as refusal:
                answers[rid] = {"ok": False, "refused": True, "detail": str(refusal)}
        state = self.state()
        if not answers and state == self._state:
            return

        def write(_lease: dict[str, Any], notes: dict[str, str]) -> bool:
            acks = {**wire.decoded(_lease, wire.ACK, {}), **answers}
            notes[wire.ACK] = wire.dump(dict(list(acks.items())[-wire.KEEP:]))
            notes[wire.STEERING] = wire.dump(state)
            return True
        self.leases[self.at].saw(wire.change(self.kube, self.namespace, self.name, write,
                                             self.engine.request_timeout))
        self._state = state

    def _take(self, request: dict[str, Any]) -> tuple[bool, str]:
        """Hand one request to the release: (taken, what happened or why not)."""
        control = self.run.control
        action = str(request.get("action") or "")
        cid = str(request.get("cluster") or "") or None
        by = str(request.get("by") or "someone")
        # `confirmed`: the requester's cluster named `by` (SelfSubjectReview). Anything
        # else - a local login the client fell back to, an old client, a hand-written
        # request - is refused and recorded as an unconfirmed attempt.
        confirmed = request.get("confirmed") is True
        if action not in wire.ACTIONS:
            return False, f"unknown action {action!r}"
        if not confirmed:
            # Whoever acts on a release must be someone the cluster names: an
            # unconfirmed name could be anyone's, so the request is refused, whatever it
            # asks - and the refusal is recorded, so the ledger shows the attempt.
            self._refuse(request, action, cid, by, False,
                         f"{by} is not confirmed by the cluster (SelfSubjectReview); only "
                         "a confirmed identity may steer a release")
        unreachable = self._check_rights(request, action, cid, by)
        why_not = control.check(action, cid)
        gate = self.run.gate_waiting
        asked_gate = request.get("gate")
        if why_not is None and action in ("approve", "reject") and \
                asked_gate is not None and asked_gate != gate:
            # Bound to the gate the requester saw: an answer for a gate that closed
            # meanwhile must not decide the next one.
            why_not = (f"the answer was for the gate before wave {_wave(asked_gate)}; "
                       + (f"the release now waits before wave {_wave(gate)}"
                          if gate is not None else "that gate is decided"))
        if why_not is None and action == "approve" and gate is not None:
            strategy = self.engine.config.strategies.get(self.run.plan.strategy)
            if by in self._approved(gate):
                why_not = f"{by} approved this gate already; it needs distinct approvers"
            elif len(self._approved(gate)) >= (strategy.approvals if strategy else 1):
                why_not = "this gate has its approvals already"
        if why_not is not None:
            return False, why_not
        rollback = bool(request.get("rollback"))
        detail = f"{action}{' ' + cid if cid else ''}{_by(by)}"
        if unreachable:
            detail += (f" (not shown on {', '.join(unreachable)}: unreachable; "
                       f"{action} only reduces what the release does)")
        if action in ("pause", "resume", "abort", "skip", "approve", "reject"):
            # Recorded before it acts: the ledger has who asked before what it caused.
            self.engine.event(Kind.STEERED, self.run.release_id, cid, detail, action=action,
                              by=by, confirmed=confirmed, rollback=rollback,
                              request=request.get("id"), unreachable=unreachable)
        if action == "pause":
            control.pause(by)
        elif action == "resume":
            control.resume(by)
        elif action == "abort":
            control.abort(rollback=rollback, by=by)
        elif action == "skip":
            control.skip(cid or "", by)
        elif action == "retry":
            control.retry(cid or "", by)
            detail += " (once the rest of its wave ended)"
        elif action == "approve":
            assert gate is not None
            self.approvers.setdefault(gate, []).append(by)
            control.answer_gate(GateAnswer(GateDecision.APPROVE, by=by, gate=gate))
            strategy = self.engine.config.strategies.get(self.run.plan.strategy)
            need = strategy.approvals if strategy else 1
            have = len(self._approved(gate))
            if have < need:
                detail += f" ({have} of {need} approvals)"
        elif action == "reject":
            control.answer_gate(GateAnswer(GateDecision.REJECT, by=by, gate=gate))
        return True, detail

    def _approved(self, gate: int) -> list[str]:
        """Who approved `gate`: where the release runs (its terminal, the console), then
        through this channel."""
        return self.run.control.local_approvals(gate) + list(self.approvers.get(gate, ()))

    def _check_rights(self, request: dict[str, Any], action: str, cid: str | None,
                      by: str) -> list[str]:
        """Refuse (`Refused`) unless the request is also on the release's Lease of every
        other target cluster: only someone the API server let update the app's Lease on
        each of them could have put it there, so rights on one cluster never steer a
        release across others (`release-console control` writes it to all of them
        before the control lease). A Lease that cannot be read (its cluster unreachable)
        refuses approve, skip, retry and resume; for the REDUCING actions it is left out
        of the proof. Returns the clusters left out so."""
        others = [lease for lease in self.run.release_lock.leases
                  if lease.cluster != self.cluster] if self.run.release_lock else []
        if not others and self.run.shards is not None and not self.run.plan.order:
            # A shard with an empty slice listens on the board's cluster: its proof is
            # the release's Lease on every target of the whole release (the others').
            others = self.run.shards.proof(self.engine)
        if not others:
            return []
        rid = request.get("id")

        def on_lease(lease: Any) -> tuple[str, str] | None:
            """None when the request is on `lease`, else ("missing"|"unreachable", why)."""
            try:
                if lease.kube is None:
                    raise wire.ChannelError("its credentials do not load")
                found = wire.read(lease.kube, lease.namespace, lease.name,
                                  self.engine.request_timeout)
            except wire.ChannelError as exc:
                if exc.status == 403:
                    return "missing", f"{lease.cluster} (the release may not read it: {exc})"
                return "unreachable", f"{lease.cluster} ({exc})"
            ids = {r.get("id") for r in wire.decoded(found, wire.CONTROL, [])
                   if isinstance(r, dict)}
            return None if rid in ids else ("missing", lease.cluster)

        with ThreadPoolExecutor(max_workers=min(RIGHTS_READERS, len(others)),
                                thread_name_prefix="steer-rights") as pool:
            found = [why for why in pool.map(on_lease, others) if why is not None]
        missing = [why for kind, why in found if kind == "missing"]
        unreachable = [why for kind, why in found if kind == "unreachable"]
        if missing:
            self._refuse(request, action, cid, by, True,
                         f"the request is not on the release's Lease of {_few(missing)}: "
                         "steering a release needs update rights on the app's Lease on "
                         "every cluster it targets")
        if unreachable and action not in REDUCING:
            self._refuse(request, action, cid, by, True,
                         f"{_few(unreachable)} unreachable: {action} needs the request "
                         "shown on every cluster the release targets (pause, abort and "
                         "reject are taken on the reachable ones); try again once it "
                         "answers")
        return [why.split(" ", 1)[0] for why in unreachable]

    def _refuse(self, request: dict[str, Any], action: str, cid: str | None, by: str,
                confirmed: bool, why: str) -> None:
        """Record a refused request (a `steered` event with `refused`) and raise `Refused`."""
        self.engine.event(Kind.STEERED, self.run.release_id, cid,
                          f"{action}{' ' + cid if cid else ''}{_by(by)}"
                          f"{'' if confirmed else ' (unconfirmed)'}: refused: {why}",
                          action=action, by=by, confirmed=confirmed, refused=why,
                          request=request.get("id"))
        raise Refused(why)


class Refused(Exception):
    """A request refused for who sent it (its message says why; recorded, answered)."""


def open_channel(engine: Engine, run: ReleaseRun) -> Channel | None:
    """Listen for control requests on the release's control lease (None: no lease)."""
    leases = list(run.release_lock.leases) if run.release_lock is not None else []
    if not leases and run.shards is not None:
        # A shard with no cluster in its slice still listens: on its lease on the
        # board's cluster (`ShardBoard.listen`), so shard 1 can answer every gate.
        leases = run.shards.listen(engine)
    return Channel(engine, run, leases).open() if leases else None


def _few(names: list[str]) -> str:
    """The first five of `names`, and how many more."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _wave(gate: Any) -> str:
    """The 1-based number of the wave a gate (0-based index of the wave it lets start) opens."""
    try:
        return str(int(gate) + 1)
    except (TypeError, ValueError):
        return repr(gate)


def _by(who: str) -> str:
    return f" by {who}" if who else ""


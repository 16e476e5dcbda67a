"""One release run as N shards (`deploy --shard K/N`): what keeps waves, gates and the
failure budget global while each process releases only its slice of the clusters.

Each shard is a whole `deploy` process with the same fleet file, selection and
`--release-id`: it plans the whole release, keeps its slice (`console.plan.shard_plan`),
runs pre-flight and takes the release locks of its own clusters only, and meets the
others on the *shard board* (`console.locks.shards`: one annotation of a Lease in the
coordinator cluster, the first target in sorted order):

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
- **A gate is answered once.** Shard 1 is the gate shard: it asks its approver (`--yes`,
  the terminal, or `release-console control RELEASE_ID approve` on its control channel
  - only shard 1 listens there) and writes the answer on the board; the other shards
  wait for that answer and act on it (reject stops them, abort with rollback rolls back
  each shard's own clusters).
- **A dead shard fails the gate.** Each shard bumps a heartbeat on the board every few
  seconds. A waiting shard judges the others by its own monotonic clock: one whose
  entry did not change for `shard_timeout` seconds (and has not reached the wave) is
  taken as gone, and the waiting shard stops (exit 3) naming it - and writes a stop on
  the board, so every other shard stops at its next barrier too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from console.engine.api import Approver, GateAnswer, GateDecision, GateRequest, Outcome
from console.locks import shards as wire
from console.locks.control import ChannelError

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.run_state import ReleaseRun

log = logging.getLogger(__name__)

POLL = 0.5                 # s between looks at the board while waiting
BEAT_MAX = 5.0             # s between heartbeats at most
PREFLIGHT = -1             # the "wave" a shard has finished once its pre-flight passed
STARTING = -2              # before that
# A shard ending this way stops every shard (a failed pre-flight, a rejected gate, an
# abort, a lost lock); a failed release only spends the shared budget.
STOPS_ALL = (Outcome.PREFLIGHT_FAILED, Outcome.ABORTED, Outcome.STOPPED)


class ShardStop(Exception):
    """The release must stop here (the message says which shard and why)."""


class ShardBoard:
    """This shard's end of the board (see the module docstring)."""

    def __init__(self, engine: Engine, release_id: str, shard: int, shards: int,
                 coordinator: str, timeout: float) -> None:
        driver = engine.driver(coordinator)
        self.kube = driver.client
        self.namespace = driver.namespace
        self.coordinator = coordinator
        self.name = wire.board_name(engine.config.app.name)
        self.release_id = release_id
        self.shard, self.shards = shard, shards
        self.timeout = float(timeout)
        self.request_timeout = engine.request_timeout
        self.entry: dict[str, Any] = {"wave": STARTING, "failures": 0, "beat": 0}
        self.run: ReleaseRun | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        """`2/3`."""
        return f"{self.shard}/{self.shards}"

    @property
    def gate_shard(self) -> bool:
        """Whether this shard answers the gates for all (shard 1)."""
        return self.shard == 1

    # -- writing -----------------------------------------------------------------------

    def publish(self, **fields: Any) -> dict[str, Any]:
        """Write this shard's entry with `fields` changed; returns the board as written.
        Raises `ChannelError` when the board cannot be written."""
        with self._lock:
            self.entry.update(fields)
            self.entry["beat"] = int(self.entry.get("beat", 0)) + 1
            entry = dict(self.entry)
        if self.run is not None:
            entry["failures"] = len(self.run.failed)

        def edit(board: dict[str, Any]) -> None:
            board.setdefault("of", self.shards)
            board.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            board.setdefault("shards", {})[str(self.shard)] = entry
        try:
            return wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                               self.request_timeout)
        except ChannelError:
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
        def edit(board: dict[str, Any]) -> None:
            board.setdefault("stop", {"by": self.shard, "why": why})
        try:
            wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                        self.request_timeout)
        except ChannelError as exc:
            log.warning("release %s shard %s: could not write the stop: %s",
                        self.release_id, self.label, exc)

    def start_beating(self) -> None:
        """Bump the heartbeat (and publish the failures) until `close`; each beat also
        reads the others' failures into the run's `shared_failures` (once `run` is set)."""
        interval = max(0.5, min(BEAT_MAX, self.timeout / 4))

        def beat() -> None:
            while not self._stop.wait(interval):
                board = self.try_publish()
                if board is not None:
                    self._count_others(board)
        self._thread = threading.Thread(target=beat, daemon=True,
                                        name=f"shard-beat-{self.release_id}")
        self._thread.start()

    def close(self, outcome: Outcome, why: str) -> None:
        """This shard ended: stop beating, publish the end (and a stop for all when the
        way it ended stops the release everywhere)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.request_timeout * 2 + 1)
        self.try_publish(ended=outcome.value, why=why[:300])
        if outcome in STOPS_ALL:
            self.stop_all(f"shard {self.label} ended {outcome.value}: {why}"[:300])

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
        while True:
            now = time.monotonic()
            try:
                board = wire.read(self.kube, self.namespace, self.name, self.release_id,
                                  self.request_timeout)
            except ChannelError as exc:
                log.warning("release %s shard %s: shard board: %s", self.release_id,
                            self.label, exc)
                board = {}
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
                    state = "never reported" if entry is None else \
                        f"last reported wave {int(entry.get('wave', STARTING)) + 1} done"
                    if entry is not None and int(entry.get("wave", STARTING)) < 0:
                        state = "never passed pre-flight"
                    raise ShardStop(f"shard {k}/{self.shards} stopped reporting ({state}; "
                                    f"no heartbeat for {self.timeout:g}s): {what} fails")
                waiting.append(k)
            if not waiting:
                return
            if cancel is not None and cancel.wait(POLL):
                raise ShardStop("release aborted")
            if cancel is None:
                time.sleep(POLL)

    def approver(self, own: Approver) -> Approver:
        """The approver of this shard: shard 1 asks `own` and writes the answer on the
        board; the others wait for that answer there."""
        if self.gate_shard:
            def ask(request: GateRequest) -> GateAnswer:
                answer = own(request)
                decided = {"decision": GateDecision(answer.decision).value, "by": answer.by,
                           "rollback": bool(answer.rollback)}

                def edit(board: dict[str, Any]) -> None:
                    board.setdefault("gates", {})[str(request.next_wave)] = decided
                try:
                    wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                                self.request_timeout)
                except ChannelError as exc:
                    # The others cannot learn the answer: stop here too.
                    return GateAnswer(GateDecision.REJECT,
                                      by=f"shard board unwritable ({exc})")
                return answer
            return ask

        def wait(request: GateRequest) -> GateAnswer:
            seen: tuple[str, float] | None = None
            while True:
                try:
                    board = wire.read(self.kube, self.namespace, self.name,
                                      self.release_id, self.request_timeout)
                except ChannelError:
                    board = {}
                decided = (board.get("gates") or {}).get(str(request.next_wave))
                if isinstance(decided, dict):
                    return GateAnswer(GateDecision(decided.get("decision", "reject")),
                                      by=f"{decided.get('by') or '?'} (via shard 1)",
                                      rollback=bool(decided.get("rollback")))
                lead = (board.get("shards") or {}).get("1")
                if isinstance(lead, dict) and lead.get("ended"):
                    return GateAnswer(GateDecision.REJECT,
                                      by=f"shard 1/{self.shards} ended "
                                         f"{lead.get('ended')} before answering")
                mark, now = json.dumps(lead, sort_keys=True), time.monotonic()
                if seen is None or seen[0] != mark:
                    seen = (mark, now)
                elif now - seen[1] > self.timeout:
                    return GateAnswer(GateDecision.REJECT,
                                      by=f"shard 1/{self.shards} stopped reporting (no "
                                         f"heartbeat for {self.timeout:g}s)")
                time.sleep(POLL)
        return wait


def coordinator(targets: Any) -> str:
    """The cluster holding the shard board: the first target of the whole release in
    sorted order (every shard computes the same)."""
    return sorted(targets)[0]


__all__ = ["PREFLIGHT", "ShardBoard", "ShardStop", "coordinator"]

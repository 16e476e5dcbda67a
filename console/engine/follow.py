"""Following a release another process runs: what it is doing now, read from outside.

A release run by a headless `deploy` (in CI, on another machine) or by another console
is seen through three sources, none of them that process:

- the clusters: the app's Deployment annotations (`release-console/release-id`, the
  version) and its replica counts say where the release has reached and how far each
  rollout is;
- the release Leases: who holds each cluster, and on the control lease the live state
  the release publishes (`console.locks.control`: paused, the wave baking and until
  when, the gate waiting and who approved it so far);
- the ledger (pulled with `history.remote` when one is set): the release's version,
  strategy, targets and operator, each cluster's recorded outcome and the end.

`snapshot()` reads them once into a `FollowView`; `release-console follow` and the
console's `f` screen read one again whenever `ChangeWatch` sees something change: a watch
(the Kubernetes watch API, `console.kube.watch_reader`) on the release's Lease - the lock
and the control channel's live state - and on the app's Deployment of each target
cluster, and the ledger file (a `stat` every `LEDGER_LOOK` s). A change is shown within a
fraction of a second of happening; without one, a reading every `--interval` s still
pulls a remote ledger.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console.engine.api import FollowPhase
from console.engine.steering_client import live_state, read_leases, with_empty_slices
from console.errors import UserError
from console.kube.client import ClusterError
from console.kube.watch_reader import WatchReader
from console.locks import lease_name

if TYPE_CHECKING:
    from console.engine.core import Engine


@dataclass(frozen=True)
class ClusterLine:
    """One cluster of the followed release, now."""

    cluster: str
    phase: FollowPhase | str    # the ledger's outcome (an `Outcome` value) once it has one
    version: str | None
    ready: int
    desired: int

    def text(self) -> str:
        """`prod-eu  rolling 1/3  v2`."""
        counts = f" {self.ready}/{self.desired}" if self.phase in (FollowPhase.ROLLING,
                                                                    FollowPhase.READY) else ""
        return f"{self.cluster:<20} {self.phase}{counts}  {self.version or '-'}"


@dataclass
class FollowView:
    """The followed release as read now."""

    release_id: str
    version: str | None = None
    strategy: str = ""
    operator: str = ""
    holders: list[str] = field(default_factory=list)   # clusters whose lease it holds
    steering: dict[str, Any] = field(default_factory=dict)
    clusters: list[ClusterLine] = field(default_factory=list)
    recorded: bool = False          # the ledger has the release
    outcome: str | None = None      # the ledger's end (None while it runs)

    @property
    def running(self) -> bool:
        """Whether some cluster's lease is still held by the release."""
        return bool(self.holders)

    def bake_text(self, now: float) -> str | None:
        """`wave 1 baking: 0:14 left; the gate before wave 2 opens after it`, or None."""
        bake = self.steering.get("bake")
        if not isinstance(bake, dict):
            return None
        wave = int(bake.get("wave", 0))
        left = max(0, int(float(bake.get("until") or 0) - now))
        return (f"wave {wave + 1} baking: {left // 60}:{left % 60:02d} left"
                + (f"; the gate before wave {wave + 2} opens after it" if bake.get("gate")
                   else ""))

    def gate_text(self) -> str | None:
        """`gate before wave 2 (b, c) waits for approval (0 of 1) ...`, or None."""
        gate = self.steering.get("gate")
        if not isinstance(gate, dict):
            return None
        by = gate.get("approved_by") or []
        done = gate.get("finished") if isinstance(gate.get("finished"), dict) else {}
        so_far = ", ".join(f"{n} {o}" for o, n in sorted(done.items()))
        return (f"gate before wave {int(gate.get('wave', 0)) + 1} "
                f"({', '.join(gate.get('clusters') or [])}) "
                + (f"after {so_far} " if so_far else "") + "waits for approval "
                f"({len(by)} of {gate.get('approvals', 1)}"
                f"{': ' + ', '.join(by) if by else ''}): "
                f"release-console control {self.release_id} approve")


def running_release(engine: Engine) -> str | None:
    """The release that listens for control on this fleet now, else one holding a
    lease (None: no release runs)."""
    # A lease a release left behind (not renewed for many durations) runs nothing.
    views = [v for v in read_leases(engine) if not v.left_behind]
    listening = sorted(v.steering.get("release") for v in views if v.steering.get("release"))
    if listening:
        return str(listening[0])
    holding = sorted(v.release for v in views if v.release)
    return holding[0] if holding else None


def snapshot(engine: Engine, release_id: str, ledger: Any | None) -> FollowView:
    """Read the release's state from the ledger (`console.history.Ledger`, None: none),
    its leases and its clusters."""
    view = FollowView(release_id)
    record = None
    if ledger is not None:
        found = ledger.releases(ids={release_id})
        record = found[0] if found else None
    leases = read_leases(engine)
    view.holders = [v.cluster for v in leases if v.release == release_id]
    # The live state is on the lease the release listens on now: after its channel moved
    # (its control lease's cluster was down) an older announcement may be left on the
    # first one - the one with the most moves is the live one; one on a lease the
    # release left behind (not renewed for many durations) is nobody's. A release run
    # as shards listens once per shard: one state for all (`live_state`) - a shard
    # with no cluster in its slice on its own lease on the board's cluster.
    view.steering = live_state(with_empty_slices(engine, leases, release_id), release_id)
    targets: list[str] = list(view.holders)
    if record is not None:
        view.recorded = True
        view.version, view.strategy, view.operator = (record.version, record.strategy,
                                                      record.operator)
        view.outcome = record.outcome
        targets = list(record.targets) or targets
    statuses = {s.cluster: s for s in engine.status(targets)} if targets else {}
    for cid in targets:
        outcome = record.outcome_of(cid) if record is not None else None
        status = statuses.get(cid)
        version = status.version if status else None
        ready, desired = (status.ready, status.desired) if status else (0, 0)
        if outcome is not None:
            phase = outcome.outcome
        elif status is not None and not status.reachable:
            phase = FollowPhase.UNREACHABLE
        elif status is not None and status.release_id == release_id:
            phase = FollowPhase.READY if desired and ready >= desired else FollowPhase.ROLLING
            view.version = view.version or version
        else:
            phase = FollowPhase.WAITING
        view.clusters.append(ClusterLine(cid, phase, version, ready, desired))
    return view


LEDGER_LOOK = 0.1      # s between looks at the ledger file's size and mtime
WATCH_TIMEOUT = 300    # s the API server keeps one watch stream open (it resumes after)


def synced_snapshot(engine: Engine, release_id: str, ledger: Any | None,
                    on_warning: Callable[[str], None]) -> FollowView:
    """`snapshot` after syncing the ledger from its remote (when it has one; a failed
    sync goes to `on_warning`, once per call, and the local records are read).

    A release records and pushes its end before it gives its leases back (waves.py), so
    a follower that synced just before the end and read the leases just after sees it
    recorded, ended nowhere and holding nothing: sync again before believing that (it
    would say the release's console stopped without recording an end)."""
    from console.history import HistoryError

    def read() -> FollowView:
        if ledger is not None and ledger.remote:
            try:
                ledger.sync()
            except HistoryError as exc:
                on_warning(str(exc))
        return snapshot(engine, release_id, ledger)

    view = read()
    if view.recorded and not view.running and view.outcome is None:
        view = read()
    return view


class ChangeWatch:
    """Watches on the followed release's Lease and the app's Deployment on each of
    `clusters`, and on the ledger file: `wait(timeout)` returns True as soon as one of
    them changed, False when `timeout` s passed without a change."""

    def __init__(self, engine: Engine, clusters: Sequence[str], ledger_file: str | None) -> None:
        self.clusters = tuple(clusters)
        self.ledger_file = ledger_file
        self._events: queue.Queue = queue.Queue()
        self._readers: list[WatchReader] = []
        self._ledger_seen = self._ledger_stamp()
        name = lease_name(engine.config.app.name)
        for cid in self.clusters:
            try:
                driver = engine.driver(cid)
            except (UserError, ClusterError):
                continue     # its credentials do not load: the readings say so
            ns = driver.namespace
            for path, selector, source in (
                    (f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", name, "lease"),
                    (f"/apis/apps/v1/namespaces/{ns}/deployments", engine.config.app.name,
                     "deployment")):
                self._readers.append(WatchReader(
                    driver.client, path, {"fieldSelector": f"metadata.name={selector}"},
                    f"{cid}/{source}", self._events, None, WATCH_TIMEOUT))
        for reader in self._readers:
            reader.start()

    def _ledger_stamp(self) -> tuple[int, int] | None:
        if not self.ledger_file:
            return None
        try:
            info = os.stat(self.ledger_file)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def wait(self, timeout: float) -> bool:
        """Until something changed (True, every change so far taken) or `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._events.get(timeout=min(LEDGER_LOOK, left))
            except queue.Empty:
                stamp = self._ledger_stamp()
                if stamp != self._ledger_seen:
                    self._ledger_seen = stamp
                    return True
                continue
            while True:                 # a burst is one change: read once
                try:
                    self._events.get_nowait()
                except queue.Empty:
                    self._ledger_seen = self._ledger_stamp()   # the reading sees it too
                    return True

    def close(self) -> None:
        """Stop every watch."""
        for reader in self._readers:
            reader.stop()
        for reader in self._readers:
            reader.join(timeout=5)

"""`ReleaseRun`: the mutable state of one release while the wave runner runs it - the
results so far, the failure budget, the per-cluster stop events, the leases held,
hand-overs to manual actions, pacing and freeze windows - and why no new cluster may
start now (`stop_reason`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from console.engine.api import ClusterResult, Outcome, ReleaseControl
from console.engine.pacing import Pacer
from console.kube.driver import LiveDeployment
from console.kube.waking import WakingEvent
from console.locks import ReleaseLock
from console.plan import Plan

if TYPE_CHECKING:
    from console.engine.bake import Baseline
    from console.engine.shards import ShardBoard


@dataclass
class ReleaseRun:
    """The mutable state of one release while it runs."""

    release_id: str
    tag: str
    plan: Plan
    control: ReleaseControl
    before: dict[str, LiveDeployment]
    results: dict[str, ClusterResult] = field(default_factory=dict)
    # Clusters counted against the failure budget: counted when a cluster fails, before
    # its rollback starts, so nothing new starts while that rollback runs.
    failed: set[str] = field(default_factory=set)
    # Guards `results` and `failed`; a cluster's CLUSTER_STARTED and a failure's count
    # are both made under it, so no cluster starts after a failure spent the budget.
    lock: threading.Lock = field(default_factory=threading.Lock)
    release_lock: ReleaseLock | None = None
    # Whether some cluster was not started, or stopped mid-rollout, because a lease was lost.
    stopped_by_lost_lock: bool = False
    # Per cluster: set when its rollout must stop (the release aborted, or its lease lost).
    stops: dict[str, threading.Event] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    # Clusters an operator took over mid-release (a manual rollback), and by whom.
    handed_over: dict[str, str] = field(default_factory=dict)
    # The next wave's index while the release waits at its gate (None: no gate waits),
    # and the finished clusters it shows counted by outcome (every shard's when sharded).
    gate_waiting: int | None = None
    gate_finished: dict[str, int] = field(default_factory=dict)
    # The wave baking now and when its bake ends (epoch s), for followers (None: none).
    baking: tuple[int, float] | None = None
    # Set once the last wave's clusters all ended: a retry or skip asked now would never
    # run, so the control channel refuses them.
    closing: bool = False
    # The digest the tag was resolved to at plan time: every wave runs it (None: --no-pin).
    digest: str | None = None
    # Per healthy cluster: what its rollout applied, the baseline its wave's bake holds it to.
    baselines: dict[str, Baseline] = field(default_factory=dict)
    # A sharded release (`console.engine.shards.ShardBoard`; None: not sharded), and the
    # failures the other shards published (counted against the shared budget).
    shards: ShardBoard | None = None
    shared_failures: int = 0

    def holds(self, cid: str) -> bool:
        """Whether this release holds `cid`'s lease now."""
        lock = self.release_lock
        return lock is not None and cid in self.plan.order and cid not in lock.lost

    def naming_cluster(self) -> str | None:
        """The cluster whose SelfSubjectReview names a gate's approver: the first the
        release holds (its control lease) - of a shard with an empty slice the board's,
        where it listens - as `release-console control` asks (None: none held)."""
        lock = self.release_lock
        if lock is not None and lock.leases:
            return lock.leases[0].cluster
        return self.shards.coordinator if self.shards is not None else None

    def hand_over(self, cid: str, by: str, timeout: float) -> None:
        """Give `cid` to a manual action inside this release: interrupt its rollout and
        wait (up to `timeout` s) until it stopped; it is not started later and no
        rollback of this release touches it again."""
        with self.lock:
            self.handed_over[cid] = by or "an operator"
            started = cid in self.started
        self.interrupt(cid)
        if started:
            with self.settled:
                self.settled.wait_for(lambda: cid in self.results, timeout)

    def __post_init__(self) -> None:
        # Notified (under `lock`) whenever a cluster's result is recorded.
        self.settled = threading.Condition(self.lock)
        # At most N starts in any window (the plan's max_starts); who was told it waits.
        self.pacer = Pacer(self.plan.max_starts)
        self.paced: set[str] = set()

    def record_skip(self, cid: str, reason: str) -> None:
        """Record `cid` skipped for `reason` (its result under `lock`: the control
        channel's listener reads `results` under it; waiters on `settled` are woken)."""
        before = self.before.get(cid)
        with self.lock:
            self.results[cid] = ClusterResult(cid, Outcome.SKIPPED,
                                              before.version if before else None, self.tag,
                                              error=reason)
            self.settled.notify_all()

    def lease_lost(self, cid: str) -> str | None:
        """Why this cluster's lease was lost (another holder took it), or None."""
        return self.release_lock.lost.get(cid) if self.release_lock is not None else None

    def stop_event(self, cid: str) -> threading.Event:
        """The event that interrupts `cid`'s rollout (set already if it must not run)."""
        with self.lock:
            event = self.stops.setdefault(cid, WakingEvent())
        if self.control.aborted or self.lease_lost(cid):
            event.set()
        return event

    def interrupt(self, cid: str | None = None) -> None:
        """Interrupt one cluster's rollout (its lease was lost), or every one (abort)."""
        with self.lock:
            events = list(self.stops.values()) if cid is None else \
                [self.stops.setdefault(cid, WakingEvent())]
        for event in events:
            event.set()
    # Why a stop from outside the plan stops new starts (None: none has): a freeze
    # window that opened mid-release (`freeze_check` looks; set by the runner when the
    # fleet file has windows), or another shard's stop (`halt`). Either ends the
    # release `stopped` (exit 3).
    freeze_check: Callable[[], str | None] | None = None
    frozen: str | None = None

    def freeze_reason(self) -> str | None:
        """Why a freeze window that opened stops new starts, or None; remembered."""
        if self.frozen is None and self.freeze_check is not None:
            self.frozen = self.freeze_check()
        return self.frozen

    def halt(self, why: str) -> bool:
        """Another shard stopped the release (`console.engine.shards`): no new cluster
        starts here, as when a freeze window opens; False when stopped already."""
        with self.lock:
            if self.frozen is not None:
                return False
            self.frozen = why
            return True

    def open_gate(self, gate: int) -> str | None:
        """The release waits at `gate` from now (`gate_waiting`); why it is stopped
        already, or None. Under `lock`, as `halt` is: a stop either came first and is
        returned here, or comes later and finds `gate_waiting` set (and answers it)."""
        with self.lock:
            self.gate_waiting = gate
            return self.frozen

    def lock_lost(self) -> str | None:
        """Why no new cluster may start because a lease was lost (None while all are held)."""
        lost = dict(self.release_lock.lost) if self.release_lock is not None else {}
        if not lost:
            return None
        cid = sorted(lost)[0]
        return f"release lock lost on {cid} ({lost[cid]}); no new cluster starts"

    @property
    def failures(self) -> int:
        """Clusters that failed so far (their rollbacks may still run), in every shard."""
        return len(self.failed) + self.shared_failures

    def count_failure(self, cid: str) -> None:
        """Count `cid` against the failure budget (once; call under `lock`)."""
        self.failed.add(cid)

    def budget_exceeded(self) -> bool:
        """Whether the failures so far end the release."""
        if self.plan.stop_on_first_failure:
            return self.failures > 0
        return self.failures > self.plan.max_failures

    def stop_reason(self) -> str | None:
        """Why no new cluster may start now (abort, lost lease, spent budget), or None."""
        if self.control.aborted:
            return "release aborted"
        lost = self.lock_lost()
        if lost:
            return lost
        if self.budget_exceeded():
            return budget_reason(self)
        return self.freeze_reason()


def budget_reason(run: ReleaseRun) -> str:
    """Why the failures so far stop the release."""
    if run.plan.stop_on_first_failure:
        return "stopped at the first failure (serial)"
    return (f"failure budget spent: {run.failures} failed, "
            f"{run.plan.max_failures} tolerated")

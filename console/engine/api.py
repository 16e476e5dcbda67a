"""The engine's vocabulary: what a caller asks for and what it gets back.

Requests (`ReleaseRequest`), the gate's question and answer (`GateRequest`,
`GateDecision`, `GateAnswer`), results (`ClusterResult`, `ReleaseResult`, each with an
`Outcome`), what the read-only queries return (`ClusterStatus`, `ClusterDetail`,
`PodInfo`, `EventInfo`) and `ReleaseControl` (pause/resume/abort from another thread).

`Outcome` itself lives in `console.events` (the ledger, the notifier and JUnit, which
sit below the engine, compare with it too) and is re-exported here.

Importing this module loads no `kubernetes` module (and nothing of `console.kube`), so
the TUI's process - which runs the engine in a child process - can use these types
without paying for the client.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from console.events import FAILURE_OUTCOMES, Outcome
from console.redact import scrub

if TYPE_CHECKING:  # type names only: importing them would load the Kubernetes client
    from console.kube.driver import Revision
    from console.preflight import PreflightReport


@dataclass(frozen=True)
class ReleaseRequest:
    """What to release where, as the CLI flags or the TUI form give it."""

    tag: str
    clusters: str = ""
    strategy: str = "serial"
    order: tuple[str, ...] = ()
    max_parallel: int | None = None
    max_failures: str | None = None
    operator: str = ""
    # Release into open freeze windows anyway: the reason (`--override-freeze --reason`),
    # recorded in the ledger and notified with who gave it. None: windows refuse.
    override_freeze: str | None = None
    # Resolve the tag to its digest at plan time and run `repo:tag@digest` everywhere
    # (`console.engine.pinning`); False (`--no-pin`): the plain tag, for registries
    # that cannot answer a manifest HEAD.
    pin: bool = True
    # Seconds every wave is watched once healthy (`deploy --bake`); None: the strategy's.
    bake: float | None = None
    # `N/DURATION` (`deploy --pace`): at most N clusters start in any DURATION; None:
    # the strategy's `max_starts`.
    pace: str | None = None
    # What a failure rolls back (`deploy --on-failure`): cluster | wave | release; None:
    # the strategy's `on_failure` (default cluster).
    on_failure: str | None = None
    # `deploy --shard K/N`: this process releases the K-th of N stable slices of the
    # plan's clusters (`console.plan.shard_of`); waves, gates and the failure budget stay
    # the whole release's (`console.engine.shards`). None: the whole plan.
    shard: tuple[int, int] | None = None
    # The release id (`deploy --release-id`): every shard of one release passes the same
    # one. None: a new one (`new_release_id`).
    release_id: str | None = None
    # Seconds a shard waits for another shard that stopped reporting (its heartbeat on
    # the shard board unchanged) before it fails the gate (`deploy --shard-timeout`).
    shard_timeout: float = 120.0
    # The cluster holding the shard board (`deploy --shard-board`); None: the first
    # target of the whole release in sorted order.
    shard_board: str | None = None


class GateDecision(str, Enum):
    """The answer at a gate."""

    APPROVE = "approve"
    REJECT = "reject"
    ABORT = "abort"


class ControlChange(StrEnum):
    """What a `ReleaseControl` tells its observers (str-valued: what they compare is
    what was always sent)."""

    PAUSED = "paused"
    RESUMED = "resumed"
    HOLDING = "holding"     # the engine first held a cluster back in a pause
    ABORTED = "aborted"


class FollowPhase(StrEnum):
    """Where a followed cluster stands while the ledger has no outcome for it
    (`console.engine.follow`; str-valued, as `follow --json` always wrote them)."""

    WAITING = "waiting"
    ROLLING = "rolling"
    READY = "ready"
    UNREACHABLE = "unreachable"


def _settle(result: Any, text_field: str) -> None:
    """A result's outcome as its `Outcome` (a string is accepted), and its message text
    scrubbed once where it is made (like events), so every printer gets it."""
    object.__setattr__(result, "outcome", Outcome(result.outcome))
    if getattr(result, text_field):
        object.__setattr__(result, text_field, scrub(getattr(result, text_field)))


@dataclass(frozen=True)
class ClusterResult:
    """How one cluster ended (a string outcome is turned into its `Outcome`)."""

    cluster: str
    outcome: Outcome
    from_version: str | None = None
    to_version: str | None = None
    duration: float = 0.0
    error: str | None = None
    rolled_back_to: str | None = None
    digest: str | None = None   # the digest the release pinned `to_version` to

    def __post_init__(self) -> None:
        _settle(self, "error")


@dataclass(frozen=True)
class GateRequest:
    """The question at a gate: the finished wave's results and who is next."""

    release_id: str
    finished_wave: int
    results: tuple[ClusterResult, ...]
    next_clusters: tuple[str, ...]
    # Distinct approvers needed (the strategy's `approvals`, default 1).
    approvals: int = 1
    # Seconds the finished wave was watched once healthy (its bake); the gate opens after.
    baked: float = 0.0
    # The finished clusters this process released: of a release run as shards its own
    # slice (`results` has every shard's); () when `results` are all its own.
    here: tuple[str, ...] = ()
    # Of a release run as shards: finished clusters of other shards not in `results` - a
    # shard names at most 200 that did not end healthy on the shard board, past that
    # they are only counted (the gate's counts stay exact).
    unlisted: int = 0

    @property
    def next_wave(self) -> int:
        """The index of the wave the gate lets start (the one after the finished wave)."""
        return self.finished_wave + 1


@dataclass(frozen=True)
class GateAnswer:
    """The answer: decision, whether to roll back what was reached (abort), and who."""

    decision: GateDecision
    rollback: bool = False
    by: str = ""
    # The gate (the index of the wave it lets start) the answer was given for; an answer
    # through the control channel is bound to it, so it never decides a later gate.
    gate: int | None = None


Approver = Callable[[GateRequest], GateAnswer]


@dataclass(frozen=True)
class ReleaseResult:
    """How a release ended (a string outcome is turned into its `Outcome`)."""

    release_id: str
    outcome: Outcome
    exit_code: int
    clusters: tuple[ClusterResult, ...]
    preflight: PreflightReport | None = None
    message: str = ""

    def __post_init__(self) -> None:
        _settle(self, "message")


@dataclass(frozen=True)
class ClusterStatus:
    """One cluster's live state, as `status()` reads it."""

    cluster: str
    version: str | None
    image: str | None
    revision: int | None
    ready: int
    desired: int
    reachable: bool
    error: str | None = None
    release_id: str | None = None
    previous_version: str | None = None
    # The Helm driver's: the release's current revision, its chart version and status.
    helm_revision: int | None = None
    chart_version: str | None = None
    helm_status: str | None = None
    digest: str | None = None   # the digest the app's image is pinned to (None: a tag only)
    app_version: str | None = None  # the Helm driver's: the chart's appVersion (Chart.yaml)


@dataclass(frozen=True)
class PodInfo:
    """One pod for the detail view."""

    name: str
    phase: str
    ready: bool
    restarts: int
    reason: str
    image: str


@dataclass(frozen=True)
class EventInfo:
    """One Kubernetes event for the detail view's timeline."""

    time: str
    type: str
    reason: str
    object: str
    message: str


@dataclass(frozen=True)
class ClusterDetail:
    """Pods, rollout history, recent events and the last error of one cluster."""

    cluster: str
    pods: tuple[PodInfo, ...] = ()
    revisions: tuple[Revision, ...] = ()
    events: tuple[EventInfo, ...] = ()
    last_error: str | None = None


class ReleaseControl:
    """Steer a running release from another thread (the TUI, a signal, the control channel).

    Pause, resume and abort act at once; `skip` and `retry` are asked for one cluster
    and taken by the wave runner (a skip before the cluster starts, a retry once the
    rest of its wave ended); gate answers given here are waited for by `gate_answer`
    (`deploy --wait-for-approval`). `check(action, cluster)` says why an action has
    nothing to act on (None: it has) - the runner installs the judge (`judge`).
    """

    def __init__(self, steerable: bool = False) -> None:
        """`steerable`: the release listens on the control channel (`console.engine.
        steering`) while it runs."""
        self._lock = threading.Lock()
        self._paused = False
        self._abort: bool | None = None   # None: not aborted; else whether to roll back
        self._observers: list[Callable[[ControlChange, str], None]] = []
        self.aborted_event = threading.Event()
        # Set once the engine has held a cluster back because the release is paused:
        # what a caller (or a test) waits on to know the pause took effect.
        self.holding = threading.Event()
        self.steerable = steerable
        self._skips: dict[str, str] = {}      # cluster -> who asked
        self._retries: dict[str, str] = {}    # cluster -> who asked
        self._answers: list[GateAnswer] = []  # gate answers not yet taken
        # Approvals given where the release runs (its terminal, the console's `a`), by
        # gate: the control channel counts them among a gate's distinct approvers.
        self._local_approvals: dict[int, list[str]] = {}
        self._answered = threading.Condition(self._lock)
        self.judge: Callable[[str, str | None], str | None] | None = None

    @property
    def paused(self) -> bool:
        """True while no new cluster may start."""
        return self._paused

    @property
    def aborted(self) -> bool:
        """True once `abort` was called."""
        return self._abort is not None

    @property
    def rollback_on_abort(self) -> bool:
        """Whether the abort asked to roll back what the release reached."""
        return bool(self._abort)

    def check(self, action: str, cluster: str | None = None) -> str | None:
        """Why `action` (on `cluster`) has nothing to act on now; None when it has."""
        if self.aborted:
            return "the release is aborting"
        if action == "pause" and self._paused:
            return "the release is paused already"
        if action == "resume" and not self._paused:
            return "the release is not paused"
        judge = self.judge
        return judge(action, cluster) if judge is not None else None

    def pause(self, by: str = "") -> None:
        """Start no new cluster until `resume` (running ones finish)."""
        with self._lock:
            changed, self._paused = not self._paused, True
        if changed:
            self._notify(ControlChange.PAUSED, by)

    def resume(self, by: str = "") -> None:
        """Let new clusters start again."""
        with self._lock:
            changed, self._paused = self._paused, False
            self.holding.clear()
        if changed:
            self._notify(ControlChange.RESUMED, by)

    def hold(self) -> None:
        """The engine holds a cluster back because the release is paused (observers are
        told once a pause, as `holding`)."""
        with self._lock:
            first = not self.holding.is_set()
            self.holding.set()
        if first:
            self._notify(ControlChange.HOLDING, "")

    def abort(self, rollback: bool = False, by: str = "") -> None:
        """Stop starting clusters, interrupt running rollouts; optionally roll back all reached."""
        with self._lock:
            if self._abort is None:
                self._abort = rollback
            self._answered.notify_all()
        self.aborted_event.set()
        self._notify(ControlChange.ABORTED, by)

    def skip(self, cluster: str, by: str = "") -> None:
        """Never start `cluster` in this release (recorded `skipped_by_operator`)."""
        with self._lock:
            self._skips.setdefault(cluster, by)

    def retry(self, cluster: str, by: str = "") -> None:
        """Deploy the failed `cluster` again once the rest of its wave ended."""
        with self._lock:
            self._retries.setdefault(cluster, by)

    def answer_gate(self, answer: GateAnswer) -> None:
        """Give an answer to the gate the release waits at (or will wait at next)."""
        with self._lock:
            self._answers.append(answer)
            self._answered.notify_all()

    def take_skip(self, cluster: str) -> str | None:
        """Who asked to skip `cluster` (the request is taken), or None."""
        with self._lock:
            return self._skips.pop(cluster, None)

    def skip_asked(self, cluster: str) -> bool:
        """Whether a skip of `cluster` waits to be taken."""
        with self._lock:
            return cluster in self._skips

    def take_retries(self) -> dict[str, str]:
        """Every retry asked so far (cluster -> who), taken."""
        with self._lock:
            taken, self._retries = self._retries, {}
        return taken

    def gate_answer(self, timeout: float | None, gate: int | None = None) -> GateAnswer | None:
        """The next gate answer, waiting up to `timeout` s (None: no answer in time, or
        the release was aborted meanwhile). With `gate`, answers bound to another gate
        are stale and dropped."""
        def fresh() -> bool:
            if gate is not None:
                self._answers = [a for a in self._answers if a.gate in (None, gate)]
            return bool(self._answers) or self._abort is not None
        with self._lock:
            self._answered.wait_for(fresh, timeout)
            return self._answers.pop(0) if self._answers else None

    def close_gate(self, gate: int) -> None:
        """Drop every answer still queued for `gate` (or for no particular gate): the gate
        is decided, and an approval given for it must never carry over to the next one."""
        with self._lock:
            self._answers = [a for a in self._answers
                             if a.gate is not None and a.gate != gate]

    def note_approval(self, gate: int, by: str) -> None:
        """Record that `by` (an identity the cluster confirms) approved `gate` where the
        release runs; the control channel shows it and refuses `by` a second time."""
        with self._lock:
            self._local_approvals.setdefault(gate, []).append(by)

    def local_approvals(self, gate: int) -> list[str]:
        """Who approved `gate` where the release runs (`note_approval`)."""
        with self._lock:
            return list(self._local_approvals.get(gate, ()))

    def subscribe(self, observer: Callable[[ControlChange, str], None]) -> None:
        """Call `observer(what, by)` on pause/resume/abort (the engine emits events) and
        when the engine first holds a cluster back in a pause (`ControlChange.HOLDING`)."""
        with self._lock:
            self._observers.append(observer)

    def unsubscribe(self, observer: Callable[[ControlChange, str], None]) -> None:
        """Stop calling `observer`."""
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _notify(self, what: ControlChange, by: str) -> None:
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            observer(what, by)


def wait_for_approval(control: ReleaseControl, gate_timeout: float | None) -> Approver:
    """The `Approver` of `deploy --wait-for-approval`: wait for answers given through
    `control` (the control channel) until the gate has its `approvals` distinct
    approvers; any reject or abort decides at once; no decision within `gate_timeout`
    s (None: forever) rejects (the release stops, exit 3)."""
    import time

    def approve(request: GateRequest) -> GateAnswer:
        deadline = None if gate_timeout is None else time.monotonic() + gate_timeout
        approvers: list[str] = []
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            answer = control.gate_answer(left, request.next_wave)
            if answer is None:
                if control.aborted:
                    return GateAnswer(GateDecision.ABORT, control.rollback_on_abort,
                                      by="aborted while waiting")
                return GateAnswer(GateDecision.REJECT,
                                  by=f"gate timeout ({gate_timeout:g}s without approval)")
            if GateDecision(answer.decision) is not GateDecision.APPROVE:
                return answer
            if answer.by not in approvers:
                approvers.append(answer.by)
            if len(approvers) >= max(1, request.approvals):
                return GateAnswer(GateDecision.APPROVE, by=", ".join(approvers))

    return approve


def new_release_id(now: datetime | None = None) -> str:
    """A release id such as `r-20261125-1402-ab12` (UTC minute plus 4 random hex)."""
    now = now or datetime.now(timezone.utc)
    return f"r-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"

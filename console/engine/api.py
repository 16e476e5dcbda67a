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
from enum import Enum
from typing import TYPE_CHECKING

from console.events import FAILURE_OUTCOMES, Outcome

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


class GateDecision(str, Enum):
    """The answer at a gate."""

    APPROVE = "approve"
    REJECT = "reject"
    ABORT = "abort"


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))


@dataclass(frozen=True)
class GateRequest:
    """The question at a gate: the finished wave's results and who is next."""

    release_id: str
    finished_wave: int
    next_wave: int
    results: tuple[ClusterResult, ...]
    next_clusters: tuple[str, ...]


@dataclass(frozen=True)
class GateAnswer:
    """The answer: decision, whether to roll back what was reached (abort), and who."""

    decision: GateDecision
    rollback: bool = False
    by: str = ""


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
        object.__setattr__(self, "outcome", Outcome(self.outcome))


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
    """Pause, resume or abort a running release from another thread (the TUI, a signal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paused = False
        self._abort: bool | None = None   # None: not aborted; else whether to roll back
        self._observers: list[Callable[[str, str], None]] = []
        self.aborted_event = threading.Event()
        # Set once the engine has held a cluster back because the release is paused:
        # what a caller (or a test) waits on to know the pause took effect.
        self.holding = threading.Event()

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

    def pause(self, by: str = "") -> None:
        """Start no new cluster until `resume` (running ones finish)."""
        with self._lock:
            changed, self._paused = not self._paused, True
        if changed:
            self._notify("paused", by)

    def resume(self, by: str = "") -> None:
        """Let new clusters start again."""
        with self._lock:
            changed, self._paused = self._paused, False
            self.holding.clear()
        if changed:
            self._notify("resumed", by)

    def abort(self, rollback: bool = False, by: str = "") -> None:
        """Stop starting clusters, interrupt running rollouts; optionally roll back all reached."""
        with self._lock:
            if self._abort is None:
                self._abort = rollback
        self.aborted_event.set()
        self._notify("aborted", by)

    def subscribe(self, observer: Callable[[str, str], None]) -> None:
        """Call `observer(what, by)` on pause/resume/abort (the engine emits events)."""
        with self._lock:
            self._observers.append(observer)

    def unsubscribe(self, observer: Callable[[str, str], None]) -> None:
        """Stop calling `observer`."""
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _notify(self, what: str, by: str) -> None:
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            observer(what, by)


def new_release_id(now: datetime | None = None) -> str:
    """A release id such as `r-20261125-1402-ab12` (UTC minute plus 4 random hex)."""
    now = now or datetime.now(timezone.utc)
    return f"r-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"

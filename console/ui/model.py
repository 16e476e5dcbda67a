"""The console's view-model types: a cluster's phase and row, log lines, the release
being followed, and the pure helpers they need (durations, the filter query).

Plain Python, no Textual: `console.ui.state.FleetState` holds these and changes them from
engine events; widgets read them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import Enum

from console.events import Kind

class Phase(str, Enum):
    """Where one cluster stands; every phase has a glyph and a word (monochrome-safe)."""

    IDLE = "idle"
    CHECKING = "checking"
    WAITING = "waiting"
    ROLLING = "rolling"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"

    @property
    def glyph(self) -> str:
        """One character that tells the phase apart without colour."""
        return _GLYPHS[self]

    @property
    def word(self) -> str:
        """The phase in words, as the grid prints it."""
        return self.value.replace("_", " ")

    @property
    def active(self) -> bool:
        """True while the engine is working on the cluster."""
        return self in (Phase.CHECKING, Phase.ROLLING, Phase.ROLLING_BACK)


_GLYPHS = {
    Phase.IDLE: "·",
    Phase.CHECKING: "…",
    Phase.WAITING: "◷",
    Phase.ROLLING: "⟳",
    Phase.HEALTHY: "✔",
    Phase.FAILED: "✘",
    Phase.ROLLING_BACK: "↺",
    Phase.ROLLED_BACK: "↩",
    Phase.SKIPPED: "»",
    Phase.UNREACHABLE: "✖",
}

PRODUCTION_GLYPH = "●"
DRIFT_GLYPH = "≠"


@dataclass(frozen=True)
class ClusterInfo:
    """The static facts about a cluster the grid needs (from `clusters.yaml`)."""

    id: str
    groups: tuple[str, ...] = ()
    production: bool = False


@dataclass
class ClusterView:
    """One row of the fleet grid. Mutable: events update it in place."""

    info: ClusterInfo
    phase: Phase = Phase.IDLE
    live: str | None = None       # the version the cluster runs, as last seen
    target: str | None = None     # the version the release working on it brings
    recorded: str | None = None   # the version the ledger recorded there last
    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    started: float | None = None
    finished: float | None = None
    message: str = ""
    error: str = ""
    wave: int | None = None
    marked: bool = False
    reachable: bool = True  # as last seen (status reading or engine event)
    helm_revision: int | None = None           # a chart app: Helm's live revision
    recorded_helm_revision: int | None = None  # ... and the one the ledger recorded
    bake_until: float | None = None            # healthy, its wave baking until (epoch s)

    @property
    def id(self) -> str:
        """The cluster id."""
        return self.info.id

    @property
    def drift(self) -> bool:
        """True when the live version differs from what the ledger recorded, or (a chart
        app) Helm's live revision does: a `helm upgrade`/`rollback` outside the console."""
        if self.recorded and self.live and self.live != self.recorded:
            return True
        return bool(self.live and self.helm_revision is not None
                    and self.recorded_helm_revision is not None
                    and self.helm_revision != self.recorded_helm_revision)

    @property
    def resting_phase(self) -> Phase:
        """The phase of a cluster no release is working on: idle, or unreachable."""
        return Phase.IDLE if self.reachable else Phase.UNREACHABLE

    def note(self, now: float) -> str:
        """The grid's NOTE: the bake's countdown while its wave bakes, else the message."""
        if self.bake_until is not None and self.phase is Phase.HEALTHY:
            return f"baking · {format_duration(max(0.0, self.bake_until - now))} left"
        return self.message

    def elapsed(self, now: float) -> float | None:
        """Seconds since the cluster started its rollout (frozen once it finished)."""
        if self.started is None:
            return None
        return max(0.0, (self.finished if self.finished is not None else now) - self.started)


@dataclass(frozen=True)
class LogLine:
    """One line of the event log."""

    ts: float
    cluster: str
    text: str
    kind: Kind | None = None
    bad: bool = False


@dataclass
class ReleaseView:
    """The release the console is following (the last one started)."""

    release_id: str
    version: str = ""
    strategy: str = ""
    targets: tuple[str, ...] = ()
    waves: tuple[tuple[str, ...], ...] = ()
    gates: tuple[bool, ...] = ()    # per wave: whether a gate opens before it
    operator: str = ""
    wave: int | None = None
    started: float | None = None
    finished: float | None = None
    outcome: str | None = None
    paused: bool = False
    gate_waiting: bool = False
    # A wave baking (watched once healthy): its index and when the bake ends (epoch s).
    bake_wave: int | None = None
    bake_until: float | None = None
    preflight_ok: bool | None = None

    def bake_left(self, now: float) -> float | None:
        """Seconds left of the bake running now (None: no wave bakes)."""
        return None if self.bake_until is None else max(0.0, self.bake_until - now)

    def gate_after(self, wave: int) -> bool:
        """Whether a gate opens once `wave` (and its bake) is over."""
        return wave + 1 < len(self.gates) and self.gates[wave + 1]

    def elapsed(self, now: float) -> float:
        """Seconds since the release was planned (frozen once it finished)."""
        if self.started is None:
            return 0.0
        return max(0.0, (self.finished if self.finished is not None else now) - self.started)


def format_duration(seconds: float | None) -> str:
    """`m:ss` (or `h:mm:ss`), `-` when unknown."""
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def matches(info: ClusterInfo, query: str) -> bool:
    """Does a filter query select this cluster?

    Terms are separated by commas or spaces; a cluster matches when any term does, and
    no `!term` does. A term matches the id (substring), a group (exactly), or either as
    a glob when it holds `*`, `?` or `[`; an exclusion names an id exactly (as in
    `console.plan` selectors), a group, or a glob.
    """
    terms = [t for t in query.replace(",", " ").split() if t]
    if not terms:
        return True
    include = [t for t in terms if not t.startswith("!")]
    exclude = [t[1:] for t in terms if t.startswith("!") and len(t) > 1]
    if any(_term_matches(info, t, exact=True) for t in exclude):
        return False
    return not include or any(_term_matches(info, t) for t in include)


def _term_matches(info: ClusterInfo, term: str, exact: bool = False) -> bool:
    term = term.lower()
    if any(c in term for c in "*?["):
        return fnmatch.fnmatchcase(info.id.lower(), term) or any(
            fnmatch.fnmatchcase(g.lower(), term) for g in info.groups)
    in_id = term == info.id.lower() if exact else term in info.id.lower()
    return in_id or term in (g.lower() for g in info.groups)

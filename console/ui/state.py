"""The fleet as the console shows it: a plain-Python view model fed by engine events.

Nothing here imports Textual, so the model is fast to test and cheap to update: the
app drains engine events into `FleetState.apply` on the UI thread, and the widgets
redraw only the clusters named by `take_dirty()` on a timer. Every time shown (elapsed,
the header clock) is computed from the injected `clock`, so snapshot tests can freeze it.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from console.events import Event, Kind, Outcome
from console.ui.model import (DRIFT_GLYPH, PRODUCTION_GLYPH, ClusterInfo, ClusterView, LogLine,
                              Phase, ReleaseView, format_duration, matches)

__all__ = ["DRIFT_GLYPH", "PRODUCTION_GLYPH", "ClusterInfo", "ClusterView", "FleetState",
           "LogLine", "Phase", "ReleaseView", "format_duration", "matches"]


class FleetState:
    """Every cluster's row, the current release, and the event log.

    `apply(event)` is the only way events change it; it records which rows changed so
    the grid repaints just those. Not thread-safe by design: the app applies events on
    its own thread.
    """

    LOG_LINES = 500
    TIMELINE_LINES = 200

    def __init__(self, clusters: Iterable[ClusterInfo], clock: Callable[[], float] = time.time,
                 loading: str | None = None):
        self.clock = clock
        self.clusters: dict[str, ClusterView] = {c.id: ClusterView(c) for c in clusters}
        # The fleet file being read while there are no rows yet (its path), else None.
        self.loading = loading if not self.clusters else None
        self.release: ReleaseView | None = None
        self.log: deque[LogLine] = deque(maxlen=self.LOG_LINES)
        self.timelines: dict[str, deque[LogLine]] = {}
        self._dirty: set[str] = set()
        self._release_dirty = False
        self._new_log: list[LogLine] = []

    # -- reading -----------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """Cluster ids in `clusters.yaml` order."""
        return list(self.clusters)

    def now(self) -> float:
        """The injected clock's time."""
        return self.clock()

    def marked(self) -> list[str]:
        """Ids of the marked clusters, in fleet order."""
        return [c.id for c in self.clusters.values() if c.marked]

    def visible(self, query: str) -> list[str]:
        """Ids the filter `query` selects, in fleet order."""
        return [c.id for c in self.clusters.values() if matches(c.info, query)]

    def counts(self) -> Counter[Phase]:
        """How many of the release's targets are in each phase (all clusters if none)."""
        ids = self.release.targets if self.release and self.release.targets else self.clusters
        return Counter(self.clusters[i].phase for i in ids if i in self.clusters)

    def timeline(self, cluster_id: str) -> list[LogLine]:
        """Every event seen for one cluster this session, oldest first."""
        return list(self.timelines.get(cluster_id, ()))

    @property
    def pending_repaint(self) -> bool:
        """Whether changes wait for the next repaint (`take_dirty`)."""
        return bool(self._dirty or self._release_dirty or self._new_log)

    def take_dirty(self) -> tuple[set[str], bool, list[LogLine]]:
        """Rows changed, whether the release header changed, and new log lines, since
        the last call (then forgotten)."""
        dirty, self._dirty = self._dirty, set()
        release_dirty, self._release_dirty = self._release_dirty, False
        lines, self._new_log = self._new_log, []
        return dirty, release_dirty, lines

    # -- changing ------------------------------------------------------------------

    def set_clusters(self, clusters: Iterable[ClusterInfo]) -> None:
        """The fleet file's clusters, read after the first frame (no longer loading)."""
        self.clusters = {c.id: ClusterView(c) for c in clusters}
        self.loading = None
        self._release_dirty = True

    def toggle_mark(self, cluster_id: str) -> bool:
        """Mark or unmark a cluster; returns the new mark."""
        row = self.clusters[cluster_id]
        row.marked = not row.marked
        self._dirty.add(cluster_id)
        return row.marked

    def clear_marks(self) -> None:
        """Unmark every cluster."""
        for row in self.clusters.values():
            if row.marked:
                row.marked = False
                self._dirty.add(row.id)

    def apply_status(self, statuses: Sequence[Any]) -> None:
        """Fold in the engine's live reading (`Engine.status()` items).

        Rows the engine is working on keep their phase; an idle row learns its live
        version and replica counts, and turns unreachable (or back) as the reading says.
        """
        for st in statuses:
            row = self.clusters.get(st.cluster)
            if row is None:
                continue
            row.reachable = bool(st.reachable)
            if st.reachable:
                row.live = st.version
                row.helm_revision = getattr(st, "helm_revision", None)
                if not row.phase.active:
                    row.desired, row.ready = st.desired or 0, st.ready or 0
                    row.available = row.updated = row.ready
                if row.phase is Phase.UNREACHABLE:
                    row.phase, row.message = Phase.IDLE, ""
            elif row.phase in (Phase.IDLE, Phase.UNREACHABLE):
                row.phase = Phase.UNREACHABLE
                row.message = _one_line(st.error or "unreachable")
            self._dirty.add(row.id)

    def apply_recorded(self, recorded: Mapping[str, str | None],
                       helm: Mapping[str, int | None] | None = None) -> None:
        """Fold in the ledger's last recorded version per cluster (drift = live differs),
        and for a chart app the Helm revision it recorded (`helm`)."""
        for cid, version in recorded.items():
            row = self.clusters.get(cid)
            revision = (helm or {}).get(cid)
            if row is not None and (row.recorded, row.recorded_helm_revision) != (version,
                                                                                  revision):
                row.recorded, row.recorded_helm_revision = version, revision
                self._dirty.add(cid)

    def apply(self, event: Event) -> None:
        """Update the model from one engine event."""
        handler = _HANDLERS.get(event.kind)
        row = self.clusters.get(event.cluster) if event.cluster else None
        if handler is not None:
            handler(self, event, row)
        if row is not None:
            self._dirty.add(row.id)
            # Passed pre-flight checks are noise in a cluster's rollout timeline.
            if event.kind is not Kind.PREFLIGHT_RESULT or not event.data.get("ok", False):
                timeline = self.timelines.setdefault(row.id, deque(maxlen=self.TIMELINE_LINES))
                timeline.append(self._line(event))
        if event.kind is not Kind.CLUSTER_PROGRESS and event.kind is not Kind.PREFLIGHT_RESULT:
            self._log(self._line(event))
        elif event.kind is Kind.PREFLIGHT_RESULT and not event.data.get("ok", True):
            self._log(self._line(event))

    def _log(self, line: LogLine) -> None:
        self.log.append(line)
        self._new_log.append(line)
        if len(self._new_log) > self.LOG_LINES:
            del self._new_log[: -self.LOG_LINES]

    def _line(self, event: Event) -> LogLine:
        bad = event.kind in (Kind.CLUSTER_FAILED, Kind.CLUSTER_UNREACHABLE) or (
            event.kind in (Kind.PREFLIGHT_RESULT, Kind.PREFLIGHT_FINISHED, Kind.CLUSTER_ROLLED_BACK)
            and event.data.get("ok") is False)
        return LogLine(event.ts, event.cluster or "", _one_line(event.message or _describe(event)),
                       event.kind, bad)

    def _touch_release(self) -> None:
        self._release_dirty = True


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(event: Event) -> str:
    """A fallback message for an event that came without one."""
    d = event.data
    k = event.kind
    if k is Kind.CLUSTER_FAILED or k is Kind.CLUSTER_UNREACHABLE:
        return str(d.get("error", k.value))
    if k is Kind.CLUSTER_HEALTHY:
        return f"healthy at {d.get('version', '?')} in {format_duration(d.get('duration'))}"
    if k is Kind.GATE_DECIDED:
        return f"gate: {d.get('decision', '?')}" + (f" by {d['by']}" if d.get("by") else "")
    if k is Kind.RELEASE_FINISHED:
        return f"release finished: {d.get('outcome', '?')}"
    return k.value.replace("_", " ")


# -- event handlers (one per kind that changes the model) ------------------------------

Handler = Callable[[FleetState, Event, "ClusterView | None"], None]


def _for_release(change: Callable[[ReleaseView, Event], None]) -> Handler:
    """The handler of a release-wide event: `change` the release shown (if any)."""
    def handle(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
        if state.release is not None:
            change(state.release, ev)
            state._touch_release()
    return handle


def _for_row(change: Callable[[FleetState, Event, ClusterView], None]) -> Handler:
    """The handler of one cluster's event: `change` its row (none for a cluster the
    console does not show)."""
    def handle(state: FleetState, ev: Event, row: ClusterView | None) -> None:
        if row is not None:
            change(state, ev, row)
    return handle


def _release_planned(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
    d = ev.data
    targets = tuple(d.get("targets") or ())
    waves = tuple(tuple(w.get("clusters", ()) if isinstance(w, Mapping) else w)
                  for w in d.get("waves") or ())
    gates = tuple(bool(w.get("gate_before")) if isinstance(w, Mapping) else False
                  for w in d.get("waves") or ())
    state.release = ReleaseView(release_id=ev.release_id, version=str(d.get("version", "")),
                                strategy=str(d.get("strategy", "")), targets=targets,
                                waves=waves, gates=gates, operator=str(d.get("operator", "")),
                                started=ev.ts)
    wave_of = {cid: i for i, wave in enumerate(waves) for cid in wave}
    for row in state.clusters.values():
        if row.id in targets:
            row.phase, row.target = Phase.WAITING, state.release.version
            row.wave = wave_of.get(row.id)
            row.started = row.finished = row.bake_until = None
            row.message = row.error = ""
        elif not row.phase.active:
            row.target, row.wave = None, None
            if row.reachable:
                row.message = ""
            row.phase = row.resting_phase
        state._dirty.add(row.id)
    state._touch_release()


def _preflight_started(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
    if state.release is None or state.release.release_id != ev.release_id:
        return
    for cid in state.release.targets:
        row = state.clusters.get(cid)
        if row is not None:
            row.phase = Phase.CHECKING
            state._dirty.add(cid)
    state._touch_release()


def _preflight_result(_state: FleetState, ev: Event, row: ClusterView | None) -> None:
    # A failed check is the cluster's NOTE until something newer replaces it.
    d = ev.data
    if row is not None and not d.get("ok", False):
        detail = _one_line(str(d.get("detail", "") or ev.message))
        row.message = f"pre-flight {d.get('check', '')}: {detail}".strip()


def _preflight_finished(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
    release = state.release
    if release is None:
        return
    release.preflight_ok = bool(ev.data.get("ok", False))
    for cid in release.targets:
        row = state.clusters.get(cid)
        if row is not None and row.phase is Phase.CHECKING:
            # Nothing was touched when pre-flight fails: the rows go back to rest,
            # keeping the failure in NOTE.
            row.phase = Phase.WAITING if release.preflight_ok else row.resting_phase
            state._dirty.add(cid)
    state._touch_release()


@_for_release
def _wave_started(release: ReleaseView, ev: Event) -> None:
    release.wave = int(ev.data.get("wave", 0))
    release.gate_waiting = False


def _wave_baking(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
    if state.release is not None:
        state.release.bake_wave = int(ev.data.get("wave", 0))
        state.release.bake_until = float(ev.data.get("until") or 0.0) or None
        state._touch_release()
    # Each watched cluster's row counts down too (the grid's NOTE).
    _set_baking(state, ev.data.get("clusters") or (), float(ev.data.get("until") or 0.0) or None)


def _wave_baked(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
    if state.release is not None:
        state.release.bake_wave = state.release.bake_until = None
        state._touch_release()
    _set_baking(state, [c for c, row in state.clusters.items() if row.bake_until is not None],
                None)


def _set_baking(state: FleetState, ids: Iterable[str], until: float | None) -> None:
    for cid in ids:
        row = state.clusters.get(str(cid))
        if row is not None:
            row.bake_until = until
            state._dirty.add(row.id)


@_for_release
def _gate_waiting(release: ReleaseView, ev: Event) -> None:
    release.gate_waiting = True


@_for_release
def _gate_decided(release: ReleaseView, ev: Event) -> None:
    release.gate_waiting = False


@_for_release
def _paused(release: ReleaseView, ev: Event) -> None:
    release.paused = ev.kind is Kind.PAUSED


@_for_row
def _cluster_started(state: FleetState, ev: Event, row: ClusterView) -> None:
    d = ev.data
    row.phase = Phase.ROLLING
    row.started, row.finished = ev.ts, None
    row.target = str(d.get("to_version") or row.target or "") or None
    if d.get("from_version"):
        row.live = str(d["from_version"])
    if d.get("wave") is not None:
        row.wave = int(d["wave"])
    row.updated = row.ready = row.available = 0
    row.message, row.error = "", ""
    row.reachable = True


@_for_row
def _cluster_paced(state: FleetState, ev: Event, row: ClusterView) -> None:
    # Held by pacing: still waiting, and the grid says why.
    row.phase = Phase.WAITING
    row.message = (f"paced: at most {ev.data.get('max_starts', '?')} starts per "
                   f"{format_duration(float(ev.data.get('window') or 0))}")


@_for_row
def _cluster_progress(state: FleetState, ev: Event, row: ClusterView) -> None:
    d = ev.data
    for key in ("desired", "updated", "ready", "available"):
        if d.get(key) is not None:
            setattr(row, key, int(d[key]))
    if ev.message:
        row.message = _one_line(ev.message)


@_for_row
def _cluster_healthy(state: FleetState, ev: Event, row: ClusterView) -> None:
    row.phase = Phase.HEALTHY
    row.live = str(ev.data.get("version") or row.target or row.live or "") or None
    row.finished = ev.ts
    if row.started is None and ev.data.get("duration") is not None:
        row.started = ev.ts - float(ev.data["duration"])
    row.updated = row.ready = row.available = max(row.desired, row.available)
    row.message = _one_line(ev.message) if ev.message else ""
    state._touch_release()


@_for_row
def _cluster_failed(state: FleetState, ev: Event, row: ClusterView) -> None:
    # The engine follows `cluster_unreachable` with `cluster_failed`: the row keeps
    # saying why (unreachable), which is what the operator must act on.
    if row.phase is not Phase.UNREACHABLE:
        row.phase = Phase.FAILED
    row.finished, row.bake_until = ev.ts, None
    row.error = str(ev.data.get("error") or ev.message or "failed")
    row.message = _one_line(row.error)
    state._touch_release()


@_for_row
def _cluster_rolling_back(state: FleetState, ev: Event, row: ClusterView) -> None:
    # After a failure the clock keeps running; a manual rollback starts its own.
    if row.phase is not Phase.FAILED or row.started is None:
        row.started = ev.ts
    row.phase = Phase.ROLLING_BACK
    row.finished = None
    to = ev.data.get("to_version")
    row.message = f"rolling back to {to}" if to else (_one_line(ev.message) or "rolling back")
    state._touch_release()


@_for_row
def _cluster_rolled_back(state: FleetState, ev: Event, row: ClusterView) -> None:
    d = ev.data
    row.finished = ev.ts
    if d.get("ok", True):
        row.phase = Phase.ROLLED_BACK
        if d.get("version"):
            row.live = str(d["version"])
        # The engine waited for the rollback to complete: every replica is back.
        row.updated = row.ready = row.available = row.desired
        row.message = _one_line(ev.message) or f"rolled back to {row.live or '?'}"
    else:
        # A cluster lost mid-rollout cannot be rolled back either: it stays unreachable.
        row.phase = row.resting_phase if not row.reachable else Phase.FAILED
        row.error = str(d.get("error") or ev.message or "rollback failed")
        row.message = _one_line(f"rollback failed: {row.error}")
    state._touch_release()


@_for_row
def _cluster_skipped(state: FleetState, ev: Event, row: ClusterView) -> None:
    row.phase = Phase.SKIPPED
    row.message = _one_line(str(ev.data.get("reason") or ev.message or "skipped"))
    state._touch_release()


@_for_row
def _cluster_unreachable(state: FleetState, ev: Event, row: ClusterView) -> None:
    row.phase = Phase.UNREACHABLE
    row.reachable = False
    row.error = str(ev.data.get("error") or ev.message or "unreachable")
    row.message = _one_line(row.error)
    if row.started is not None:
        row.finished = ev.ts
    state._touch_release()


def _release_finished(state: FleetState, ev: Event, _row: ClusterView | None) -> None:
    release = state.release
    if release is None or release.release_id != ev.release_id:
        return
    release.outcome = str(ev.data.get("outcome", "finished"))
    release.finished = ev.ts
    release.gate_waiting = release.paused = False
    for cid in release.targets:
        row = state.clusters.get(cid)
        # A target the engine never reached (stopped at a gate, aborted) is not left
        # looking as if it were still queued.
        if row is not None and row.phase in (Phase.WAITING, Phase.CHECKING):
            row.phase = row.resting_phase if release.outcome == Outcome.PREFLIGHT_FAILED \
                else Phase.SKIPPED
            if row.phase is Phase.SKIPPED and not row.message:
                row.message = f"not started ({release.outcome})"
            state._dirty.add(cid)
    state._touch_release()


_HANDLERS: dict[Kind, Handler] = {
    Kind.RELEASE_PLANNED: _release_planned,
    Kind.PREFLIGHT_STARTED: _preflight_started,
    Kind.PREFLIGHT_RESULT: _preflight_result,
    Kind.PREFLIGHT_FINISHED: _preflight_finished,
    Kind.WAVE_STARTED: _wave_started,
    Kind.CLUSTER_PACED: _cluster_paced,
    Kind.WAVE_BAKING: _wave_baking,
    Kind.WAVE_BAKED: _wave_baked,
    Kind.GATE_WAITING: _gate_waiting,
    Kind.GATE_DECIDED: _gate_decided,
    Kind.PAUSED: _paused,
    Kind.RESUMED: _paused,
    Kind.CLUSTER_STARTED: _cluster_started,
    Kind.CLUSTER_PROGRESS: _cluster_progress,
    Kind.CLUSTER_HEALTHY: _cluster_healthy,
    Kind.CLUSTER_FAILED: _cluster_failed,
    Kind.CLUSTER_ROLLING_BACK: _cluster_rolling_back,
    Kind.CLUSTER_ROLLED_BACK: _cluster_rolled_back,
    Kind.CLUSTER_SKIPPED: _cluster_skipped,
    Kind.CLUSTER_UNREACHABLE: _cluster_unreachable,
    Kind.RELEASE_FINISHED: _release_finished,
}

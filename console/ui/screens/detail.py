"""`enter` - one cluster in depth: pods, the rollout timeline, revisions, the last error.

The live part (`Engine.detail`) is read in a worker, again every few seconds while the
cluster is busy; the timeline also holds every engine event this session saw for the
cluster, so it is complete even when the cluster stops answering.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, RichLog, Static

from console.events import Event
from console.ui.state import DRIFT_GLYPH, PRODUCTION_GLYPH, FleetState, Phase, format_duration
from console.ui.widgets.event_log import format_line
from console.ui.widgets.lists import ListTable
from console.ui.widgets.palette import Palette
from console.engine.api import ClusterDetail
from console.ui.messages import ClusterRollbackRequested
from console.ui.screens.reading import read_or_error

if TYPE_CHECKING:
    from console.ui.messages import ConsoleServices

BUSY_REFRESH = 2.0
IDLE_REFRESH = 10.0


class DetailScreen(Screen):
    """Pods, timeline, revisions and the last error of one cluster."""

    app: ConsoleServices  # type: ignore[assignment] - what screens may read

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("r", "rollback", "rollback"),
        Binding("ctrl+r", "refresh", "refresh"),
    ]

    def __init__(self, cluster_id: str, state: FleetState) -> None:
        super().__init__(id="detail")
        self.cluster_id = cluster_id
        self.state = state
        self.detail: ClusterDetail | None = None
        self.read_error: str | None = None
        self._since_refresh = 0.0
        self._last_line: object = None
        self._seen_events: set[tuple[str, str, str, str]] = set()

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        yield Label("Pods", classes="section-title")
        yield ListTable(id="pods", cursor_type="row")
        with Horizontal(id="detail-lower"):
            with Vertical(id="detail-left"):
                yield Label("Revisions", classes="section-title")
                yield DataTable(id="revisions", cursor_type="none")
                yield Label("Last error", classes="section-title")
                yield Static("", id="last-error")
            with Vertical(id="detail-right"):
                yield Label("Timeline", classes="section-title")
                yield RichLog(id="timeline", markup=False, wrap=True, max_lines=400)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        pods = self.query_one("#pods", DataTable)
        for label, width in (("POD", 34), ("PHASE", 10), ("READY", 6), ("RESTARTS", 8),
                             ("VERSION", 12), ("WAITING", 30)):
            pods.add_column(label, width=width)
        revisions = self.query_one("#revisions", DataTable)
        for label, width in (("REV", 4), ("VERSION", 12), ("IMAGE", 30)):
            revisions.add_column(label, width=width)
        self._paint_title()
        self._paint_timeline()
        self._paint_error()
        self.app.events_signal.subscribe(self, self._on_events)
        self.set_interval(1.0, self._tick)
        self.load()

    # -- reading ----------------------------------------------------------------------

    def _tick(self) -> None:
        self._paint_title()
        self._since_refresh += 1.0
        busy = self.state.clusters[self.cluster_id].phase.active
        if self._since_refresh >= (BUSY_REFRESH if busy else IDLE_REFRESH):
            self.load()

    @work(thread=True, exit_on_error=False, exclusive=True, group="detail")
    def load(self) -> None:
        """Read pods, revisions and events from the cluster (through the engine)."""
        detail, error = read_or_error(lambda: self.app.engine().detail(self.cluster_id))
        self.app.call_from_thread(self._loaded, detail, error)

    def _loaded(self, detail: ClusterDetail | None, error: str | None) -> None:
        self._since_refresh = 0.0
        self.read_error = error
        if detail is not None:
            self.detail = detail
            self._paint_detail()
        self._paint_error()

    def action_refresh(self) -> None:
        """Read the cluster again now."""
        self.load()

    def action_back(self) -> None:
        """Back to the fleet."""
        self.dismiss()

    def action_rollback(self) -> None:
        """Roll this cluster back (after a confirmation)."""
        self.post_message(ClusterRollbackRequested(self.cluster_id))

    def _on_events(self, events: list[Event]) -> None:
        mine = [e for e in events if e.cluster == self.cluster_id]
        if not mine:
            return
        self._paint_timeline()
        self._paint_title()
        self._paint_error()

    # -- painting -----------------------------------------------------------------------

    def _paint_title(self) -> None:
        row = self.state.clusters[self.cluster_id]
        pal = Palette.of(self.app)
        title = Text(self.cluster_id, "bold")
        if row.info.production:
            title.append(f" {PRODUCTION_GLYPH} production", pal.production)
        title.append("   ")
        title.append(f"groups {','.join(row.info.groups) or '-'}", "dim")
        line = Text.assemble("live ", (row.live or "-", "bold"), " ")
        if row.drift:
            line.append(f" {DRIFT_GLYPH} ledger says {row.recorded}", pal.drift)
        line.append(f"   target {row.target or '-'}   ")
        line.append(f"{row.phase.glyph} {row.phase.word}", pal.phases[row.phase])
        if row.desired:
            line.append(f"   {row.available}/{row.desired} available")
        if row.started is not None:
            line.append(f"   {format_duration(row.elapsed(self.state.now()))}")
        self.query_one("#detail-title", Static).update(Text("\n").join([title, line]))

    def _paint_timeline(self) -> None:
        """Write the timeline lines not written yet (after the last one written)."""
        lines = self.state.timeline(self.cluster_id)
        start = 0
        for i in range(len(lines) - 1, -1, -1):
            if lines[i] is self._last_line:
                start = i + 1
                break
        pal = Palette.of(self.app)
        log = self.query_one("#timeline", RichLog)
        for line in lines[start:]:
            log.write(format_line(line, pal, cluster_width=0))
        if lines:
            self._last_line = lines[-1]

    def _paint_error(self) -> None:
        row = self.state.clusters[self.cluster_id]
        error = row.error or (getattr(self.detail, "last_error", None) or "")
        text = Text(error or "none", Palette.of(self.app).bad if error else "dim")
        if self.read_error:
            text.append(f"\n(could not read the cluster: {self.read_error})", "dim")
        self.query_one("#last-error", Static).update(text)

    def _paint_detail(self) -> None:
        detail = self.detail
        pal = Palette.of(self.app)
        pods = self.query_one("#pods", DataTable)
        pods.clear()
        for pod in detail.pods:
            phase_style = pal.phases[Phase.HEALTHY] if pod.ready else pal.phases[Phase.WAITING]
            pods.add_row(pod.name, Text(pod.phase or "-", phase_style),
                         "yes" if pod.ready else "no", str(pod.restarts),
                         pod.image.rpartition(":")[2] if ":" in pod.image else "-",
                         Text(pod.reason, pal.bad if pod.reason else ""))
        revisions = self.query_one("#revisions", DataTable)
        revisions.clear()
        for rev in sorted(detail.revisions, key=lambda r: r.number, reverse=True):
            revisions.add_row(str(rev.number), rev.version or "-", rev.image or "-")
        log = self.query_one("#timeline", RichLog)
        keys = {(ev.time, ev.object, ev.reason, ev.message) for ev in detail.events}
        for ev in detail.events:
            key = (ev.time, ev.object, ev.reason, ev.message)
            if key in self._seen_events:
                continue
            self._seen_events.add(key)
            style = pal.bad if ev.type == "Warning" else ""
            log.write(Text.assemble((f"{_local_time(ev.time)} ", "dim"), (ev.object, "bold"),
                                    " ", (f"{ev.reason}: ", style), ev.message))
        # Remember only what the cluster still lists: a screen left open for days must
        # not keep every event it ever showed (the cluster expires old ones itself).
        self._seen_events &= keys


def _local_time(iso: str) -> str:
    """A Kubernetes timestamp (`2026-11-25T14:02:09Z`) as local `14:02:09`, like the
    engine events beside it."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso or "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(moment.timestamp()))

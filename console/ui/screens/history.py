"""`h` - the ledger (every release and manual action, filterable) and the version matrix.

Both come from `console.history` (the Git ledger), read in a worker. The matrix puts
each cluster's live version (the fleet grid's last reading) beside what the ledger
recorded and the last known-good version; `≠` marks drift. `r` on a release rolls back
every cluster it reached (after a confirmation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import (DataTable, Footer, Input, Static, TabbedContent, TabPane)

from console.errors import UserError
from console.events import Outcome
from console.ui.messages import ReleaseRollbackRequested
from console.ui.state import DRIFT_GLYPH, PRODUCTION_GLYPH, FleetState, Phase
from console.ui.widgets.lists import ListTable
from console.ui.widgets.palette import Palette

if TYPE_CHECKING:
    from console.config import FleetConfig
    from console.ui.messages import ConsoleServices

# How a recorded outcome (a string in the ledger, equal to its `Outcome`) is shown: every
# outcome has its phase (a release not started touched nothing, like a failed pre-flight).
OUTCOME_PHASE = {Outcome.OK: Phase.HEALTHY, Outcome.HEALTHY: Phase.HEALTHY,
                 Outcome.FAILED: Phase.FAILED, Outcome.ROLLED_BACK: Phase.ROLLED_BACK,
                 Outcome.SKIPPED: Phase.SKIPPED, Outcome.SKIPPED_BY_OPERATOR: Phase.SKIPPED,
                 Outcome.STOPPED: Phase.SKIPPED, Outcome.ABORTED: Phase.FAILED,
                 Outcome.INTERRUPTED: Phase.FAILED, Outcome.PREFLIGHT_FAILED: Phase.SKIPPED,
                 Outcome.NOT_STARTED: Phase.SKIPPED}


def _short_time(iso: str | None) -> str:
    """`2026-11-25T14:02:11Z` → `11-25 14:02`."""
    if not iso or len(iso) < 16:
        return iso or "-"
    return f"{iso[5:10]} {iso[11:16]}"


class HistoryScreen(Screen):
    """Releases, newest first, and the version matrix with drift."""

    app: ConsoleServices  # type: ignore[assignment] - what screens may read

    AUTO_FOCUS = "#ledger"  # keys act on the ledger; `/` goes to the filter

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("l", "show('tab-ledger')", "ledger"),
        Binding("v", "show('tab-matrix')", "versions"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("r", "rollback_release", "roll back release"),
        Binding("ctrl+r", "refresh", "refresh", show=False),
    ]

    def __init__(self, config: FleetConfig, state: FleetState) -> None:
        super().__init__(id="history")
        self.config = config
        self.state = state
        self.releases: list[Any] = []
        self.matrix: list[Any] = []
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with TabbedContent(id="history-tabs"):
            with TabPane("Ledger", id="tab-ledger"):
                yield Input(placeholder="filter: release, version, cluster, operator, outcome",
                            id="history-filter")
                yield ListTable(id="ledger", cursor_type="row")
                yield Static("", id="release-detail")
            with TabPane("Versions", id="tab-matrix"):
                yield ListTable(id="matrix", cursor_type="row")
                yield Static(f"{DRIFT_GLYPH} live differs from the ledger (changed outside "
                             "the console)", id="matrix-legend")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        ledger = self.query_one("#ledger", DataTable)
        for key, label, width in (("start", "UTC", 11), ("id", "RELEASE", 20),
                                  ("kind", "KIND", 8), ("version", "VERSION", 12),
                                  ("strategy", "STRATEGY", 9), ("by", "BY", 10),
                                  ("outcome", "OUTCOME", 13), ("clusters", "CLUSTERS", 18)):
            ledger.add_column(label, key=key, width=width)
        matrix = self.query_one("#matrix", DataTable)
        for key, label, width in (("cluster", "CLUSTER", 20), ("live", "LIVE", 18),
                                  ("recorded", "LEDGER", 12), ("at", "SINCE UTC", 11),
                                  ("by", "BY", 10), ("release", "RELEASE", 20),
                                  ("good", "LAST GOOD", 12)):
            matrix.add_column(label, key=key, width=width)
        self.load()

    @work(thread=True, exit_on_error=False, exclusive=True, group="history")
    def load(self) -> None:
        """Read the ledger and the matrix (Git I/O: off the UI thread)."""
        live = {cid: row.live for cid, row in self.state.clusters.items()}
        try:
            ledger = self.app.ledger()
            releases = list(reversed(ledger.releases()))
            helm = {cid: row.helm_revision for cid, row in self.state.clusters.items()}
            matrix = ledger.matrix(live, helm)
            error = None
        except UserError as exc:
            releases, matrix, error = [], [], str(exc)
        self.app.call_from_thread(self._loaded, releases, matrix, error)

    def _loaded(self, releases: list[Any], matrix: list[Any], error: str | None) -> None:
        self.releases, self.matrix, self.error = releases, matrix, error
        if error:
            self.query_one("#release-detail", Static).update(
                Text(error, Palette.of(self.app).bad))
        self._fill_ledger()
        self._fill_matrix()

    def _fill_ledger(self) -> None:
        pal = Palette.of(self.app)
        query = self.query_one("#history-filter", Input).value.strip().lower()
        table = self.query_one("#ledger", DataTable)
        table.clear()
        for rel in self.releases:
            names = [c.cluster for c in rel.clusters] or list(rel.targets)
            haystack = " ".join([rel.id, rel.version, rel.operator, rel.outcome or "running",
                                 rel.kind, rel.strategy, *names]).lower()
            if query and not all(term in haystack for term in query.split()):
                continue
            outcome = rel.outcome or "running"
            phase = OUTCOME_PHASE.get(outcome, Phase.ROLLING)
            counts: dict[str, int] = {}
            for c in rel.clusters:
                counts[c.outcome] = counts.get(c.outcome, 0) + 1
            summary = " ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
            table.add_row(_short_time(rel.start), rel.id, rel.kind, rel.version or "-",
                          rel.strategy or "-", rel.operator or "-",
                          Text(f"{phase.glyph} {outcome.replace('_', ' ')}", pal.phases[phase]),
                          summary or ", ".join(names), key=rel.id)
        self._show_release()

    def _fill_matrix(self) -> None:
        pal = Palette.of(self.app)
        table = self.query_one("#matrix", DataTable)
        table.clear()
        for row in self.matrix:
            view = self.state.clusters.get(row.cluster)
            name = Text(row.cluster)
            if view is not None and view.info.production:
                name.append(f" {PRODUCTION_GLYPH}", pal.production)
            live = Text(row.live or "-")
            if row.drift:
                live.append(f" {DRIFT_GLYPH}", pal.drift)
            table.add_row(name, live, row.recorded or "-", _short_time(row.recorded_at),
                          row.recorded_by or "-", row.recorded_release or "-",
                          row.last_good or "-", key=row.cluster)

    @on(Input.Changed, "#history-filter")
    def _filter(self) -> None:
        self._fill_ledger()

    @on(DataTable.RowHighlighted, "#ledger")
    def _highlighted(self) -> None:
        self._show_release()

    def _selected(self) -> Any | None:
        table = self.query_one("#ledger", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.releases if r.id == key), None)

    def _show_release(self) -> None:
        rel = self._selected()
        detail = self.query_one("#release-detail", Static)
        if rel is None:
            detail.update("" if not self.error else Text(self.error))
            return
        pal = Palette.of(self.app)
        text = Text.assemble((rel.id, "bold"), f" · {rel.kind} {rel.version} · {rel.strategy} "
                             f"· by {rel.operator} · {rel.start} → {rel.end or 'running'}\n")
        for c in rel.clusters:
            phase = OUTCOME_PHASE.get(c.outcome, Phase.FAILED)
            text.append(f"  {c.cluster:<24}", "bold")
            text.append(f"{phase.glyph} {c.outcome.replace('_', ' '):<13}", pal.phases[phase])
            text.append(f" {c.from_version or '-'} → {c.to_version or '-'}")
            if c.rolled_back_to:
                text.append(f" (rolled back to {c.rolled_back_to})")
            if c.error:
                text.append(f"  {' '.join(c.error.split())[:120]}", pal.bad)
            text.append("\n")
        detail.update(text)

    # -- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        """Back to the fleet."""
        self.dismiss()

    def action_show(self, tab: str) -> None:
        """Switch to the ledger or the version matrix."""
        self.query_one("#history-tabs", TabbedContent).active = tab
        self.query_one("#ledger" if tab == "tab-ledger" else "#matrix", DataTable).focus()

    def action_filter(self) -> None:
        """Type into the ledger filter."""
        self.query_one("#history-tabs", TabbedContent).active = "tab-ledger"
        self.query_one("#history-filter", Input).focus()

    def action_refresh(self) -> None:
        """Read the ledger again."""
        self.load()

    def action_rollback_release(self) -> None:
        """Roll back every cluster the selected release reached (after a confirmation)."""
        rel = self._selected()
        if rel is None:
            return
        self.post_message(ReleaseRollbackRequested(rel.id, rel.version, rel.targets))

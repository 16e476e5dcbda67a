"""The home screen: the release header, the fleet grid, the event log and the keys."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Label

from console.ui.messages import (ClusterRollbackRequested, ClusterSteerRequested,
                                 DetailRequested,
                                  NewReleaseRequested, PauseToggled, StatusRefreshRequested)
from console.ui.state import FleetState
from console.ui.widgets.event_log import EventLog
from console.ui.widgets.fleet_grid import FleetGrid
from console.ui.widgets.release_header import ReleaseHeader

HEADER_EVERY = 4  # repaints (of 10 a second) per header and log repaint at most


class FleetScreen(Screen):
    """Every cluster at a glance; the place every action starts from."""

    BINDINGS = [
        Binding("n", "new_release", "new release"),
        Binding("r", "rollback", "rollback"),
        Binding("p", "pause", "pause/resume"),
        Binding("o", "steer('skip')", "skip the cluster (not started yet) in the running release",
                show=False),
        Binding("t", "steer('retry')", "retry the failed cluster once its wave ended",
                show=False),
        Binding("f", "follow", "follow a release another process runs", show=False),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("escape", "clear", "clear filter/marks", show=False),
        Binding("ctrl+r", "refresh", "refresh live versions", show=False),
    ]

    def __init__(self, state: FleetState, app_name: str) -> None:
        super().__init__(id="fleet")
        self.state = state
        self.app_name = app_name
        self._header_stale = False
        self._log_pending: list = []   # log lines waiting for the throttled repaint
        self._flushes = 0

    def compose(self) -> ComposeResult:
        yield ReleaseHeader(self.state, self.app_name, id="release-header")
        with Horizontal(id="filter-bar"):
            yield Label("filter", id="filter-label")
            yield Input(placeholder="id, group or glob (prod-*, !prod-us) · esc clears",
                        id="filter")
            yield Label("", id="filter-count")
        yield FleetGrid(self.state, id="grid")
        yield EventLog(cluster_width=self._id_width(), id="event-log")
        yield Footer(compact=True)

    def _id_width(self) -> int:
        return min(max((len(c) for c in self.state.clusters), default=8), 24)

    def on_mount(self) -> None:
        # Kept, not queried: the repaint timer calls in 10 times a second, also while
        # the app is closing and the DOM is going away.
        self.grid = self.query_one(FleetGrid)
        self.header = self.query_one(ReleaseHeader)
        self.log_view = self.query_one(EventLog)
        self.grid.focus()

    def fleet_loaded(self, app_name: str) -> None:
        """The fleet file was read after the first frame: its rows, its name."""
        self.app_name = self.header.app_name = app_name
        self.log_view.cluster_width = self._id_width()
        self.grid.fleet_loaded()
        self.header.update_release()

    # -- called by the app's refresh timer --------------------------------------------

    def flush(self, dirty: set[str], release_dirty: bool, lines: list) -> None:
        """Repaint what the view model says changed: the rows at once; the header and
        the event log at most 2.5 times a second (the header's counts change with every
        cluster and it is a costly repaint; each batch of log lines that makes the log
        longer costs a layout of the whole screen - a thousand clusters starting wrote
        to it, and laid the screen out, ten times a second)."""
        if dirty:
            self.grid.repaint(dirty)
        self.grid.tick()   # each row's clock on its own second (see FleetGrid)
        self._header_stale = self._header_stale or release_dirty
        self._log_pending.extend(lines)
        del self._log_pending[:-FleetState.LOG_LINES]   # the log keeps no more
        self._flushes += 1
        if self._flushes % HEADER_EVERY:
            return
        if self._header_stale:
            self._header_stale = False
            self.header.update_release()
        if self._log_pending:
            pending, self._log_pending = self._log_pending, []
            self.log_view.add(pending)

    @property
    def repaint_pending(self) -> bool:
        """Whether the release header or log lines wait for their next (throttled)
        repaint."""
        return self._header_stale or bool(self._log_pending)

    def tick(self) -> None:
        """Once a second: the release header's clocks (the grid's move in `flush`)."""
        self.header.update_release()

    # -- filter -------------------------------------------------------------------

    def action_filter(self) -> None:
        """Show the filter box and type into it."""
        self.query_one("#filter-bar").add_class("shown")
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.grid.set_filter(event.value.strip())
        shown, total = len(self.grid.shown), len(self.state.clusters)
        self.query_one("#filter-count", Label).update(f"{shown} of {total}")

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.grid.focus()
        if not self.grid.query_text:
            self.query_one("#filter-bar").remove_class("shown")

    def action_clear(self) -> None:
        """`esc`: clear the filter first, then the marks."""
        filter_input = self.query_one("#filter", Input)
        if filter_input.value or self.query_one("#filter-bar").has_class("shown"):
            filter_input.value = ""
            self.grid.set_filter("")
            self.query_one("#filter-bar").remove_class("shown")
            self.grid.focus()
        elif self.state.marked():
            self.state.clear_marks()
            self.grid.repaint(self.state.ids)

    # -- actions ------------------------------------------------------------------

    def action_new_release(self) -> None:
        """Open the release form (targets: the marked clusters)."""
        self.post_message(NewReleaseRequested())

    def action_rollback(self) -> None:
        """Roll back the cluster under the cursor (after a confirmation)."""
        cid = self.grid.cursor_cluster
        if cid is not None:
            self.post_message(ClusterRollbackRequested(cid))

    def action_pause(self) -> None:
        """Pause or resume the running release."""
        self.post_message(PauseToggled())

    def action_follow(self) -> None:
        """Follow the release another process runs (read-only but for its channel)."""
        from console.ui.screens.follow import FollowScreen
        self.app.push_screen(FollowScreen())

    def action_steer(self, action: str) -> None:
        """Skip the cluster under the cursor (not started yet) or retry it (failed)."""
        cid = self.grid.cursor_cluster
        if cid is not None:
            self.post_message(ClusterSteerRequested(action, cid))

    def action_refresh(self) -> None:
        """Read every cluster's live version again."""
        self.post_message(StatusRefreshRequested())

    @on(FleetGrid.Selected)
    def _open_detail(self, event: FleetGrid.Selected) -> None:
        self.post_message(DetailRequested(event.cluster))

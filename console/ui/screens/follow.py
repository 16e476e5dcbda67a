"""`f` - follow a release another process runs (a headless `deploy` in CI, another
console): its clusters' phase and progress, pause, the gate waiting and who approved so
far, read again from the engine process (`console.engine.follow`: ledger, Leases,
clusters) as soon as its watches see a change (`ChangeWatch`: the release's Leases, the
app's Deployments, the ledger file), at the latest every `REFRESH` s. Read-only, except
through the release's control channel, as the identity the cluster confirms - asked of
the app (`FollowSteerRequested`, answered by `console.ui.steering`) like every action: `a`
approves its gate and `x` aborts it and rolls back what it reached (each confirmed
first), `s` rejects the gate (the release stops there), `p` pauses or resumes it, `o`
skips the selected cluster (not started yet) and `t` retries it (failed).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.worker import get_current_worker
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.widgets.data_table import RowDoesNotExist

from console.engine.api import FollowPhase
from console.errors import UserError
from console.events import Outcome
from console.ui.messages import FollowSteerRequested
from console.ui.state import Phase
from console.ui.widgets.lists import ListTable
from console.ui.widgets.palette import Palette
from console.ui.screens.reading import read_or_error

if TYPE_CHECKING:
    from console.ui.messages import ConsoleServices

REFRESH = 10.0  # s between readings of the followed release when nothing changed
LOOKING = 2.0   # s between looks for a running release while none is found

# How a followed cluster's phase (the ledger's outcome, or what the cluster shows) is drawn.
PHASES = {FollowPhase.WAITING: Phase.WAITING, FollowPhase.ROLLING: Phase.ROLLING,
          FollowPhase.READY: Phase.ROLLING, FollowPhase.UNREACHABLE: Phase.UNREACHABLE,
          Outcome.HEALTHY: Phase.HEALTHY, Outcome.FAILED: Phase.FAILED,
          Outcome.ROLLED_BACK: Phase.ROLLED_BACK, Outcome.SKIPPED: Phase.SKIPPED,
          Outcome.SKIPPED_BY_OPERATOR: Phase.SKIPPED, Outcome.INTERRUPTED: Phase.FAILED}


class FollowScreen(Screen):
    """Another process's release, live; steer it only through its control channel."""

    app: ConsoleServices  # type: ignore[assignment] - what screens may read

    AUTO_FOCUS = "#follow-clusters"

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("a", "approve", "approve its gate (control channel)"),
        Binding("s", "steer('reject')", "reject its gate: stop there"),
        Binding("x", "abort", "abort it and roll back"),
        Binding("p", "pause", "pause/resume it (control channel)"),
        Binding("o", "steer_cluster('skip')", "skip the selected cluster (not started)"),
        Binding("t", "steer_cluster('retry')", "retry the selected cluster (failed)"),
        Binding("ctrl+r", "refresh", "refresh", show=False),
    ]

    def __init__(self, release_id: str | None = None) -> None:
        super().__init__(id="follow")
        self.release_id = release_id
        self.view: Any = None
        self.error: str | None = None
        # Readings are numbered as they are asked for; `shown_reading` is the newest one
        # shown. Readings overlap (each change asks for one; they run as threads in the
        # engine process too) and may end out of order: an older one - a pause not yet in
        # it - shown last put the header back to "running" until the next change (a lease
        # renewal, up to 30 s), seen under load.
        self._readings = itertools.count(1)
        self.shown_reading = 0

    def compose(self) -> ComposeResult:
        yield Static("following: looking for a running release...", id="follow-header")
        yield ListTable(id="follow-clusters", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#follow-clusters", DataTable)
        for key, label, width in (("cluster", "CLUSTER", 22), ("phase", "PHASE", 22),
                                  ("progress", "READY", 8), ("version", "VERSION", 30)):
            table.add_column(label, key=key, width=width)
        self.load()
        self.watch_changes()
        # A bake's countdown ticks every second, between readings too (a reading comes
        # with a change, at the latest every REFRESH s).
        self.set_interval(1.0, self._show_header)

    def on_unmount(self) -> None:
        # The engine process stops the watches; a remote call is I/O, and so is waiting
        # for the engine to have started (the console starts it once the fleet file is
        # read): both off the UI thread.
        app = self.app
        self.app.run_worker(lambda: app.engine().follow_done(), thread=True,
                            exit_on_error=False, group="follow-done")

    @work(thread=True, exit_on_error=False, exclusive=True, group="follow-watch")
    def watch_changes(self) -> None:
        """Wait in the engine process for a change of the followed release, then read it."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            view = self.view
            clusters = [line.cluster for line in view.clusters] if view is not None else []
            try:
                self.app.engine().follow_wait(clusters, REFRESH if clusters else LOOKING)
            except UserError:
                if worker.is_cancelled:
                    return
                time.sleep(LOOKING)   # the engine process is going away or restarting
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self.load)

    def load(self) -> None:
        """Read the followed release again (numbered now, read off the UI thread)."""
        self._read(next(self._readings))

    @work(thread=True, exit_on_error=False, exclusive=True, group="follow")
    def _read(self, reading: int) -> None:
        """Reading number `reading` (ledger, Leases, clusters), shown unless a newer one
        is on screen by then."""
        view, error = read_or_error(lambda: self.app.engine().follow(self.release_id))
        self.app.call_from_thread(self._loaded, view, error, reading)

    def _loaded(self, view: Any, error: str | None, reading: int) -> None:
        if reading < self.shown_reading:
            return      # a newer reading is on screen already
        self.shown_reading = reading
        self.error = error
        if view is not None:
            self.view = view
            self.release_id = view.release_id
        header = self.query_one("#follow-header", Static)
        if view is None:
            header.update(Text(f"following: {error}", Palette.of(self.app).bad))
            return
        self._show_header()
        pal = Palette.of(self.app)
        table = self.query_one("#follow-clusters", DataTable)
        # Every reading redraws the rows, and clearing puts the cursor on the first: the
        # operator's selection would jump between choosing a cluster and pressing `o`
        # (a skip of the wrong cluster; the flaky skip story). Keep it on its cluster.
        selected = self.selected()
        table.clear()
        for line in view.clusters:
            phase = PHASES.get(line.phase, Phase.IDLE)
            table.add_row(line.cluster,
                          Text(f"{phase.glyph} {line.phase.replace('_', ' ')}",
                               pal.phases[phase]),
                          f"{line.ready}/{line.desired}" if line.desired else "-",
                          line.version or "-", key=line.cluster)
        if selected is not None:
            try:
                table.move_cursor(row=table.get_row_index(selected), animate=False)
            except RowDoesNotExist:
                pass    # its cluster left the release's view: the first row then

    def selected(self) -> str | None:
        """The cluster of the row under the cursor (None: no rows)."""
        table = self.query_one("#follow-clusters", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _show_header(self) -> None:
        """The followed release, its bake's countdown and its gate (last read)."""
        view = self.view
        if view is None or self.error is not None:
            return
        lines = [f"following {view.release_id}: {view.version or '?'} "
                 f"({view.strategy or '?'}) by {view.operator or '?'} - "
                 + (f"ended {view.outcome}" if view.outcome else
                    "paused" if view.steering.get("paused") else "running")]
        bake = view.bake_text(time.time())
        if bake and not view.outcome:
            lines.append(bake)
        gate = view.gate_text()
        if gate and not view.outcome:
            lines.append(gate.split(": release-console")[0] + " - `a` approves")
        self.query_one("#follow-header", Static).update("\n".join(lines))

    def action_back(self) -> None:
        """Back to the fleet."""
        self.app.pop_screen()

    def action_refresh(self) -> None:
        """Read the release again now."""
        self.load()

    def action_pause(self) -> None:
        """Pause the followed release, or resume it when paused."""
        paused = bool(self.view is not None and self.view.steering.get("paused"))
        self.action_steer("resume" if paused else "pause")

    def action_approve(self) -> None:
        """Approve the followed release's gate, once confirmed (as a rollback is)."""
        if not self._following():
            return
        from console.ui.screens.confirm import ConfirmScreen
        gate = self.view.gate_text() or "no gate is waiting now"
        self.app.push_screen(ConfirmScreen(
            f"Approve the gate of {self.view.release_id}?",
            f"{gate.split(': release-console')[0]}. The next wave starts on its clusters.",
            yes="approve", no="cancel"),
            lambda yes: self._steer(self.view.release_id, "approve") if yes else None)

    def action_abort(self) -> None:
        """Abort the followed release and roll back what it reached, once confirmed."""
        if not self._following():
            return
        from console.ui.screens.confirm import ConfirmScreen
        release_id = self.view.release_id
        reached = ", ".join(line.cluster for line in self.view.clusters
                            if line.phase not in (FollowPhase.WAITING, Outcome.SKIPPED,
                                                  Outcome.SKIPPED_BY_OPERATOR)) or "no cluster"
        self.app.push_screen(ConfirmScreen(
            f"Abort {release_id} and roll back?",
            f"No further cluster starts; every cluster it reached goes back to the version "
            f"it ran before ({reached}).", yes="abort and roll back", no="keep it running"),
            lambda yes: self._steer(release_id, "abort", None, True) if yes else None)

    def action_steer_cluster(self, action: str) -> None:
        """Skip (not started) or retry (failed) the selected cluster."""
        if not self._following():
            return
        cluster = self.selected()
        if cluster is None:
            self.notify("no cluster selected", severity="warning")
            return
        self._steer(self.view.release_id, action, cluster)

    def action_steer(self, action: str) -> None:
        """Ask the followed release through its control channel."""
        if self._following():
            self._steer(self.view.release_id, action)

    def _following(self) -> bool:
        """Whether a running release is followed (else say so)."""
        if self.view is None or self.view.outcome:
            self.notify("no running release is followed", severity="warning")
            return False
        return True

    def _steer(self, release_id: str, action: str, cluster: str | None = None,
               rollback: bool = False) -> None:
        """Ask the app, which asks the release's control channel (one path for every
        screen: `console.ui.steering`), and reads the release again once answered."""
        self.post_message(FollowSteerRequested(release_id, action, cluster, rollback))

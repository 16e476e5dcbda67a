"""The gate between canary waves: the finished wave's results and the decision."""

from __future__ import annotations


from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from console.engine.api import GateAnswer, GateRequest
from console.ui.state import PRODUCTION_GLYPH, FleetState, Phase, format_duration
from console.ui.widgets.palette import Palette


class GateScreen(ModalScreen[GateAnswer]):
    """Approve the next wave, stop here (reject), or abort and roll back (confirmed)."""

    BINDINGS = [
        Binding("a", "decide('approve')", "approve"),
        Binding("s", "decide('reject')", "stop here (reject)"),
        Binding("x", "abort", "abort + roll back"),
    ]

    def __init__(self, request: GateRequest, state: FleetState, operator: str) -> None:
        super().__init__(classes="dialog-screen")
        self.request = request
        self.state = state
        self.operator = operator

    def compose(self) -> ComposeResult:
        req = self.request
        release = self.state.release
        waves = len(release.waves) if release and release.waves else None
        durations = [r.duration for r in req.results if r.duration]
        with Vertical(classes="dialog", id="gate") as box:
            total = f" of {waves}" if waves else ""
            box.border_title = (f"Wave {req.finished_wave + 1}{total} finished · "
                                f"{format_duration(max(durations) if durations else None)}"
                                + (f" · baked {format_duration(req.baked)}" if req.baked
                                   else ""))
            yield DataTable(id="gate-results", cursor_type="none", show_header=True)
            nxt = ", ".join(self._with_marker(c) for c in req.next_clusters) or "-"
            yield Static(f"Next: wave {req.next_wave + 1} → {nxt}", id="gate-next",
                         classes="dialog-body")
            yield Label("[b]a[/b] approve    [b]s[/b] stop here (reject)    "
                        "[b]x[/b] abort + roll back", classes="dialog-keys")

    def _with_marker(self, cluster_id: str) -> str:
        row = self.state.clusters.get(cluster_id)
        if row is not None and row.info.production:
            return f"{cluster_id} {PRODUCTION_GLYPH}"
        return cluster_id

    def on_mount(self) -> None:
        pal = Palette.of(self.app)
        table = self.query_one("#gate-results", DataTable)
        table.add_column("CLUSTER", width=24)
        table.add_column("RESULT", width=14)
        table.add_column("TIME", width=6)
        table.add_column("READY", width=7)
        table.add_column("NOTE", width=24)
        for result in self.request.results:
            phase = Phase(result.outcome) if result.outcome in Phase._value2member_map_ \
                else Phase.FAILED
            row = self.state.clusters.get(result.cluster)
            ready = f"{row.available}/{row.desired}" if row and row.desired else ""
            table.add_row(self._with_marker(result.cluster),
                          Text(f"{phase.glyph} {phase.word}", pal.phases[phase]),
                          format_duration(result.duration), ready,
                          Text(" ".join((result.error or "").split()), pal.bad))

    def action_abort(self) -> None:
        """Abort rolls back every cluster the release reached: ask first."""
        from console.ui.screens.confirm import ConfirmScreen

        reached = ", ".join(r.cluster for r in self.request.results) or "no cluster"
        self.app.push_screen(ConfirmScreen(
            "Abort the release and roll back?",
            f"Every cluster this release reached goes back to the version it ran before "
            f"({reached}); no later wave starts.",
            yes="abort and roll back", no="keep deciding"),
            lambda yes: self.action_decide("abort") if yes else None)

    def action_decide(self, decision: str) -> None:
        """Answer the engine."""
        from console.engine import GateAnswer, GateDecision

        self.dismiss(GateAnswer(GateDecision(decision), rollback=decision == "abort",
                                by=self.operator))

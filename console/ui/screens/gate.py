"""The gate between canary waves: the finished wave's results and the decision.

When the wave before a gate bakes, the console shows its gate at once, counting the bake
down live (`GateScreen.ahead`): the operator sees what is coming and when. Approve waits
for the bake - the engine asks only once it is over (`open`), and `a` pressed before
that is refused with the time left. Stop (`s`) and abort (`x`, confirmed) act at once:
the gate closes with that answer and the app acts on it (an abort ends the bake and
rolls back; a stop answers the engine's question the moment it comes). `esc` hides the
gate until the bake is over.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from console.engine.api import GateAnswer, GateRequest, Outcome
from console.ui.state import PRODUCTION_GLYPH, FleetState, Phase, format_duration
from console.ui.widgets.palette import Palette

# How a finished wave's cluster result is drawn (an interrupted one as failed).
RESULT_PHASES = {Outcome.HEALTHY: Phase.HEALTHY, Outcome.FAILED: Phase.FAILED,
                 Outcome.ROLLED_BACK: Phase.ROLLED_BACK, Outcome.SKIPPED: Phase.SKIPPED}


class GateScreen(ModalScreen[GateAnswer]):
    """Approve the next wave, stop here (reject), or abort and roll back (confirmed)."""

    BINDINGS = [
        Binding("a", "decide('approve')", "approve"),
        Binding("s", "decide('reject')", "stop here (reject)"),
        Binding("x", "abort", "abort + roll back"),
        Binding("escape", "hide", "hide until the bake is over", show=False),
    ]

    def __init__(self, request: GateRequest | None, state: FleetState, operator: str,
                 baking: int | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.request = request
        self.state = state
        self.operator = operator
        # The wave whose bake this gate waits for (None: the engine asked already).
        self.baking = baking if request is None else None
        self._answer: Callable[[GateAnswer], None] | None = None

    @classmethod
    def ahead(cls, wave: int, state: FleetState, operator: str) -> GateScreen:
        """The gate after `wave`, shown while `wave` bakes (nothing to decide yet)."""
        return cls(None, state, operator, baking=wave)

    @property
    def finished_wave(self) -> int:
        """The wave the gate comes after."""
        return self.request.finished_wave if self.request is not None else self.baking or 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="gate") as box:
            box.border_title = self._title()
            if self.request is None:
                yield Static(self._bake_text(), id="gate-bake", classes="dialog-body")
            yield DataTable(id="gate-results", cursor_type="none", show_header=True)
            yield Static(self._next_text(), id="gate-next", classes="dialog-body")
            yield Label("[b]a[/b] approve    [b]s[/b] stop here (reject)    "
                        "[b]x[/b] abort + roll back", classes="dialog-keys")

    def _title(self) -> str:
        release = self.state.release
        waves = len(release.waves) if release and release.waves else None
        total = f" of {waves}" if waves else ""
        req = self.request
        if req is None:
            left = release.bake_left(self.state.now()) if release else None
            return (f"Wave {self.finished_wave + 1}{total} healthy · "
                    + (f"baking {format_duration(left)} left" if left is not None
                       else "baked"))
        durations = [r.duration for r in req.results if r.duration]
        return (f"Wave {req.finished_wave + 1}{total} finished · "
                f"{format_duration(max(durations) if durations else None)}"
                + (f" · baked {format_duration(req.baked)}" if req.baked else ""))

    def _bake_text(self) -> str:
        if self.request is not None:
            return f"Baked {format_duration(self.request.baked)}: the gate is open."
        release = self.state.release
        left = release.bake_left(self.state.now()) if release else None
        if left is None:
            return "The bake is over: the gate opens in a moment."
        return (f"Baking wave {self.finished_wave + 1}: {format_duration(left)} left. "
                "Approve waits for the bake; stop and abort act now. A cluster that "
                "degrades meanwhile fails and is rolled back. (esc hides this until then)")

    def _next_text(self) -> str:
        if self.request is not None:
            nxt, number = self.request.next_clusters, self.request.next_wave + 1
        else:
            release = self.state.release
            waves = release.waves if release else ()
            number = self.finished_wave + 2
            nxt = waves[number - 1] if number - 1 < len(waves) else ()
        return f"Next: wave {number} → {', '.join(self._with_marker(c) for c in nxt) or '-'}"

    def _with_marker(self, cluster_id: str) -> str:
        row = self.state.clusters.get(cluster_id)
        if row is not None and row.info.production:
            return f"{cluster_id} {PRODUCTION_GLYPH}"
        return cluster_id

    def on_mount(self) -> None:
        table = self.query_one("#gate-results", DataTable)
        table.add_column("CLUSTER", width=24)
        table.add_column("RESULT", width=14)
        table.add_column("TIME", width=6)
        table.add_column("READY", width=7)
        table.add_column("NOTE", width=24)
        self._fill()
        self._waiting_seen = False
        self.set_interval(0.5, self._tick)

    def open(self, request: GateRequest, answer: Callable[[GateAnswer], None]) -> None:
        """The engine asks now (the bake is over): the decision keys work from here."""
        self.request, self.baking, self._answer = request, None, answer
        self.query_one("#gate", Vertical).border_title = self._title()
        self.query_one("#gate-bake", Static).update(self._bake_text())
        self.query_one("#gate-next", Static).update(self._next_text())
        self._fill()

    def _tick(self) -> None:
        """Twice a second while the gate waits for the bake: the countdown; gone when
        the release ended without asking (a failure during the bake ended it)."""
        if self.request is not None:
            self._decided_elsewhere()
            return
        release = self.state.release
        if release is None or release.outcome is not None:
            if self.app.screen is self:   # dismiss pops the top screen, whichever it is
                self.dismiss()
            return
        self.query_one("#gate", Vertical).border_title = self._title()
        self.query_one("#gate-bake", Static).update(self._bake_text())
        self._fill()

    def _decided_elsewhere(self) -> None:
        """The gate was decided through the control channel (`control ID approve`,
        another console): close the question - the engine took that answer."""
        release = self.state.release
        if release is None:
            return
        if release.gate_waiting:
            self._waiting_seen = True
        elif (self._waiting_seen or release.outcome is not None) and self.app.screen is self:
            self.notify("the gate was decided through the control channel")
            self.dismiss(None)

    def _fill(self) -> None:
        """The finished wave's results (the engine's; while baking, the grid's rows)."""
        pal = Palette.of(self.app)
        table = self.query_one("#gate-results", DataTable)
        table.clear()
        now = self.state.now()
        if self.request is not None:
            lines = [(r.cluster, RESULT_PHASES.get(r.outcome, Phase.FAILED), r.duration,
                      r.error or "")
                     for r in self.request.results]
        else:
            release = self.state.release
            waves = release.waves if release else ()
            ids = waves[self.finished_wave] if self.finished_wave < len(waves) else ()
            rows = [self.state.clusters[c] for c in ids if c in self.state.clusters]
            lines = [(r.id, r.phase, r.elapsed(now), r.note(now)) for r in rows]
        for cluster, phase, duration, note in lines:
            row = self.state.clusters.get(cluster)
            ready = f"{row.available}/{row.desired}" if row and row.desired else ""
            table.add_row(self._with_marker(cluster),
                          Text(f"{phase.glyph} {phase.word}", pal.phases[phase]),
                          format_duration(duration), ready,
                          Text(" ".join(note.split()),
                               "" if phase is Phase.HEALTHY else pal.bad))

    def _refused(self) -> bool:
        """Whether approving must wait (the bake runs, the engine has not asked yet):
        say so, decide nothing."""
        if self.request is not None:
            return False
        release = self.state.release
        left = release.bake_left(self.state.now()) if release else None
        self.notify(f"the gate opens when the bake is over ({format_duration(left)} left)"
                    if left is not None else "the gate opens in a moment", severity="warning")
        return True

    def action_hide(self) -> None:
        """`esc` while baking: back to the grid; the gate comes back when the bake is over."""
        if self.request is None:
            self.dismiss()

    def action_abort(self) -> None:
        """Abort rolls back every cluster the release reached: ask first."""
        from console.ui.screens.confirm import ConfirmScreen

        if self.request is not None:
            reached = ", ".join(r.cluster for r in self.request.results) or "no cluster"
        else:   # while baking: the release reached every wave up to this one
            release = self.state.release
            waves = release.waves[:self.finished_wave + 1] if release else ()
            reached = ", ".join(c for wave in waves for c in wave) or "no cluster"
        self.app.push_screen(ConfirmScreen(
            "Abort the release and roll back?",
            f"Every cluster this release reached goes back to the version it ran before "
            f"({reached}); no later wave starts.",
            yes="abort and roll back", no="keep deciding"),
            lambda yes: self.action_decide("abort") if yes else None)

    def action_decide(self, decision: str) -> None:
        """Answer the engine; while the wave bakes only approve waits for it (stop and
        abort close the gate with their answer, which the app acts on at once)."""
        from console.engine import GateAnswer, GateDecision

        if decision == "approve" and self._refused():
            return
        answer = GateAnswer(GateDecision(decision), rollback=decision == "abort",
                            by=self.operator)
        if self._answer is not None:   # a gate shown ahead: its question came later
            self._answer(answer)
        self.dismiss(answer)


"""`ReleaseConsoleApp`: the console's application object.

It owns the view model (`FleetState`), the engine and the bridges between them. The
engine (with the Git ledger it writes) runs in a child process (`console.engine.remote`), so a
hundred busy rollouts never take the interpreter from the UI; every call to it runs in
a thread worker. Its start, readiness and end are `console.ui.engine_link`'s. Engine events arrive in batches through `EventBridge` (one message per
burst), are applied to the view model at once, and reach the screen on a 10 Hz repaint
timer that redraws only the rows that changed. Gate questions arrive as `GateQuestion`
messages and are answered from a modal screen (`console.ui.gates`).

Given the fleet file's path (as `release-console` does), the first frame comes before the
file is read: the fleet screen shows "loading" in its header and grid, a daemon thread
reads and validates the file (`console.ui.loading`), and the grid fills in. The fleet
file's modules, the engine's and the other screens are
not imported on the first frame's way (tests/ui/test_first_frame.py checks which).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal

from console.errors import UserError
from console.events import Event, Kind, Outcome
from console.ui.commands import ConsoleCommands
from console.ui.bridge import EventBridge, EventsReady, GateWaiter
from console.ui.engine_link import EngineLink
from console.ui.gates import GateActions
from console.ui.loading import FleetLoading, cluster_infos
from console.ui.rollbacks import RollbackActions
from console.ui.steering import SteerActions
from console.ui.messages import (ClusterRollbackRequested, DetailRequested,
                                 FollowSteerRequested, NewReleaseRequested, Notice,
                                 PauseToggled, ClusterSteerRequested,
                                 ReleaseRollbackRequested,
                                 StartReleaseRequested, StatusRefreshRequested)
from console.ui.screens.fleet import FleetScreen
from console.ui.state import ClusterInfo, FleetState
from console.ui.themes import DEFAULT_THEME, load_themes, theme_dirs, variable_defaults

if TYPE_CHECKING:
    from console.config import FleetConfig
    from console.engine import GateAnswer, ReleaseRequest
    from console.engine.remote import RemoteControl

REPAINT_INTERVAL = 0.1   # seconds between repaints of changed rows (10 Hz)
STATUS_INTERVAL = 30.0   # seconds between live-version readings when idle
GC_OFF_AT_MOST = 10.0    # seconds the garbage collector may stay off while starting


class ReleaseConsoleApp(App[int], FleetLoading, EngineLink, RollbackActions, GateActions,
                        SteerActions):
    """The release console for one fleet file."""

    CSS_PATH = "app.tcss"
    TITLE = "release-console"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("h", "history", "history"),
        Binding("colon", "jump", "jump", key_display=":"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit_console", "quit"),
    ]

    def __init__(self, config: FleetConfig | str | os.PathLike[str], *,
                 theme: str | None = None,
                 clock: Callable[[], float] = time.time, operator: str | None = None,
                 status_interval: float = STATUS_INTERVAL,
                 engine_options: Mapping[str, Any] | None = None) -> None:
        # A path: read after the first frame (`_load_fleet`); until then `config` is None.
        self.config: FleetConfig | None = None
        if isinstance(config, (str, os.PathLike)):
            self.config_path = Path(config)
        else:
            self.config, self.config_path = config, Path(config.path)
        # Why the fleet file could not be read (the app then exits with 2; `ui` says it).
        self.fleet_error: str | None = None
        # Set once the fleet is in the view model (at once when given a FleetConfig).
        self.fleet_loaded = asyncio.Event()
        self._theme_load = load_themes(theme_dirs(self.config_path.parent))
        super().__init__()
        for loaded in self._theme_load.themes:
            self.register_theme(loaded)
        self._requested_theme = theme or os.environ.get("RELEASE_CONSOLE_THEME") or DEFAULT_THEME
        if self._requested_theme in self.available_themes:
            self.theme = self._requested_theme
        self.state = FleetState((), clock=clock, loading=str(self.config_path))
        if self.config is not None:
            self.state.set_clusters(cluster_infos(self.config))
        # None: the engine's session finds it (GitPython, git's config - in the engine
        # process, not before the first frame) and says with "ready".
        self._operator = operator
        self.status_interval = status_interval
        self.bridge = EventBridge(self.post_message)
        self.gates = GateWaiter(self.post_message, self._gate_on_close)
        self.events_signal: Signal[list[Event]] = Signal(self, "engine-events")
        self.engine_options = dict(engine_options or {})
        self._init_engine_link()
        self.control: RemoteControl | None = None
        self.release_running = False
        self._ticks = 0
        self._gate_deferred: int | None = None            # see console.ui.gates
        self._stopped_ahead: dict[int, GateAnswer] = {}
        self._gc_was_enabled = False   # see on_load

    # -- start --------------------------------------------------------------------

    @property
    def operator(self) -> str:
        """Who acts from this console (the ledger's and the gates' name for them): the
        engine's session finds it (`console.session`), unless given."""
        if self._operator is None and self._engine is not None and self._engine.operator:
            self._operator = self._engine.operator
        return self._operator or "operator"

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """The console's status colours, for themes that leave them out."""
        return variable_defaults()

    def get_default_screen(self) -> FleetScreen:
        return FleetScreen(self.state, self.config.app.name if self.config else "")

    @property
    def fleet(self) -> FleetScreen:
        """The home screen (always at the bottom of the stack)."""
        screen = self.screen_stack[0]
        assert isinstance(screen, FleetScreen)
        return screen

    def on_load(self) -> None:
        # No garbage collection while the console starts: the start makes tens of
        # thousands of objects (modules' leftovers, screens, styles, CSS rules, then the
        # fleet's rows) that mostly live on, and the collector's passes over them were
        # ~10% of the CPU before the first frame and before the whole fleet is shown.
        # Back on once the fleet is shown (`_fleet_ready`, which freezes what the start
        # made, its cyclic garbage too: ~14,000 objects once, at 1,000 clusters), after
        # GC_OFF_AT_MOST s whatever the fleet file's read does, or when the app ends.
        self._gc_was_enabled = gc.isenabled()
        gc.disable()

    def _collector_on(self) -> None:
        """The garbage collector back on, if `on_load` turned it off (once)."""
        if self._gc_was_enabled:
            self._gc_was_enabled = False
            gc.enable()

    def on_mount(self) -> None:
        self.set_timer(GC_OFF_AT_MOST, self._collector_on)
        problems = list(self._theme_load.errors)
        if self._requested_theme not in self.available_themes:
            problems.append(f"theme {self._requested_theme!r} not found; themes: "
                            + ", ".join(sorted(self.available_themes)))
        if problems:
            self.notify("\n".join(problems), title="themes", severity="warning", timeout=10)
        self.set_interval(REPAINT_INTERVAL, self._repaint)
        # The first frame first: reading the fleet file, importing the kubernetes client
        # and reading every cluster would compete with it for the interpreter.
        if self.config is None:
            self.call_after_refresh(self._load_fleet)
        else:
            self.fleet_loaded.set()
            self.call_after_refresh(self._fleet_ready)
        if self.status_interval > 0:
            self.set_interval(self.status_interval, self._periodic_status)

    def _fleet_ready(self) -> None:
        self._start_engine()
        # Everything made so far (modules, the screens, a row per cluster) lives as long
        # as the console: out of the collector's full passes, which otherwise walk it
        # all a few times per release (up to 0.1 s each, keys waiting). Unfrozen when
        # the app unmounts (a process that runs several apps, as tests do, frees them).
        gc.freeze()
        self._collector_on()

    @on(Notice)
    def _notice(self, message: Notice) -> None:
        self.notify(message.text, severity=message.severity, timeout=10)

    # -- engine events --------------------------------------------------------------

    @on(EventsReady)
    def _events_ready(self) -> None:
        events = self.bridge.drain()
        for event in events:
            self.state.apply(event)
            if event.kind is Kind.WAVE_BAKING:
                self._gate_ahead(int(event.data.get("wave", 0)))
        if events:
            self.events_signal.publish(events)

    def _repaint(self) -> None:
        """10 Hz: redraw what changed and the rows whose clock moved; once a second
        also the release header's clocks."""
        if not self.screen_stack or not self.fleet.is_mounted:  # starting or closing
            return
        dirty, release_dirty, lines = self.state.take_dirty()
        fleet = self.fleet
        fleet.flush(dirty, release_dirty, lines)
        if self._gate_deferred is not None and len(self.screen_stack) == 1:
            self._show_deferred_gate()
        self._ticks += 1
        if self._ticks % 10 == 0:
            fleet.tick()

    # -- live versions ----------------------------------------------------------------

    def _periodic_status(self) -> None:
        if not self.release_running:
            self.load_status()

    @work(thread=True, exit_on_error=False, exclusive=True, group="status")
    def load_status(self) -> None:
        """Read every cluster's live version (an unreachable one only marks its row)."""
        self._read_status()

    def _read_status(self) -> None:
        """Live versions from the engine, then the ledger's view of them (drift)."""
        try:
            engine = self.engine()
            statuses = engine.status()
        except UserError as exc:
            self.post_message(Notice(str(exc)))
            return
        self.call_from_thread(self.state.apply_status, statuses)
        if self._ledger_error is not None:
            return
        live = {s.cluster: s.version for s in statuses}
        try:
            rows = engine.matrix(live)
        except UserError as exc:
            self.post_message(Notice(str(exc)))
            return
        self.call_from_thread(self.state.apply_recorded,
                              {row.cluster: row.recorded for row in rows},
                              {row.cluster: row.recorded_helm_revision for row in rows})

    # -- releases -----------------------------------------------------------------

    def open_release_form(self) -> None:
        """The new-release form, with the marked clusters as targets."""
        from console.ui.screens.release_form import ReleaseFormScreen

        if self.config is None:
            self.notify("the fleet file is still loading", severity="warning")
            return
        if self.release_running:
            self.notify("a release is running: wait for it, or abort it at its gate",
                        severity="warning")
            return
        if isinstance(self.screen, ReleaseFormScreen):
            return
        self.push_screen(ReleaseFormScreen(self.config, self.state, self.state.marked()))

    # -- what screens ask for (messages; see console.ui.messages) ------------------

    @on(NewReleaseRequested)
    def _new_release_requested(self) -> None:
        self.open_release_form()

    @on(StartReleaseRequested)
    def _start_release_requested(self, message: StartReleaseRequested) -> None:
        from console.ui.screens.release_form import ReleaseFormScreen

        if not self.start_release(message.request):
            return
        for screen in self.screen_stack:
            if isinstance(screen, ReleaseFormScreen):
                screen.release_started()

    @on(PauseToggled)
    def _pause_toggled(self) -> None:
        self.toggle_pause()

    @on(ClusterSteerRequested)
    def _steer_requested(self, message: ClusterSteerRequested) -> None:
        self.steer_cluster(message.action, message.cluster_id)

    @on(FollowSteerRequested)
    def _follow_steer_requested(self, message: FollowSteerRequested) -> None:
        self.steer_followed(message.release_id, message.action, message.cluster_id,
                            message.rollback)

    @on(StatusRefreshRequested)
    def _status_refresh_requested(self) -> None:
        self.load_status()

    @on(DetailRequested)
    def _detail_requested(self, message: DetailRequested) -> None:
        self.open_detail(message.cluster_id)

    @on(ClusterRollbackRequested)
    def _cluster_rollback_requested(self, message: ClusterRollbackRequested) -> None:
        self.ask_rollback(message.cluster_id)

    @on(ReleaseRollbackRequested)
    def _release_rollback_requested(self, message: ReleaseRollbackRequested) -> None:
        self.ask_rollback_release(message.release_id, message.version, message.targets)

    # -- releases (continued) -------------------------------------------------------

    def start_release(self, request: ReleaseRequest) -> bool:
        """Run a release in a worker; False (and say why) when it cannot start now."""
        if self.release_running:
            self.notify("a release is running already", severity="warning")
            return False
        if self._ledger_error is not None:
            self.notify(f"releases are disabled: history unavailable: {self._ledger_error}",
                        severity="error")
            return False
        if self._engine is None:
            self.notify("the engine is still starting (or failed to): try again in a moment",
                        severity="warning")
            return False
        self.release_running = True
        self.control = self._engine.new_control()
        self._run_release(request, self.control)
        return True

    @work(thread=True, exit_on_error=False, group="release")
    def _run_release(self, request: ReleaseRequest, control: RemoteControl) -> None:
        # The result carries the pre-flight report, whose module imports the Kubernetes
        # client: imported now (this worker, as pre-flight begins), not by the engine
        # reader unpickling the result as the release ends - half a second or more
        # holding the interpreter, every key pressed meanwhile waiting on it.
        import console.preflight.model  # noqa: F401
        try:
            engine = self.engine()
            # Who acts, as the engine's session named it - known once the engine is ready,
            # which a form filled in the first second may have come before.
            result = engine.run(replace(request, operator=self.operator), control)
        except UserError as exc:
            self.call_from_thread(self.notify, str(exc), title="release not started",
                                  severity="error", timeout=10)
            result = None
        finally:
            self.call_from_thread(self._release_done)
        if result is not None:
            severity = "information" if result.outcome is Outcome.OK else "warning"
            self.call_from_thread(self.notify, f"{result.release_id}: {result.outcome}",
                                  title="release finished", severity=severity)
        self._read_status()

    def _release_done(self) -> None:
        from console.ui.screens.release_form import ReleaseFormScreen

        self.release_running = False
        self.control = None
        for screen in self.screen_stack:
            if isinstance(screen, ReleaseFormScreen):
                screen.release_ended()

    # -- navigation ---------------------------------------------------------------

    def open_detail(self, cluster_id: str) -> None:
        """The cluster detail screen."""
        from console.ui.screens.detail import DetailScreen

        if cluster_id in self.state.clusters:
            self.push_screen(DetailScreen(cluster_id, self.state))

    def action_history(self) -> None:
        """The ledger and the version matrix."""
        from console.ui.screens.history import HistoryScreen

        if self.config is None:
            self.notify("the fleet file is still loading", severity="warning")
            return
        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen(self.config, self.state))

    def action_help(self) -> None:
        """Every key and what it does."""
        from console.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_jump(self) -> None:
        """`:` - go to a screen or a cluster by name."""
        from console.ui.screens.jump import JumpScreen

        self.push_screen(JumpScreen(self.state.ids), self._jump_to)

    def _jump_to(self, target: str | None) -> None:
        if not target:
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if target in ("fleet", "home"):
            return
        if target == "history":
            self.action_history()
        elif target == "help":
            self.action_help()
        elif target in ("new", "release"):
            self.open_release_form()
        elif target in self.state.clusters:
            self.fleet.grid.go_to(target)
            self.open_detail(target)
        else:
            self.notify(f"no screen or cluster named {target!r}", severity="warning")

    def action_quit_console(self) -> None:
        """`q`: quit; while a release runs, ask first (quitting stops it)."""
        from console.ui.screens.confirm import ConfirmScreen

        if not self.release_running:
            self.exit(0)
            return
        release = self.state.release
        name = release.release_id if release else "a release"
        self.push_screen(ConfirmScreen(
            f"Quit while {name} is running?",
            "No new cluster will start; clusters rolling now finish or are recorded as "
            "interrupted. Nothing is rolled back.",
            yes="quit and stop the release", no="stay"), self._quit_confirmed)

    def _quit_confirmed(self, yes: bool | None) -> None:
        if yes:
            self.shutdown_release()
            self.exit(0)

    def shutdown_release(self) -> None:
        """Stop the running release (no rollback) and answer any pending gate."""
        self.gates.close()
        if self.control is not None:
            try:
                self.control.abort(rollback=False, by=self.operator)
            except UserError:
                pass  # the engine process is gone already

    def on_unmount(self) -> None:
        self._collector_on()   # if the app ended before the fleet was shown
        gc.unfreeze()
        self._stop_engine()

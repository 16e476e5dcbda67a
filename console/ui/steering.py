"""The TUI's steering: of the console's own running release (`p` pauses or resumes it,
`o` skips a cluster not started yet, `t` retries a failed one) through its
`RemoteControl`, and of a release another process runs (the follow screen's keys)
through that release's control channel, asked in a thread worker and answered by what
the release acknowledged.

Screens post `PauseToggled`, `ClusterSteerRequested` or `FollowSteerRequested`
(`console.ui.messages`); the app hands them here. `SteerActions` is a base class of
`ReleaseConsoleApp` (after `App` in its bases): it uses the app's view model, release
control, engine and operator, and Textual's `notify`, `call_from_thread` and
`screen_stack`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work

from console.errors import UserError

if TYPE_CHECKING:
    from console.engine.remote import EngineProcess, RemoteControl
    from console.ui.state import FleetState


class SteerActions:
    """Steering as the app runs it (see the module doc)."""

    state: FleetState
    operator: str
    release_running: bool
    control: RemoteControl | None
    engine: Callable[[], EngineProcess]
    notify: Callable[..., Any]
    call_from_thread: Callable[..., Any]
    screen_stack: list[Any]

    def toggle_pause(self) -> None:
        """`p`: pause the running release (no new cluster starts), or resume it."""
        control = self.control
        if control is None or not self.release_running:
            self.notify("no release is running", severity="warning")
            return
        if control.paused:
            control.resume(by=self.operator)
            self.notify("release resumed")
        else:
            control.pause(by=self.operator)
            self.notify("release paused: clusters rolling now finish, no new one starts")

    def steer_cluster(self, action: str, cid: str) -> None:
        """`o`: skip a cluster of the running release that has not started (recorded
        `skipped_by_operator`); `t`: retry a failed one once the rest of its wave ended."""
        from console.ui.model import Phase
        control = self.control
        row = self.state.clusters.get(cid)
        if control is None or not self.release_running or row is None:
            self.notify("no release is running", severity="warning")
            return
        if action == "skip" and row.phase is not Phase.WAITING:
            self.notify(f"{cid} is {row.phase.value}: only a cluster waiting to start can "
                        "be skipped", severity="warning")
            return
        if action == "retry" and row.phase not in (Phase.FAILED, Phase.ROLLED_BACK):
            self.notify(f"{cid} has not failed ({row.phase.value})", severity="warning")
            return
        getattr(control, action)(cid, by=self.operator)
        self.notify(f"{cid} will be skipped" if action == "skip" else
                    f"{cid} will be deployed again once the rest of its wave ended")

    @work(thread=True, exit_on_error=False, group="follow-steer")
    def steer_followed(self, release_id: str, action: str, cluster: str | None = None,
                       rollback: bool = False) -> None:
        """Ask a release another process runs (`action` on `cluster`), through its control
        channel as the identity the cluster confirms; say what it acknowledged, then have
        the follow screen read the release again."""
        try:
            ack = self.engine().steer(release_id, action, cluster, rollback)
        except UserError as exc:
            self.call_from_thread(self.notify, str(exc), severity="warning")
            return
        text = ack.detail if ack.ok else f"nothing to act on: {ack.detail}"
        self.call_from_thread(self.notify, text,
                              severity="information" if ack.ok else "warning")
        self.call_from_thread(self._followed_changed)

    def _followed_changed(self) -> None:
        from console.ui.screens.follow import FollowScreen

        for screen in self.screen_stack:
            if isinstance(screen, FollowScreen):
                screen.load()

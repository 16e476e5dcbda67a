"""The TUI's rollbacks: one cluster (`r` on the fleet grid) or every cluster a release
reached (from the history), each confirmed in a modal screen first and run in a thread
worker, the outcome shown as a notification.

`RollbackActions` is a base class of `ReleaseConsoleApp` (after `App` in its bases): it
uses the app's view model, engine, ledger and operator, and Textual's `notify`,
`push_screen` and `call_from_thread`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work

from console.errors import UserError
from console.events import Outcome

if TYPE_CHECKING:
    from console.engine.remote import EngineProcess
    from console.ui.state import FleetState


class RollbackActions:
    """Rollbacks as the app runs them (see the module doc)."""

    state: FleetState
    operator: str
    release_running: bool
    engine: Callable[[], EngineProcess]
    ledger: Callable[[], EngineProcess]
    notify: Callable[..., Any]
    push_screen: Callable[..., Any]
    call_from_thread: Callable[..., Any]
    _read_status: Callable[..., Any]

    def ask_rollback(self, cluster_id: str) -> None:
        """`r`: confirm, then roll one cluster back to the version it ran, healthy, before
        its current one (the ledger's; never one that failed or was rolled back there)."""
        row = self.state.clusters[cluster_id]
        if row.phase.active:
            self.notify(f"{cluster_id} is {row.phase.word}: wait until it settles",
                        severity="warning")
            return
        self._prepare_rollback(cluster_id)

    @work(thread=True, exit_on_error=False, exclusive=True, group="rollback-prepare")
    def _prepare_rollback(self, cluster_id: str) -> None:
        from console.ui.screens.rollback import RollbackChoice, RollbackScreen

        try:
            # Refused without a ledger record, on drift, or with nothing healthy before.
            plan = self.ledger().plan_rollback(cluster_id)
        except UserError as exc:
            self.call_from_thread(self.notify, f"rollback refused: {exc}", severity="warning")
            return
        row = self.state.clusters[cluster_id]
        choice = RollbackChoice(cluster_id, plan.from_version, plan.to_version,
                                production=row.info.production, why=plan.why)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._do_rollback(cluster_id, choice.to_version, choice.from_version,
                                  getattr(plan, "digest", None))

        self.call_from_thread(self.push_screen, RollbackScreen(choice), confirmed)

    @work(thread=True, exit_on_error=False, group="rollback")
    def _do_rollback(self, cluster_id: str, to_version: str | None,
                     from_version: str | None, digest: str | None = None) -> None:
        try:
            # `expect_from`: nothing is done if the cluster changed since the confirmation;
            # `digest`: the one the ledger recorded for that version (a pinned release).
            result = self.engine().rollback(cluster_id, to_version, by=self.operator,
                                            expect_from=from_version, digest=digest)
        except UserError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        ok = result.outcome is Outcome.ROLLED_BACK
        text = (f"{cluster_id}: rolled back to {result.rolled_back_to or result.to_version}"
                if ok else f"{cluster_id}: rollback {result.outcome}: {result.error or ''}")
        self.call_from_thread(self.notify, text, severity="information" if ok else "error")
        self._read_status()

    def ask_rollback_release(self, release_id: str, version: str, targets: list[str]) -> None:
        """From the history: roll back every cluster a release reached (after confirming)."""
        from console.ui.screens.confirm import ConfirmScreen

        if self.release_running:
            self.notify("a release is running: roll back when it has finished",
                        severity="warning")
            return
        shown = ", ".join(targets[:8]) + (" …" if len(targets) > 8 else "")
        self.push_screen(ConfirmScreen(
            f"Roll back release {release_id}?",
            f"Every cluster still running {version} from this release goes back to the "
            f"version it ran before. Targets: {shown}",
            yes="roll back the release", no="cancel"),
            lambda yes: self._do_rollback_release(release_id) if yes else None)

    @work(thread=True, exit_on_error=False, group="rollback")
    def _do_rollback_release(self, release_id: str) -> None:
        try:
            results = self.engine().rollback_release(release_id, by=self.operator)
        except UserError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        done = sum(r.outcome is Outcome.ROLLED_BACK for r in results)
        bad = [r for r in results if r.outcome is Outcome.FAILED]
        text = f"{release_id}: {done} of {len(results)} clusters rolled back"
        if bad:
            text += "; failed: " + ", ".join(r.cluster for r in bad)
        self.call_from_thread(self.notify, text, severity="error" if bad else "information")
        self._read_status()

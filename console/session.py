"""One place that wires a release's surroundings around an engine.

Every way a release or a manual rollback starts - `deploy`, `rollback`, the TUI's engine
process, and whatever comes later - opens a `Session` on its engine: the Git ledger
records every event (`EventLedger`, first among the listeners, so a release that cannot
be recorded does not start), the notifier tells Slack and mail as the fleet file says
(`NotifyListener`), the releases a stopped console left open are closed (reconciled with
what the clusters really run) as the session opens, each told through `on_warning`, and
`operator` is who acts - a front end takes all of this from its session, none calls any
of it itself. `close()` commits (and pushes) every record and sends what is pending.

The session sits below the engine layer on purpose: it wires *around* an engine handed
to it and imports none, so the engine's child-process host (`console.engine.remote`) can
open one too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.config import FleetConfig
    from console.engine import Engine
    from console.history import Release
    from console.notify import Delivery

NOTIFY_CLOSE_TIMEOUT = 30.0   # s pending notifications get when a session closes


def operator_name() -> str:
    """Who acts, for every way a release starts (`console.history.operator.
    current_operator`: CI's build user, else git's user.name, else the login name)."""
    # Here, not at the top: importing the ledger loads Git, and every command asks this.
    from console.history.operator import current_operator
    return current_operator().name


class Session:
    """The ledger and the notifier attached to one engine, until `close()`; on opening,
    the releases a stopped console left open are reconciled (`reconciled`).

    Raises `UserError` (from the ledger) when the history cannot be opened: a release
    that cannot be recorded must not start.
    """

    def __init__(self, config: FleetConfig, engine: Engine, *,
                 on_warning: Callable[[str], None] | None = None) -> None:
        """Open the ledger of `config`, attach it and the notifier to `engine`, and close
        the releases a stopped console left open; `on_warning` hears of each of those, and
        of failed pushes and notifications (any thread)."""
        # Here, not at the top: importing this module must stay cheap for every command.
        from console.history import EventLedger, Ledger
        from console.notify import Notifier, NotifyListener

        self.config = config
        self.engine = engine
        self.on_warning = on_warning or (lambda _text: None)
        self.operator = operator_name()
        self.ledger = Ledger.for_config(config)
        self.notifier = NotifyListener(Notifier(config.app.notify, app=config.app.name),
                                       on_result=self._deliveries)
        # The ledger first: its failure at RELEASE_STARTED stops the release before any
        # cluster is touched, and nothing else should have heard of it by then.
        engine.listeners.insert(0, EventLedger(self.ledger, on_warning=self.on_warning))
        engine.add_listener(self.notifier)
        self._closed = False
        # Here, not left to each front end: a front end that forgot it would leave a
        # killed console's release open in the ledger for good.
        self.reconciled = self._reconcile()

    def _reconcile(self) -> list[Release]:
        """Close the releases a stopped console left open with what the clusters really
        run (never one whose lease a live console still holds); returns them."""
        try:
            closed = self.engine.reconcile_unfinished(self.ledger)
        except BaseException:
            self.close()
            raise
        for release in closed:
            self.on_warning(f"release {release.id} was left unfinished by a console that "
                            "stopped; recorded what the clusters really run")
        return closed

    def _deliveries(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if not delivery.ok:
                self.on_warning(f"notification not delivered: {delivery.detail}")

    def close(self, timeout: float = NOTIFY_CLOSE_TIMEOUT) -> None:
        """Commit (and push) every record, then send what is pending (at most `timeout` s)."""
        if self._closed:
            return
        self._closed = True
        from console.history import HistoryError
        try:
            self.ledger.close()
        except HistoryError as exc:
            # The release ran: its exit code stands. The records are on disk; the next
            # start commits them.
            self.on_warning(str(exc))
        finally:
            self.notifier.close(timeout=timeout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

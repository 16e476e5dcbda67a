"""Roll one cluster back: a confirmation that names the cluster and both versions."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


@dataclass(frozen=True)
class RollbackChoice:
    """What `r` would do to a cluster: from which version to which, and why (the engine's
    `plan_rollback`, from the ledger)."""

    cluster: str
    from_version: str | None
    to_version: str | None
    from_revision: int | None = None
    to_revision: int | None = None
    production: bool = False
    why: str = ""


class RollbackScreen(ModalScreen[bool]):
    """`Roll back prod-eu?  v1.4.2 → v1.4.1 (revision 7 → 6)`, `y` / `n`."""

    BINDINGS = [
        Binding("y", "answer(True)", "roll back"),
        Binding("n", "answer(False)", "cancel"),
        Binding("escape", "answer(False)", "cancel", show=False),
    ]

    def __init__(self, choice: RollbackChoice) -> None:
        super().__init__(classes="dialog-screen")
        self.choice = choice

    def compose(self) -> ComposeResult:
        c = self.choice
        with Vertical(classes="dialog", id="rollback") as box:
            box.border_title = f"Roll back {c.cluster}?"
            if c.production:
                box.add_class("production")
                yield Label("● production cluster", classes="production-marker")
            revs = ""
            if c.from_revision is not None and c.to_revision is not None:
                revs = f"  (revision {c.from_revision} → {c.to_revision})"
            yield Static(f"[b]{c.from_version or '?'}[/b]  →  [b]{c.to_version or '?'}[/b]{revs}",
                         id="rollback-versions", classes="dialog-body")
            if c.why:
                yield Static(c.why, id="rollback-why", classes="dialog-body", markup=False)
            yield Label("[b]y[/b] roll back    [b]n[/b] cancel", classes="dialog-keys")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)

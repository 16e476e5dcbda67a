"""`:` - jump to a screen (fleet, history, help, new) or a cluster, by name."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label

SCREENS = ("fleet", "history", "help", "new")


class JumpScreen(ModalScreen[str | None]):
    """A one-line prompt with completion (`tab`/`→` accepts the suggestion)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, clusters: Sequence[str]) -> None:
        super().__init__(classes="dialog-screen")
        self.clusters = list(clusters)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="jump") as box:
            box.border_title = "Jump to"
            yield Input(placeholder="fleet · history · help · new · a cluster id",
                        suggester=SuggestFromList([*SCREENS, *self.clusters],
                                                  case_sensitive=False),
                        id="jump-input")
            yield Label("[b]enter[/b] go    [b]esc[/b] cancel", classes="dialog-keys")

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        text = event.value.strip().lstrip(":")
        # A prefix of exactly one name is enough (`:prod-u` → prod-us).
        names = [*SCREENS, *self.clusters]
        if text not in names:
            hits = [n for n in names if n.startswith(text)] if text else []
            if len(hits) == 1:
                text = hits[0]
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        """Close without going anywhere."""
        self.dismiss(None)

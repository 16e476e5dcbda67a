"""`?` - every key of the console and what it does, in words.

Built from the screens' own `BINDINGS`, so a key cannot exist without being listed.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {"question_mark": "?", "colon": ":", "slash": "/", "space": "space",
             "escape": "esc", "enter": "enter", "ctrl+p": "ctrl+p", "ctrl+r": "ctrl+r"}


# The k9s keys every list has (console.ui.widgets.lists).
LIST_MOVES = ("j k g G", "down, up, first, last row")


def key_label(binding: Binding) -> str:
    """How a key is written for people (`?`, `/`, `space`, `ctrl+p`)."""
    if binding.key_display:
        return binding.key_display
    return ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(","))


def sections(app_bindings: Iterable[BindingType]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(key, action in words)]) for every screen, home first; `app_bindings`
    are the keys that work everywhere (the app's)."""
    from console.ui.screens.confirm import ConfirmScreen
    from console.ui.screens.detail import DetailScreen
    from console.ui.screens.fleet import FleetScreen
    from console.ui.screens.follow import FollowScreen
    from console.ui.screens.gate import GateScreen
    from console.ui.screens.history import HistoryScreen
    from console.ui.screens.release_form import ReleaseFormScreen
    from console.ui.screens.rollback import RollbackScreen
    from console.ui.widgets.fleet_grid import FleetGrid

    def keys(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
        return [(key_label(b), b.description) for b in bindings if isinstance(b, Binding)]

    everywhere = keys(app_bindings) + [("ctrl+p", "command palette")]
    fleet = keys(FleetScreen.BINDINGS) + keys(FleetGrid.BINDINGS) + [
        ("↑ ↓ pgup pgdn", "move the cursor")]
    return [
        ("Everywhere", everywhere),
        ("Fleet", fleet),
        ("New release", keys(ReleaseFormScreen.BINDINGS) + [("tab", "next field")]),
        ("Gate between waves", keys(GateScreen.BINDINGS)),
        ("Rollback confirmation", keys(RollbackScreen.BINDINGS)),
        ("Questions", keys(ConfirmScreen.BINDINGS)),
        ("Cluster detail", keys(DetailScreen.BINDINGS) + [LIST_MOVES]),
        ("History", keys(HistoryScreen.BINDINGS) + [LIST_MOVES]),
        ("Following another process's release", keys(FollowScreen.BINDINGS) + [LIST_MOVES]),
    ]


class HelpScreen(ModalScreen[None]):
    """The key reference; `esc`, `q` or `?` closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "close help", key_display="esc")]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def compose(self) -> ComposeResult:
        text = Text()
        for title, entries in sections(self.app.BINDINGS):
            text.append(f"{title}\n", "bold underline")
            for key, words in entries:
                text.append(f"  {key:<14}", "bold")
                text.append(f"{words}\n")
            text.append("\n")
        text.append("Phases: · idle  … checking  ◷ waiting  ⟳ rolling  ✔ healthy  ✘ failed  "
                    "↺ rolling back  ↩ rolled back  » skipped  ✖ unreachable\n")
        text.append("● production cluster   ≠ live version differs from the ledger (drift)")
        with VerticalScroll(classes="dialog", id="help") as box:
            box.border_title = "Keys"
            yield Static(text, id="help-text")

    def action_close(self) -> None:
        """Back to where `?` was pressed."""
        self.dismiss(None)

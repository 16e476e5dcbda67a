"""Lists that move the k9s way: `j`/`k` down and up, `g`/`G` to the first and last row
(beside the arrows, home and end every DataTable has)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable

LIST_KEYS = [
    Binding("j", "cursor_down", "down", show=False),
    Binding("k", "cursor_up", "up", show=False),
    Binding("g", "scroll_top", "first", show=False),
    Binding("G", "scroll_bottom", "last", show=False),
]


class ListTable(DataTable):
    """A `DataTable` with the list keys."""

    BINDINGS = LIST_KEYS

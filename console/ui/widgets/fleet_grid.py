"""The fleet grid: one row per cluster, repainted cell by cell as events arrive.

A `DataTable` with fixed column widths (widths computed from the first rows would jump
as versions and messages grow). Only the rows the view model reports dirty are
repainted, and only their changed cells, so a 200-cluster parallel release costs a few
hundred cell updates a second at most.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from console.ui.state import (DRIFT_GLYPH, PRODUCTION_GLYPH, ClusterView, FleetState, Phase,
                              format_duration)
from console.ui.widgets.palette import Palette

BAR_WIDTH = 7
MARK_GLYPH = "✓"

# (key, label, width); NOTE takes what is left of the screen.
FIXED_COLUMNS = (
    ("cluster", "  CLUSTER", 0),  # mark, id, production glyph; width from the longest id
    ("groups", "GROUPS", 12),
    ("live", "LIVE", 12),
    ("target", "TARGET", 10),
    ("phase", "PHASE", 14),
    ("progress", "PROGRESS", 13),
    ("time", "TIME", 6),
)
NOTE_MIN = 16


def progress_bar(row: ClusterView, style: Style | str = "") -> Text:
    """`█████░░ 4/6`: updated-and-available of desired replicas."""
    if row.desired <= 0:
        return Text("")
    done = min(row.available, row.updated) if row.phase.active else row.available
    filled = round(BAR_WIDTH * min(done, row.desired) / row.desired)
    return Text.assemble(("█" * filled, style), ("░" * (BAR_WIDTH - filled), "dim"),
                         f" {done}/{row.desired}")


def _same(a: object, b: object) -> bool:
    """Rich `Text` equality ignores the base style; a cell must repaint when it changes."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return a == b


class FleetGrid(DataTable):
    """Every cluster of the fleet (or those the filter selects)."""

    BINDINGS = [
        Binding("space", "toggle_mark", "mark", key_display="space"),
        Binding("enter", "select_cursor", "details"),
    ]

    class MarkToggled(Message):
        """A cluster was marked or unmarked with `space`."""

        def __init__(self, cluster: str, marked: bool) -> None:
            super().__init__()
            self.cluster = cluster
            self.marked = marked

    def __init__(self, state: FleetState, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.state = state
        self.query_text = ""
        self._shown: list[str] = []
        self._cells: dict[str, tuple[object, ...]] = {}
        self._note_width = NOTE_MIN
        self._palette: Palette | None = None

    # -- building ---------------------------------------------------------------

    def on_mount(self) -> None:
        self._palette = Palette.of(self.app)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self._rebuild()

    def _theme_changed(self, _theme: object) -> None:
        self._palette = Palette.of(self.app)
        self._cells.clear()
        self.repaint(self._shown)

    def on_resize(self) -> None:
        # Leave room for the vertical scrollbar, so no horizontal one appears.
        width = max(NOTE_MIN, self.size.width - self._fixed_width() - 1)
        if width != self._note_width:
            self._note_width = width
            self._rebuild()

    def _id_width(self) -> int:
        longest = max((len(i) for i in self.state.clusters), default=8)
        return min(max(longest, 7), 28) + 4  # room for "✓ " and " ●"

    def _fixed_width(self) -> int:
        widths = [w or self._id_width() for _k, _l, w in FIXED_COLUMNS]
        return sum(widths) + 2 * self.cell_padding * (len(widths) + 1)

    def _rebuild(self) -> None:
        """Columns and rows from scratch (start, resize, filter)."""
        cursor_key = self.cursor_cluster
        self.clear(columns=True)
        self._cells.clear()
        for key, label, width in FIXED_COLUMNS:
            self.add_column(label, key=key, width=width or self._id_width())
        self.add_column("NOTE", key="note", width=self._note_width)
        self._shown = self.state.visible(self.query_text)
        for cid in self._shown:
            cells = self._render_row(self.state.clusters[cid])
            self._cells[cid] = cells
            self.add_row(*cells, key=cid)
        if cursor_key in self._shown:
            self.move_cursor(row=self._shown.index(cursor_key), animate=False)

    # -- reading ----------------------------------------------------------------

    @property
    def cursor_cluster(self) -> str | None:
        """The id of the cluster under the cursor, if any."""
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]

    @property
    def shown(self) -> list[str]:
        """Ids of the rows on display, top to bottom."""
        return list(self._shown)

    # -- changing ---------------------------------------------------------------

    def set_filter(self, query: str) -> None:
        """Show only the clusters `query` selects (see `state.matches`)."""
        if query != self.query_text:
            self.query_text = query
            self._rebuild()

    def go_to(self, cluster_id: str) -> bool:
        """Put the cursor on a cluster (clearing a filter that hides it)."""
        if cluster_id not in self._shown:
            self.set_filter("")
        if cluster_id not in self._shown:
            return False
        self.move_cursor(row=self._shown.index(cluster_id))
        return True

    def repaint(self, ids: Iterable[str]) -> None:
        """Redraw the cells that changed in these rows."""
        shown = set(self._shown)
        for cid in ids:
            if cid not in shown:
                continue
            new = self._render_row(self.state.clusters[cid])
            old = self._cells.get(cid)
            for index, (key, value) in enumerate(zip(self._column_keys(), new)):
                if old is None or not _same(old[index], value):
                    self.update_cell(cid, key, value)
            self._cells[cid] = new

    def tick(self) -> None:
        """Advance the TIME column of rows whose clock runs."""
        self.repaint([cid for cid in self._shown
                      if self.state.clusters[cid].started is not None
                      and self.state.clusters[cid].finished is None])

    def action_toggle_mark(self) -> None:
        """Mark or unmark the cluster under the cursor."""
        cid = self.cursor_cluster
        if cid is None:
            return
        marked = self.state.toggle_mark(cid)
        self.repaint([cid])
        self.post_message(self.MarkToggled(cid, marked))

    # -- rendering --------------------------------------------------------------

    def _column_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _l, _w in FIXED_COLUMNS) + ("note",)

    def _render_row(self, row: ClusterView) -> tuple[object, ...]:
        pal = self._palette or Palette.of(self.app)
        phase_style = pal.phases[row.phase]
        cluster = Text.assemble((f"{MARK_GLYPH} " if row.marked else "  ", pal.mark),
                                (row.id, "bold" if row.info.production else ""),
                                overflow="ellipsis", no_wrap=True)
        if row.info.production:
            cluster.append(f" {PRODUCTION_GLYPH}", pal.production)
        live = Text(row.live or "-")
        if row.drift:
            live.append(f" {DRIFT_GLYPH}", pal.drift)
        target = Text(row.target or "-")
        if row.target and row.live == row.target:
            target.stylize(pal.phases[Phase.HEALTHY])
        phase = Text(f"{row.phase.glyph} {row.phase.word}", phase_style)
        note_style = pal.bad if row.phase in (Phase.FAILED, Phase.UNREACHABLE) else ""
        note = Text(row.message, note_style, no_wrap=True, overflow="ellipsis")
        elapsed = row.elapsed(self.state.now())
        return (
            cluster,
            Text(",".join(row.info.groups), no_wrap=True, overflow="ellipsis"),
            live,
            target,
            phase,
            progress_bar(row, phase_style),
            Text(format_duration(elapsed), justify="right"),
            note,
        )

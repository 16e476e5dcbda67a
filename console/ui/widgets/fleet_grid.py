"""The fleet grid: one line per cluster, repainted line by line as events arrive.

A line-API widget rather than a `DataTable`: a 200-cluster release changes most rows
several times a second, and a DataTable renders every visible cell again (each through
Rich's padding machinery) whenever any cell changes. Here each row is rendered once into
a `Strip` and cached until that row changes; only changed rows that are on screen are
rendered and refreshed. Columns have fixed widths (a width computed from the first rows
would jump as versions and messages grow); NOTE takes the rest of the line.

Clocks (a running row's TIME, a baking row's countdown) move a row on its own second, not
all rows at one: each row's strip remembers the clock text it was drawn with, and a check
at every repaint (10 Hz, the rows on screen) redraws a row once its clock reads otherwise.
A thousand clusters start within a second or two, so their seconds fall at different
tenths: a frame redraws a few rows, not every row on screen at once (about 10 ms of a
frame's CPU - keys pressed meanwhile waited for it).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.ui.state import (DRIFT_GLYPH, PRODUCTION_GLYPH, ClusterView, FleetState, Phase,
                              format_duration)
from console.ui.widgets.palette import Palette

BAR_WIDTH = 7
MARK_GLYPH = "✓"
GAP = 2  # spaces between columns

# (key, label, width); the cluster width comes from the longest id, NOTE takes the rest.
FIXED_COLUMNS = (
    ("cluster", "  CLUSTER", 0),  # mark, id, production glyph
    ("groups", "GROUPS", 12),
    ("live", "LIVE", 12),
    ("target", "TARGET", 10),
    ("phase", "PHASE", 14),
    ("progress", "PROGRESS", 13),
    ("time", "TIME", 6),
)
COLUMN_KEYS = tuple(k for k, _l, _w in FIXED_COLUMNS) + ("note",)
NOTE_MIN = 16


def progress_bar(row: ClusterView, style: Style | str = "") -> Text:
    """`█████░░ 4/6`: updated-and-available of desired replicas."""
    if row.desired <= 0:
        return Text("")
    done = min(row.available, row.updated) if row.phase.active else row.available
    filled = round(BAR_WIDTH * min(done, row.desired) / row.desired)
    return Text.assemble(("█" * filled, style), ("░" * (BAR_WIDTH - filled), "dim"),
                         f" {done}/{row.desired}")


class FleetGrid(ScrollView, can_focus=True):
    """Every cluster of the fleet (or those the filter selects), with a cursor."""

    BINDINGS = [
        Binding("space", "toggle_mark", "mark", key_display="space"),
        Binding("enter", "select", "details"),
        Binding("up", "cursor_up", "cursor up", show=False),
        Binding("down", "cursor_down", "cursor down", show=False),
        Binding("pageup", "page_up", "page up", show=False),
        Binding("pagedown", "page_down", "page down", show=False),
        Binding("home", "first", "first cluster", show=False),
        Binding("end", "last", "last cluster", show=False),
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
        Binding("g", "first", "first cluster", show=False),
        Binding("G", "last", "last cluster", show=False),
    ]

    COMPONENT_CLASSES = {"fleet-grid--header", "fleet-grid--cursor"}

    DEFAULT_CSS = """
    FleetGrid > .fleet-grid--header { text-style: bold; }
    FleetGrid > .fleet-grid--cursor { background: $primary 40%; }
    FleetGrid:focus > .fleet-grid--cursor { background: $primary; color: $text; }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Selected(Message):
        """`enter` (or a double click) on a cluster."""

        def __init__(self, cluster: str) -> None:
            super().__init__()
            self.cluster = cluster

    def __init__(self, state: FleetState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.query_text = ""
        self._shown: list[str] = state.visible("")
        self._index: dict[str, int] = {cid: i for i, cid in enumerate(self._shown)}
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._strips: dict[str, Strip] = {}
        # The clock text (see `_clock`) each cached row was drawn with, for rows that
        # have a running clock.
        self._clocks: dict[str, str] = {}
        self._widths: tuple[int, ...] = ()
        self._palette: Palette | None = None
        self._frame_style: Style | None = None   # set per frame by render_lines
        self._frame_cursor: Style | None = None

    # -- geometry -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self._palette = Palette.of(self.app)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self._layout_columns()

    def _theme_changed(self, _theme: object) -> None:
        self._palette = Palette.of(self.app)
        self._invalidate_all()

    def on_resize(self) -> None:
        self._layout_columns()

    def _id_width(self) -> int:
        longest = max((len(i) for i in self.state.clusters), default=8)
        return min(max(longest, 7), 28) + 4  # room for "✓ " and " ●"

    def _layout_columns(self) -> None:
        fixed = [w or self._id_width() for _k, _l, w in FIXED_COLUMNS]
        note = max(NOTE_MIN, self.scrollable_content_region.width - sum(fixed)
                   - GAP * len(fixed) - 1)
        widths = (*fixed, note)
        if widths != self._widths:
            self._widths = widths
            self._invalidate_all()
        self._update_virtual_size()

    def _update_virtual_size(self) -> None:
        # One line of header above the rows; it stays put (see render_line).
        self.virtual_size = Size(sum(self._widths) + GAP * (len(self._widths) - 1),
                                 len(self._shown) + 1)

    def _invalidate_all(self) -> None:
        self._cells.clear()
        self._strips.clear()
        self._clocks.clear()
        self.refresh()

    def fleet_loaded(self) -> None:
        """The view model got its clusters (read after the first frame): show them."""
        self._shown = self.state.visible(self.query_text)
        self._index = {cid: i for i, cid in enumerate(self._shown)}
        self._widths = ()   # the cluster column fits the longest id now
        self._layout_columns()
        self.cursor_row = 0

    # -- reading --------------------------------------------------------------------------

    @property
    def cursor_cluster(self) -> str | None:
        """The id of the cluster under the cursor, if any."""
        if 0 <= self.cursor_row < len(self._shown):
            return self._shown[self.cursor_row]
        return None

    @property
    def shown(self) -> list[str]:
        """Ids of the rows on display, top to bottom."""
        return list(self._shown)

    def cell_text(self, cluster_id: str, column: str) -> str:
        """What a cell shows, as plain text (for tests and scripts)."""
        return self._render_cells(self.state.clusters[cluster_id])[COLUMN_KEYS.index(column)].plain

    # -- changing ---------------------------------------------------------------------------

    def set_filter(self, query: str) -> None:
        """Show only the clusters `query` selects (see `state.matches`)."""
        if query == self.query_text:
            return
        current = self.cursor_cluster
        self.query_text = query
        self._shown = self.state.visible(query)
        self._index = {cid: i for i, cid in enumerate(self._shown)}
        self._update_virtual_size()
        self.cursor_row = self._index.get(current, 0) if current else 0
        self.refresh()

    def go_to(self, cluster_id: str) -> bool:
        """Put the cursor on a cluster (clearing a filter that hides it)."""
        if cluster_id not in self._index:
            self.set_filter("")
        if cluster_id not in self._index:
            return False
        self.cursor_row = self._index[cluster_id]
        return True

    def repaint(self, ids: Iterable[str]) -> None:
        """Redraw these rows (those on screen now; the others when scrolled to)."""
        top = self.scroll_offset.y
        height = self.scrollable_content_region.height - 1
        width = self.size.width
        for cid in ids:
            self._cells.pop(cid, None)
            self._strips.pop(cid, None)
            self._clocks.pop(cid, None)
            index = self._index.get(cid)
            if index is not None and top <= index < top + height:
                self.refresh(Region(0, index - top + 1, width, 1))

    def tick(self) -> None:
        """Redraw the rows on screen whose clock (TIME, a bake's countdown) reads
        otherwise than when they were drawn (called at every repaint; the rows off screen
        are checked when drawn)."""
        if not self._clocks:
            return
        rows = self.state.clusters
        now = self.state.now()
        top = self.scroll_offset.y
        stale = [cid for cid in self._shown[top:top + self.scrollable_content_region.height]
                 if (drawn := self._clocks.get(cid)) is not None
                 and drawn != _clock(rows[cid], now)]
        if stale:
            self.repaint(stale)

    def watch_cursor_row(self, old: int, new: int) -> None:
        if self._shown and not 0 <= new < len(self._shown):
            self.cursor_row = max(0, min(new, len(self._shown) - 1))
            return
        top = self.scroll_offset.y
        height = max(1, self.scrollable_content_region.height - 1)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False)
        width = self.size.width
        for index in (old, new):
            top = self.scroll_offset.y
            self.refresh(Region(0, index - top + 1, width, 1))

    # -- keys and mouse ---------------------------------------------------------------------

    def action_cursor_up(self) -> None:
        """Cursor one row up."""
        self.cursor_row = max(0, self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        """Cursor one row down."""
        self.cursor_row = min(len(self._shown) - 1, self.cursor_row + 1)

    def action_page_up(self) -> None:
        """Cursor one screen up."""
        self.cursor_row = max(0, self.cursor_row - (self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        """Cursor one screen down."""
        self.cursor_row = min(len(self._shown) - 1,
                              self.cursor_row + self.scrollable_content_region.height - 1)

    def action_first(self) -> None:
        """Cursor on the first cluster."""
        self.cursor_row = 0

    def action_last(self) -> None:
        """Cursor on the last cluster."""
        self.cursor_row = max(0, len(self._shown) - 1)

    def action_select(self) -> None:
        """Open the cluster under the cursor."""
        if self.cursor_cluster is not None:
            self.post_message(self.Selected(self.cursor_cluster))

    def action_toggle_mark(self) -> None:
        """Mark or unmark the cluster under the cursor."""
        cid = self.cursor_cluster
        if cid is None:
            return
        self.state.toggle_mark(cid)
        self.repaint([cid])

    def on_click(self, event: events.Click) -> None:
        index = event.y - 1 + self.scroll_offset.y
        if event.y >= 1 and 0 <= index < len(self._shown):
            self.cursor_row = index
            if event.chain >= 2:
                self.action_select()

    # -- rendering --------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # The widget's styles once per frame, not once per line: each look-up walks the
        # ancestors (a fifth of a frame's CPU when every visible row had changed).
        self._frame_style = self.rich_style
        self._frame_cursor = self.get_component_rich_style("fleet-grid--cursor")
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        style = self._frame_style or self.rich_style
        if y == 0:
            strip = self._header_strip()
        else:
            index = self.scroll_offset.y + y - 1
            if index >= len(self._shown):
                if index == 0 and self.state.loading:
                    return self._loading_strip(width, style)
                return Strip.blank(width, style)
            cid = self._shown[index]
            strip = self._strips.get(cid)
            if strip is not None and cid in self._clocks and self._clocks[cid] != _clock(
                    self.state.clusters[cid], self.state.now()):
                # Drawn with a clock that has moved since (a row scrolled back to).
                self._cells.pop(cid, None)
                strip = None
            if strip is None:
                strip = self._row_strip(self._cells_of(cid))
                self._strips[cid] = strip
            if index == self.cursor_row:
                # The cursor's colours win over the cells' (the phase keeps its glyph).
                cursor = (self._frame_cursor
                          or self.get_component_rich_style("fleet-grid--cursor"))
                strip = Strip(Segment.apply_style(strip, post_style=cursor), strip.cell_length)
        return strip.crop_extend(self.scroll_offset.x, self.scroll_offset.x + width, style)

    def _loading_strip(self, width: int, style: Style) -> Strip:
        """The grid's one line while the fleet file is read (after the first frame)."""
        text = Text(f"  loading the fleet from {self.state.loading} ...", style="dim")
        text.truncate(width, overflow="ellipsis", pad=True)
        return Strip(Segment.apply_style(list(text.render(self.app.console, end="")), style),
                     width)

    def _header_strip(self) -> Strip:
        labels = [Text(label) for _k, label, _w in FIXED_COLUMNS] + [Text("NOTE")]
        return self._row_strip(labels).apply_style(
            self.get_component_rich_style("fleet-grid--header"))

    def _row_strip(self, cells: Iterable[Text]) -> Strip:
        # Cells, padding and gaps stay separate segments: each keeps its own position in
        # an SVG screenshot (merged runs of spaces drift in some SVG renderers).
        segments: list[Segment] = []
        console = self.app.console
        for i, (cell, width) in enumerate(zip(cells, self._widths)):
            if i:
                segments.append(Segment(" " * GAP))
            cell = cell.copy()
            cell.truncate(width, overflow="ellipsis")
            segments.extend(cell.render(console, end=""))
            if cell.cell_len < width:
                segments.append(Segment(" " * (width - cell.cell_len)))
        length = sum(self._widths) + GAP * (len(self._widths) - 1)
        # The widget's own colours under the cells' (a line-API widget paints its
        # background itself) - applied to the segments, not through Strip.apply_style:
        # every Strip made costs seven caches, and a busy frame makes hundreds.
        return Strip(Segment.apply_style(segments, self._frame_style or self.rich_style),
                     length)

    def _cells_of(self, cluster_id: str) -> tuple[Text, ...]:
        cells = self._cells.get(cluster_id)
        if cells is None:
            row = self.state.clusters[cluster_id]
            now = self.state.now()
            cells = self._render_cells(row, now)
            self._cells[cluster_id] = cells
            clock = _clock(row, now)
            if clock is None:
                self._clocks.pop(cluster_id, None)
            else:
                self._clocks[cluster_id] = clock
        return cells

    def _render_cells(self, row: ClusterView, now: float | None = None) -> tuple[Text, ...]:
        now = self.state.now() if now is None else now
        pal = self._palette or Palette.of(self.app)
        phase_style = pal.phases[row.phase]
        cluster = Text.assemble((f"{MARK_GLYPH} " if row.marked else "  ", pal.mark),
                                (row.id, "bold" if row.info.production else ""))
        if row.info.production:
            cluster.append(f" {PRODUCTION_GLYPH}", pal.production)
        live = Text(row.live or "-")
        if row.drift:
            live.append(f" {DRIFT_GLYPH}", pal.drift)
        target = Text(row.target or "-")
        if row.target and row.live == row.target:
            target.stylize(pal.phases[Phase.HEALTHY])
        note_style = pal.bad if row.phase in (Phase.FAILED, Phase.UNREACHABLE) else Style()
        elapsed = row.elapsed(now)
        return (
            cluster,
            Text(",".join(row.info.groups)),
            live,
            target,
            Text(f"{row.phase.glyph} {row.phase.word}", phase_style),
            progress_bar(row, phase_style),
            Text(format_duration(elapsed).rjust(self._widths[6] if self._widths else 6)),
            Text(row.note(now), note_style),
        )


def _clock(row: ClusterView, now: float) -> str | None:
    """What of a row's line moves with time alone - its TIME while it rolls, its
    countdown while its wave bakes - as shown at `now`; None when nothing does."""
    baking = row.bake_until is not None and row.phase is Phase.HEALTHY
    if row.finished is not None or row.started is None:
        return row.note(now) if baking else None
    return format_duration(row.elapsed(now)) + (row.note(now) if baking else "")


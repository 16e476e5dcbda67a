"""The event log under the grid: what happened, newest at the bottom."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import RichLog

from console.ui.state import LogLine
from console.ui.widgets.palette import Palette


def format_line(line: LogLine, palette: Palette, cluster_width: int = 14) -> Text:
    """`14:02:09 prod-eu        ReplicaSet scaled to 4`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
    text = Text(f"{stamp} ", style="dim")
    text.append(f"{line.cluster:<{cluster_width}} ", "bold" if line.cluster else "")
    text.append(line.text, palette.bad if line.bad else "")
    return text


class EventLog(RichLog):
    """A bounded log of engine events (progress ticks stay out: they live in the grid)."""

    # Each batch of lines makes the log longer (its virtual size), which for any widget
    # lays out the whole screen: a 1,000-cluster release's log grew 2.5 times a second,
    # each time a screen layout and a repaint of everything on it (~15 ms of the UI
    # thread, keys waiting). The log's own box never changes with its length: only its
    # scroll range and scroll bar follow (`watch_virtual_size`); the bar showing up
    # still lays the screen out, once.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def __init__(self, cluster_width: int = 14, **kwargs) -> None:
        super().__init__(max_lines=500, wrap=False, markup=False, auto_scroll=True, **kwargs)
        self.cluster_width = cluster_width

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)

    def add(self, lines: Iterable[LogLine]) -> None:
        """Append lines in order (one write, so one scroll and one repaint per batch)."""
        palette = Palette.of(self.app)
        texts = [format_line(line, palette, self.cluster_width) for line in lines]
        if texts:
            self.write(Text("\n").join(texts))

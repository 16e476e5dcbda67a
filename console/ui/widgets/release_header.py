"""The bar above the grid: app and fleet size, the freeze window open now (or the next
one), the clock, and the release's progress."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from console.events import Outcome
from console.ui.state import FleetState, Phase, format_duration
from console.ui.widgets.palette import Palette

if TYPE_CHECKING:
    from console.freeze import Headline

BAR = 24


class ReleaseHeader(Static):
    """Two lines: title and clock; the release (id, version, wave, progress, pause)."""

    def __init__(self, state: FleetState, app_name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.app_name = app_name

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _t: self.update_release())
        self.update_release()

    def update_release(self) -> None:
        """Repaint from the view model. Without a layout: the header's height is fixed
        (three lines, app.tcss), and a layout re-arranges and repaints the whole screen
        (a 1,000-cluster release repaints the header 2.5 times a second)."""
        self.update(self._render_release(), layout=False)

    def _render_release(self) -> Group:
        state = self.state
        pal = Palette.of(self.app)
        now = state.now()
        clock = time.strftime("%H:%M:%S", time.localtime(now))
        if state.loading:
            title = Text.assemble(("release-console", "bold"), " · loading the fleet file")
        else:
            title = Text.assemble(("release-console", "bold"), f" · {self.app_name} · "
                                  f"{len(state.clusters)} clusters")
        freeze = self._freeze_line(now)
        if freeze is not None and freeze.text:
            title.append(" · ")
            title.append(freeze.text, pal.bad if freeze.frozen else "dim")
        width = max(20, self.size.width or 100)
        title.append(" " * max(1, width - len(title.plain) - len(clock)))
        title.append(clock)
        release = state.release
        if state.loading:
            return Group(title, Text(f"reading {state.loading} ...", style="dim"), Text(""))
        if release is None:
            return Group(title, Text("no release yet · n new release", style="dim"), Text(""))
        waves = len(release.waves)
        parts = [release.release_id, release.version or "?", release.strategy or "?"]
        if waves > 1 and release.wave is not None:
            parts.append(f"wave {release.wave + 1}/{waves}")
        parts.append(format_duration(release.elapsed(now)))
        line = Text(" · ".join(parts), style="bold")
        if release.outcome:
            style = pal.phases[Phase.HEALTHY] if release.outcome == Outcome.OK else pal.bad
            line.append(f"  {release.outcome}", style)
        elif release.bake_until is not None:
            # The bake countdown: the next wave (or its gate) waits for it.
            left = max(0.0, release.bake_until - now)
            line.append(f"  baking wave {(release.bake_wave or 0) + 1}: "
                        f"{format_duration(left)} left", pal.phases[Phase.WAITING])
        elif release.gate_waiting:
            line.append("  waiting at a gate", pal.phases[Phase.WAITING])
        elif release.paused:
            line.append("  paused (p resumes)", pal.phases[Phase.ROLLING_BACK])
        counts = state.counts()
        total = max(1, sum(counts.values()))
        done = counts[Phase.HEALTHY] + counts[Phase.ROLLED_BACK] + counts[Phase.FAILED] \
            + counts[Phase.SKIPPED] + counts[Phase.UNREACHABLE]
        filled = round(BAR * done / total)
        bar = Text.assemble(("█" * filled, pal.phases[Phase.HEALTHY]),
                            ("░" * (BAR - filled), "dim"), "  ")
        order = (Phase.HEALTHY, Phase.ROLLING, Phase.FAILED, Phase.ROLLING_BACK,
                 Phase.ROLLED_BACK, Phase.WAITING, Phase.CHECKING, Phase.SKIPPED,
                 Phase.UNREACHABLE)
        summary = [(f"{counts[p]} {p.word}", pal.phases[p]) for p in order
                   if counts[p] or p in (Phase.HEALTHY, Phase.FAILED)]
        bar.append(f"{counts[Phase.HEALTHY]}/{sum(counts.values())} ")
        for i, (text, style) in enumerate(summary):
            bar.append(" · " if i else "")
            bar.append(text, style)
        return Group(title, line, bar)

    def _freeze_line(self, now: float) -> Headline | None:
        """The fleet file's freeze window open at `now`, else the next one (None: the
        fleet file has no windows, or is not read yet)."""
        windows = getattr(getattr(self.app, "config", None), "freeze", ())
        if not windows:
            return None
        # Imported only for a fleet file with windows: its modules (the fleet file's,
        # zoneinfo) are not on the first frame's way.
        from console.freeze import headline

        return headline(windows, datetime.fromtimestamp(now, timezone.utc))

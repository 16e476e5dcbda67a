"""The event log grows without laying the screen out again: a 1,000-cluster release adds
lines to it 2.5 times a second, and a layout re-arranges and repaints the whole screen
(keys pressed meanwhile wait for it). It still scrolls to its newest line, and its scroll
bar still says how long it is."""

from __future__ import annotations

from textual.screen import Screen

from console.ui.app import ReleaseConsoleApp
from console.ui.state import LogLine

from .ui_helpers import repainted, story, wait_for

T0 = 1764079331.0


def lines(start: int, count: int) -> list[LogLine]:
    return [LogLine(T0 + i, f"c{i:03d}", f"line {i}") for i in range(start, start + count)]


@story
async def test_the_log_grows_and_scrolls_without_laying_the_screen_out(
        console_fleet, monkeypatch) -> None:
    config, _fleet = console_fleet(["a", "b"])
    app = ReleaseConsoleApp(config, clock=lambda: T0, status_interval=0, operator="alice",
                            engine_options={"status_timeout": 20.0})
    layouts: list[int] = []
    refresh_layout = Screen._refresh_layout

    def counted(screen: Screen, *args, **kwargs):
        layouts.append(1)
        return refresh_layout(screen, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, app._engine_ready.is_set, what="the engine")
        await app.workers.wait_for_complete()
        await repainted(pilot)
        log = app.fleet.log_view
        height = log.scrollable_content_region.height

        layouts.clear()
        log.add(lines(0, height - 2))          # fits: no scroll bar
        await repainted(pilot)
        assert layouts == []
        log.add(lines(height - 2, 10))         # overflows: the scroll bar shows up
        await repainted(pilot)
        assert len(layouts) <= 1
        assert log.show_vertical_scrollbar

        layouts.clear()
        total = height + 8
        for _ in range(5):
            log.add(lines(total, 10))
            total += 10
            await repainted(pilot)
        assert layouts == []
        assert len(log.lines) == total
        assert log.scroll_offset.y == log.max_scroll_y == total - height
        assert log.vertical_scrollbar.window_virtual_size == total
        last_row = log.render_line(height - 1).text
        assert f"line {total - 1}" in last_row

"""The grid's header names the freeze window open now, else the next one, read against
the console's injected clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from textual.widgets import Static

from console.config import load
from console.ui.widgets.palette import Palette
from tests.test_freeze import WEEKEND

from .test_stories import SIZE, header_text, quick_console
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(120)

WINDOWS = """
freeze:
  - name: deploy-stop
    groups: [prod]
    from: 2026-11-25T12:00:00Z
    to: 2026-11-25T16:00:00Z
    reason: database migration
""" + WEEKEND

WEDNESDAY = datetime(2026, 11, 25, 14, 2, 11, tzinfo=timezone.utc).timestamp()
TUESDAY = WEDNESDAY - 86400


def with_windows(config):
    path = config.path
    path.write_text(path.read_text() + WINDOWS)
    return load(path)


def console_at(console_fleet, now: float):
    """The console on staging and prod-eu with `WINDOWS`, its clock stopped at `now`."""
    config, _fleet = console_fleet(["staging", "prod-eu"])
    return quick_console(with_windows(config), clock=lambda: now)


@story
async def test_header_shows_the_open_window(console_fleet) -> None:
    app = console_at(console_fleet, WEDNESDAY)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "FROZEN" in header_text(app), what="freeze header")
        assert "FROZEN: deploy-stop until 2026-11-25 16:00Z (prod)" in header_text(app)


@story
async def test_header_shows_the_next_window(console_fleet) -> None:
    app = console_at(console_fleet, TUESDAY)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "next freeze" in header_text(app), what="freeze header")
        assert "next freeze: deploy-stop 2026-11-25 12:00Z - 2026-11-25 16:00Z (prod)" \
            in header_text(app)


def freeze_style(app, text: str):
    """The style the header's title line draws `text` in."""
    title = app.fleet.query_one("#release-header", Static).content.renderables[0]
    start = title.plain.index(text)
    return next(span.style for span in title.spans if span.start == start)


@pytest.mark.parametrize("now, text, style", [(WEDNESDAY, "FROZEN: deploy-stop", "bad"),
                                               (TUESDAY, "next freeze: deploy-stop", "dim")],
                         ids=["open", "next"])
@story
async def test_the_open_window_is_drawn_as_bad_news_and_the_next_one_dim(
        console_fleet, now, text, style) -> None:
    # The header styles by whether a window is open (`Headline.frozen`), not its wording.
    app = console_at(console_fleet, now)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: text in header_text(app), what="freeze header")
        assert freeze_style(app, text) == (Palette.of(app).bad if style == "bad" else style)

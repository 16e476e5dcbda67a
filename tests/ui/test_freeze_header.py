"""The grid's header names the freeze window open now, else the next one, read against
the console's injected clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from console.config import load
from console.ui.app import ReleaseConsoleApp

from .test_stories import QUICK_ENGINE, SIZE, header_text
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(120)

WINDOWS = """
freeze:
  - name: deploy-stop
    groups: [prod]
    from: 2026-11-25T12:00:00Z
    to: 2026-11-25T16:00:00Z
    reason: database migration
  - name: weekend
    days: [sat, sun]
    start: "18:00"
    end: "08:00"
    timezone: Europe/Berlin
    reason: no weekend releases
"""

WEDNESDAY = datetime(2026, 11, 25, 14, 2, 11, tzinfo=timezone.utc).timestamp()
TUESDAY = WEDNESDAY - 86400


def with_windows(config):
    path = config.path
    path.write_text(path.read_text() + WINDOWS)
    return load(path)


@story
async def test_header_shows_the_open_window(console_fleet) -> None:
    config, _fleet = console_fleet(["staging", "prod-eu"])
    app = ReleaseConsoleApp(with_windows(config), clock=lambda: WEDNESDAY,
                            status_interval=0, engine_options=QUICK_ENGINE)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "FROZEN" in header_text(app), what="freeze header")
        assert "FROZEN: deploy-stop until 2026-11-25 16:00Z (prod)" in header_text(app)


@story
async def test_header_shows_the_next_window(console_fleet) -> None:
    config, _fleet = console_fleet(["staging", "prod-eu"])
    app = ReleaseConsoleApp(with_windows(config), clock=lambda: TUESDAY,
                            status_interval=0, engine_options=QUICK_ENGINE)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "next freeze" in header_text(app), what="freeze header")
        assert "next freeze: deploy-stop 2026-11-25 12:00Z - 2026-11-25 16:00Z (prod)" \
            in header_text(app)

"""The gate shown while a wave bakes (issue 14 review): only approve waits for the bake;
stop (`s`) and abort (`x`, confirmed) act at once. And the gate shown early does not
pull an operator out of the detail view: it comes when they are back on the fleet
screen. The demo fleet with `bake: 20s` on its canary, `App.run_test`, the real engine."""

from __future__ import annotations

import time

import pytest

from console.events import Kind
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.confirm import ConfirmScreen
from console.ui.screens.detail import DetailScreen
from console.ui.screens.gate import GateScreen

from .test_bake_story import demo_console, logged
from .test_stories import SIZE, live_tag, open_form_and_start, started
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(300)


async def _baking_gate(pilot, app: ReleaseConsoleApp, fleet) -> float:
    """Start the canary, look at staging's detail while it deploys and bakes, come back:
    the baking gate is shown then (not over the detail view). Returns the bake's end."""
    await open_form_and_start(pilot, app, "canary", "v2")
    await wait_for(pilot, lambda: app.state.release is not None and len(app.screen_stack) == 1,
                   timeout=60, what="the release to start")
    app.open_detail("staging")
    await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail")
    await wait_for(pilot, lambda: app.state.release.bake_wave == 0, timeout=90,
                   what="staging's bake")
    await pilot.pause(1.0)    # a window in which nothing may happen: the gate must not cover the detail
    assert isinstance(app.screen, DetailScreen), app.screen   # left where they were
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="the baking gate")
    assert app.screen.request is None
    until = app.state.release.bake_until
    assert until is not None and time.time() < until
    return until


@story
async def test_stop_during_the_bake_acts_at_once_and_the_gate_waits_out_the_detail_view(
        tmp_path) -> None:
    with demo_console(tmp_path) as (fleet, app):
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            until = await _baking_gate(pilot, app, fleet)
            await pilot.press("a")      # approve waits for the bake
            await pilot.pause()
            assert isinstance(app.screen, GateScreen) and not logged(app, Kind.GATE_DECIDED)
            await pilot.press("s")      # stop acts now: the gate closes
            await wait_for(pilot, lambda: not isinstance(app.screen, GateScreen),
                           what="the gate to close on stop")
            assert time.time() < until
            # The engine's question comes once the bake is over: the stop answers it.
            await wait_for(pilot, lambda: app.state.release.outcome is not None, timeout=90,
                           what="the end of the release")
            assert not isinstance(app.screen, GateScreen)
            decided = [line for line in app.state.log if line.kind is Kind.GATE_DECIDED]
            assert len(decided) == 1 and "reject" in decided[0].text.lower(), decided
        assert (live_tag(fleet, "staging"), live_tag(fleet, "prod-eu-10pct")) == ("v2", "v1")


@story
async def test_abort_during_the_bake_acts_at_once_and_rolls_back(tmp_path) -> None:
    with demo_console(tmp_path) as (fleet, app):
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            until = await _baking_gate(pilot, app, fleet)
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen),
                           what="the abort question")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.state.release.outcome is not None, timeout=90,
                           what="the end of the release")
            assert time.time() < until          # the bake did not run out first
            assert app.state.release.outcome == "aborted"
            assert not logged(app, Kind.GATE_WAITING)
        assert (live_tag(fleet, "staging"), live_tag(fleet, "prod-eu-10pct")) == ("v1", "v1")

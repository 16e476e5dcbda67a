"""The console's own release, steered per cluster (issue 15 item 3): `o` skips the
selected cluster before it starts (recorded `skipped_by_operator`), `t` asks for a
failed cluster to be deployed again once the rest of its wave ended."""

from __future__ import annotations

import pytest

from console.history import Ledger
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.release_form import ReleaseFormScreen
from console.ui.state import Phase

from .test_stories import QUICK_ENGINE, SIZE, live_tag, seed, started
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(120)


async def release(pilot, app: ReleaseConsoleApp, tag: str) -> None:
    """Start a serial release of `tag` through the form."""
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
    await pilot.click("#tag")
    await pilot.press(*tag, "enter")


@story
async def test_o_skips_a_waiting_cluster_and_the_ledger_says_skipped_by_operator(
        console_fleet) -> None:
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    seed(config, "v1")
    fleet.set_faults("staging", readiness_delay=2.0)   # time to press `o` while it rolls
    app = ReleaseConsoleApp(config, status_interval=0, engine_options=QUICK_ENGINE)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await release(pilot, app, "v2")
        await wait_for(pilot, lambda: app.state.clusters["staging"].phase is Phase.ROLLING,
                       what="the first cluster rolling")
        app.fleet.grid.go_to("staging")
        await pilot.press("o")   # started already: refused, nothing changes
        app.fleet.grid.go_to("prod-eu")
        await pilot.press("o")
        await wait_for(pilot, lambda: not app.release_running
                       and app.state.release.outcome is not None, what="the end")
        assert app.state.clusters["prod-eu"].phase is Phase.SKIPPED
        assert app.state.clusters["staging"].phase is Phase.HEALTHY
        await pilot.press("q")
    assert (live_tag(fleet, "staging"), live_tag(fleet, "prod-eu"),
            live_tag(fleet, "prod-us")) == ("v2", "v1", "v2")
    ledger = Ledger.for_config(config)
    try:
        last = ledger.releases()[-1]
    finally:
        ledger.close()
    assert {c.cluster: c.outcome for c in last.clusters}["prod-eu"] == "skipped_by_operator"

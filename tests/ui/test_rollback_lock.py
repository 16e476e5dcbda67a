"""The TUI's rollback key holds the release lease like every action that changes a cluster:
while another console's release holds the cluster, the rollback is refused naming it."""

from __future__ import annotations

import pytest

from console.engine import Engine
from console.locks import ReleaseLock
from console.ui.screens.rollback import RollbackScreen

from .test_stories import console, live_tag, released
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(120)


@story
async def test_the_rollback_key_is_refused_while_another_release_holds_the_cluster(
        console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu"], "v1", "v2")
    # Another console's release holds prod-eu (its lease, renewed in the background).
    other = Engine(config)
    driver = other.driver("prod-eu")
    held = ReleaseLock.for_clusters({"prod-eu": (driver.client, driver.namespace)},
                                    config.app.name, "r-20261201-1200-beef", user="mallory")
    held.acquire()
    try:
        async with console(config) as (app, pilot):
            assert app.fleet.grid.go_to("prod-eu")
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen),
                           what="the confirm")
            await pilot.press("y")
            await wait_for(pilot, lambda: any(
                "is being released by mallory@" in str(n.message) and
                "/r-20261201-1200-beef" in str(n.message) for n in app._notifications),
                what="the refusal naming the holder")
        assert live_tag(fleet, "prod-eu") == "v2"        # untouched
    finally:
        assert held.release() == []
        other.close()

"""The follow screen steers as every screen acts: it posts a message
(`FollowSteerRequested`) and the app asks the followed release's control channel
(`console.ui.steering`) - one call path, not the screen calling the engine itself."""

from __future__ import annotations

import pytest

from console.ui.messages import FollowSteerRequested
from console.ui.screens.follow import FollowScreen

from .test_follow_screen import AT_GATES, header, headless
from .test_stories import SIZE, live_tag, quick_console, started
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(180)


@story
async def test_the_follow_screens_reject_goes_through_the_app_and_stops_the_release(
        console_fleet, tmp_path) -> None:
    config, fleet = console_fleet(["staging", "prod-eu"])
    asked: list[FollowSteerRequested] = []
    app = quick_console(config)
    hook = lambda m: asked.append(m) if isinstance(m, FollowSteerRequested) else None  # noqa: E731
    with headless(config, tmp_path, *AT_GATES) as deploy:
        async with app.run_test(size=SIZE, message_hook=hook) as pilot:
            await started(pilot, app)
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, FollowScreen)
                           and "waits for approval" in header(app), timeout=120,
                           what="the followed release at its gate")
            release_id = app.screen.view.release_id
            await pilot.press("s")
            await wait_for(pilot, lambda: deploy.poll() is not None, timeout=120,
                           what="the release to stop at its gate")
            await wait_for(pilot, lambda: "ended stopped" in header(app), timeout=60,
                           what="the follow screen to show the stop")
            await pilot.press("escape")
            await pilot.press("q")
    assert deploy.returncode == 3, deploy.stderr.read()
    # The hook sees a message at each node it bubbles through: once asked, by the screen.
    posted = list({id(m): m for m in asked}.values())
    assert [(m.release_id, m.action, m.cluster_id, m.rollback) for m in posted] == [
        (release_id, "reject", None, False)]
    assert (live_tag(fleet, "staging"), fleet.get("prod-eu", "apps/deployments", "prod-eu",
                                                   "user-service")) == ("v2", None)

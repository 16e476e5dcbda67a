"""The follow screen steers as every screen acts: it posts a message
(`FollowSteerRequested`) and the app asks the followed release's control channel
(`console.ui.steering`) - one call path, not the screen calling the engine itself."""

from __future__ import annotations

import pytest

from console.ui.messages import FollowSteerRequested

from .test_follow_screen import AT_GATES, follow, header, headless
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
            screen = await follow(pilot, app, "waits for approval",
                                  "the followed release at its gate")
            await pilot.press("s")
            await wait_for(pilot, lambda: deploy.poll() is not None
                           and "ended stopped" in header(app), timeout=120,
                           what="the release to stop at its gate, and the screen to say so")
            release_id = screen.view.release_id
            await pilot.press("q")   # nothing of its own runs: the console quits at once
    assert deploy.returncode == 3, deploy.stderr.read()
    # The hook sees a message at each node it bubbles through: once asked, by the screen.
    posted = list({id(m): m for m in asked}.values())
    assert [(m.release_id, m.action, m.cluster_id, m.rollback) for m in posted] == [
        (release_id, "reject", None, False)]
    assert (live_tag(fleet, "staging"), fleet.get("prod-eu", "apps/deployments", "prod-eu",
                                                   "user-service")) == ("v2", None)

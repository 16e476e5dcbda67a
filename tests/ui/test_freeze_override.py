"""The release form overrides a freeze window as `deploy --override-freeze --reason` does
(issue 15 item 4): with a window open over the whole fleet, a release from the form fails
pre-flight naming it; the override without a reason is refused in the form; with one,
the release goes through, and the ledger keeps the reason and who gave it - the name the
cluster confirms (SelfSubjectReview)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from textual.widgets import Input

from console.config import load
from console.history import Ledger
from console.ui.screens.release_form import ReleaseFormScreen

from .test_stories import console, live_tag, released
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(180)


def with_window_now(config):
    """A dated window around the real time (the engine process reads the real clock)."""
    now = datetime.now(timezone.utc)

    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    config.path.write_text(config.path.read_text() + (
        "freeze:\n  - name: change-freeze\n"
        f"    from: {stamp(now - timedelta(hours=1))}\n"
        f"    to: {stamp(now + timedelta(hours=1))}\n"
        "    reason: quarter-end audit\n"))
    return load(config.path)


@story
async def test_the_form_overrides_a_freeze_window_with_a_reason(console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu", "prod-us"], "v1")
    config = with_window_now(config)
    ids = ("staging", "prod-eu", "prod-us")
    async with console(config) as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        form = app.screen
        await pilot.click("#tag")
        await pilot.press("v", "2", "enter")
        await wait_for(pilot, lambda: app.state.release is not None
                       and app.state.release.outcome is not None, timeout=90,
                       what="pre-flight to refuse the frozen release")
        assert app.state.release.outcome == "preflight_failed"
        assert [live_tag(fleet, c) for c in ids] == ["v1"] * 3
        # The override asked without a reason: refused in the form, nothing starts.
        refused_id = app.state.release.release_id
        await pilot.click("#override-freeze")
        await pilot.click("#tag")
        await pilot.press("enter")
        await pilot.pause()
        assert form.query_one("#override-reason", Input).has_focus
        assert app.state.release.release_id == refused_id and not app.release_running
        await pilot.press(*"INC-42 hotfix", "enter")
        await wait_for(pilot, lambda: app.state.release.release_id != refused_id
                       and app.state.release.outcome is not None, timeout=120, what="the end")
        assert app.state.release.outcome == "ok"
        rid = app.state.release.release_id
        await pilot.press("q")
    assert [live_tag(fleet, c) for c in ids] == ["v2"] * 3
    ledger = Ledger.for_config(config)
    try:
        last = ledger.releases()[-1]
    finally:
        ledger.close()
    assert last.id == rid
    override = dict(last.freeze_override or {})
    assert override["reason"] == "INC-42 hotfix"
    # The control channel's cluster (the first target in sorted order, where `control`
    # names the person too) names the credentials that gave it - not the first in the
    # plan's order (staging).
    assert override["by"] == "system:serviceaccount:kube-system:prod-eu-admin"
    assert override["confirmed"] is True
    assert [w["name"] for w in override["windows"]] == ["change-freeze"]

"""The console wires its engine the one way headless commands do (`console.session`): its
engine's session reconciles what a killed console left open and names who acts - the
console calls neither itself."""

from __future__ import annotations


import pytest

from console.history import Ledger
from tests.faults.test_killed_console import killed_mid_release

from .test_stories import console
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(180)


def finished(config, release_id: str) -> bool:
    ledger = Ledger.for_config(config)
    try:
        [release] = ledger.releases(ids={release_id})
        return release.finished
    finally:
        ledger.close()


@story
async def test_the_console_reconciles_and_names_the_operator_through_its_session(
        console_fleet, monkeypatch):
    config, _fleet = console_fleet(["a", "b"])
    killed_mid_release(config.path)
    assert not finished(config, "r-killed")
    # Who acts, as the engine's session finds it (the child process inherits this).
    monkeypatch.setenv("BUILD_USER_ID", "ci-bot")
    async with console(config) as (app, pilot):
        assert finished(config, "r-killed")         # before the console read the ledger
        assert app.operator == "ci-bot"
        await wait_for(pilot, lambda: any("r-killed was left unfinished" in str(n.message)
                                          for n in app._notifications), what="the notice")

"""The console's own release, steered per cluster (issue 15 item 3): `o` skips the
selected cluster before it starts (recorded `skipped_by_operator`), `t` asks for a
failed cluster to be deployed again once the rest of its wave ended; and steered from
outside (item 2): `release-console control ID pause` as a real process holds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from textual.widgets import Static

from console.history import Ledger
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.history import HistoryScreen
from console.ui.screens.release_form import ReleaseFormScreen
from console.ui.state import Phase

from .test_stories import console, ended, live_tag, open_form_and_start, released, steering
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(120)


async def release(pilot, app: ReleaseConsoleApp, tag: str) -> None:
    """Start a serial release of `tag` through the form."""
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
    await pilot.click("#tag")
    await pilot.press(*tag, "enter")


@asynccontextmanager
async def staging_rolling(console_fleet
                          ) -> AsyncIterator[tuple[Any, Any, ReleaseConsoleApp, Any]]:
    """The console on staging, prod-eu and prod-us at v1 with a serial release of v2
    started through the form, once its first cluster rolls; (config, fleet, app, pilot).
    Staging's v2 pods stay not Ready (`hold_ready`) until the story lets them
    (`fleet.set_faults("staging", hold_ready=[])`) once its action was taken: a fixed
    2-3 s rollout was the window to act in, too short on a loaded machine."""
    config, fleet = released(console_fleet, ["staging", "prod-eu", "prod-us"], "v1")
    fleet.set_faults("staging", hold_ready=["v2"])
    async with console(config) as (app, pilot):
        await release(pilot, app, "v2")
        await wait_for(pilot, lambda: app.state.clusters["staging"].phase is Phase.ROLLING,
                       what="the first cluster rolling")
        yield config, fleet, app, pilot


async def engine_took(app: ReleaseConsoleApp) -> None:
    """Once a call sent after them returns, the engine process has taken the keys'
    control messages (its pipe is read in order; controls are handled as they come)."""
    import asyncio
    await asyncio.to_thread(app.engine().releases)


@story
async def test_o_skips_a_waiting_cluster_and_the_ledger_says_skipped_by_operator(
        console_fleet) -> None:
    async with staging_rolling(console_fleet) as (config, fleet, app, pilot):
        app.fleet.grid.go_to("staging")
        await pilot.press("o")   # started already: refused, nothing changes
        app.fleet.grid.go_to("prod-eu")
        await pilot.press("o")
        await engine_took(app)
        fleet.set_faults("staging", hold_ready=[])
        await ended(pilot, app)
        assert app.state.clusters["prod-eu"].phase is Phase.SKIPPED
        assert app.state.clusters["staging"].phase is Phase.HEALTHY
        # The history shows the skip as skipped (it drew the ledger's skipped_by_operator
        # with the failed glyph), the newest release selected.
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen)
                       and app.screen.releases, what="the ledger")
        shown = str(app.screen.query_one("#release-detail", Static).content)
        line = next(t for t in shown.splitlines() if t.strip().startswith("prod-eu"))
        assert f"{Phase.SKIPPED.glyph} skipped by operator" in line, line
        await pilot.press("escape")
        await pilot.press("q")
    assert (live_tag(fleet, "staging"), live_tag(fleet, "prod-eu"),
            live_tag(fleet, "prod-us")) == ("v2", "v1", "v2")
    ledger = Ledger.for_config(config)
    try:
        last = ledger.releases()[-1]
    finally:
        ledger.close()
    assert {c.cluster: c.outcome for c in last.clusters}["prod-eu"] == "skipped_by_operator"


async def control(config, *args: str) -> tuple[int, str, str]:
    """`release-console control ...` as a real process (awaited: the UI keeps running)."""
    import asyncio
    import sys
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console", "control", "--config", str(config.path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    return proc.returncode, out.decode(), err.decode()


@story
async def test_a_release_started_in_the_console_is_paused_and_resumed_by_control(
        console_fleet) -> None:
    # The console's own release listens on the control channel like a headless deploy:
    # `release-console control ID pause` from another terminal holds its new starts.
    async with staging_rolling(console_fleet) as (config, fleet, app, pilot):
        rid = app.state.release.release_id
        code, out, err = await control(config, rid, "pause")
        assert code == 0, err
        fleet.set_faults("staging", hold_ready=[])   # acknowledged: the pause is taken
        assert "system:serviceaccount:kube-system:" in out      # the cluster's word
        await wait_for(pilot, lambda: app.state.release.paused, what="the console shows paused")
        await wait_for(pilot, lambda: app.state.clusters["staging"].phase is Phase.HEALTHY,
                       timeout=60, what="the running cluster to finish")
        # A full round trip through the release later, nothing new has started.
        code, _out, err = await control(config, rid, "pause")
        assert code == 2 and "paused already" in err
        assert app.state.clusters["prod-eu"].phase is Phase.WAITING
        assert live_tag(fleet, "prod-eu") == "v1"
        code, _out, err = await control(config, rid, "resume")
        assert code == 0, err
        await ended(pilot, app, 60)
        assert app.state.release.outcome == "ok"
        await pilot.press("q")
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v2"] * 3
    actions = [(s["action"], s["by"]) for s in steering(config, rid)]
    admin = "system:serviceaccount:kube-system:prod-eu-admin"   # the control lease's cluster
    assert ("pause", admin) in actions and ("resume", admin) in actions, actions


@story
async def test_t_retries_a_failed_cluster_once_the_rest_of_its_wave_ended(console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu", "prod-us"], "v1")
    fleet.set_faults("prod-eu", never_pull=["v2"])
    fleet.set_faults("prod-us", hold_ready=["v2"])   # the wave still runs after `t`
    async with console(config) as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        await pilot.click("#strategy-parallel")
        await pilot.click("#max-parallel")
        await pilot.press("1")
        await pilot.click("#max-failures")
        await pilot.press("1")
        await pilot.click("#tag")
        await pilot.press("v", "2", "enter")
        eu = app.state.clusters["prod-eu"]
        await wait_for(pilot, lambda: eu.phase in (Phase.FAILED, Phase.ROLLED_BACK),
                       timeout=60, what="prod-eu failed")
        fleet.set_faults("prod-eu", never_pull=[])      # the operator fixed what broke
        app.fleet.grid.go_to("staging")
        await pilot.press("t")                           # healthy: nothing to retry
        app.fleet.grid.go_to("prod-eu")
        await pilot.press("t")
        await engine_took(app)
        assert app.state.clusters["prod-us"].phase is not Phase.HEALTHY   # its wave runs on
        fleet.set_faults("prod-us", hold_ready=[])
        await wait_for(pilot, lambda: eu.phase in (Phase.ROLLING, Phase.HEALTHY), timeout=60,
                       what="prod-eu deployed again")
        # Events arrive in order: prod-us ended before prod-eu started again.
        assert app.state.clusters["prod-us"].phase is Phase.HEALTHY
        await ended(pilot, app, 60)
        assert eu.phase is Phase.HEALTHY
        assert app.state.release.outcome == "ok"
        rid = app.state.release.release_id
        await pilot.press("q")
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v2"] * 3
    ledger = Ledger.for_config(config)
    try:
        last = ledger.releases()[-1]
        retries = [s for s in ledger.steering(rid) if s["action"] == "retry"]
    finally:
        ledger.close()
    assert last.id == rid and last.outcome == "ok"
    assert {c.cluster: c.outcome for c in last.clusters}["prod-eu"] == "healthy"
    assert [s["cluster"] for s in retries] == ["prod-eu"]


@story
async def test_the_consoles_own_gate_is_approved_by_control_from_outside(console_fleet) -> None:
    # A canary started in the console waits at its gate with the question on screen;
    # `control ID approve` from another terminal decides it (the release goes on, the
    # question closes), and the ledger names the cluster-confirmed approver.
    from console.ui.screens.gate import GateScreen
    config, fleet = released(console_fleet, ["staging", "prod-eu", "prod-us"], "v1")
    async with console(config) as (app, pilot):
        await open_form_and_start(pilot, app, "canary", "v2")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen)
                       and app.screen.request is not None, timeout=90, what="the gate question")
        rid = app.state.release.release_id
        code, out, err = await control(config, rid, "approve")
        assert code == 0, err
        await wait_for(pilot, lambda: not any(isinstance(s, GateScreen) for s in app.screen_stack),
                       timeout=30, what="the question to close")
        await ended(pilot, app, 90)
        assert app.state.release.outcome == "ok"
        await pilot.press("q")
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v2"] * 3
    approvals = [s["by"] for s in steering(config, rid) if s["action"] == "gate_approve"]
    assert approvals == ["system:serviceaccount:kube-system:prod-eu-admin"]

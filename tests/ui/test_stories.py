"""The console driven like a person would, against the local fleet and the real engine.

Each story starts simulated clusters, opens `ReleaseConsoleApp` headless with
`App.run_test`, presses keys with the `Pilot`, and checks both what the screen shows and
what the clusters run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest
from console.history import EventLedger, Ledger
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.confirm import ConfirmScreen
from console.ui.screens.detail import DetailScreen
from console.ui.screens.gate import GateScreen
from console.ui.screens.help import HelpScreen
from console.ui.screens.history import HistoryScreen
from console.ui.screens.release_form import ReleaseFormScreen
from console.ui.screens.rollback import RollbackScreen
from console.ui.state import Phase

from .ui_helpers import repainted, story, wait_for

pytestmark = pytest.mark.timeout(120)

SIZE = (120, 36)
# The real engine, with a short fail-fast grace (a never-pulling image fails in ~1 s); a
# refused connection fails at once anyway, and a busy test machine gets time to answer.
QUICK_ENGINE = {"grace": 1.0, "status_timeout": 10.0}


def quick_console(config, **options: Any) -> ReleaseConsoleApp:
    """The console as the stories run it: no periodic status reading, the quick engine;
    `options` as `ReleaseConsoleApp` takes them (e.g. `operator`)."""
    return ReleaseConsoleApp(config, status_interval=0, engine_options=QUICK_ENGINE, **options)


def seed(config, tag: str, clusters: str = "") -> None:
    """Release `tag` headless (as CI would), recorded in the ledger."""
    ledger = Ledger.for_config(config)
    try:
        engine = Engine(config, listeners=[EventLedger(ledger)])
        result = engine.run(ReleaseRequest(tag=tag, clusters=clusters, strategy="parallel"),
                            lambda _gate: GateAnswer(GateDecision.APPROVE))
        engine.close()
    finally:
        ledger.close()
    assert result.outcome == "ok", (result.message, result.preflight and
                                    result.preflight.failures)


def released(console_fleet, ids: list[str], *tags: str):
    """`console_fleet(ids)` where each of `tags` was released (and recorded) in turn."""
    config, fleet = console_fleet(ids)
    for tag in tags:
        seed(config, tag)
    return config, fleet


def live_tag(fleet, cluster: str) -> str:
    """The image tag the simulated cluster's Deployment runs."""
    deployment = fleet.get(cluster, "apps/deployments", cluster, "user-service")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image.split("@")[0].rpartition(":")[2]


def header_text(app: ReleaseConsoleApp) -> str:
    """What the release header says, as plain text."""
    header = app.fleet.query_one("#release-header", Static).content
    return " ".join(line.plain for line in header.renderables)


def grid_cell(app: ReleaseConsoleApp, cluster: str, column: str) -> str:
    """The text a grid cell shows."""
    return app.fleet.grid.cell_text(cluster, column)


async def started(pilot, app: ReleaseConsoleApp) -> None:
    """Wait for the engine and the first reading of every cluster."""
    # As long as the console itself waits for it (`EngineProcess.wait_ready`, 120 s): a
    # loaded machine starts the engine process (niced) slowly.
    await wait_for(pilot, app._engine_ready.is_set, timeout=120, what="the engine")
    await app.workers.wait_for_complete()
    await repainted(pilot)


@asynccontextmanager
async def console(config, **options: Any) -> AsyncIterator[tuple[ReleaseConsoleApp, Any]]:
    """`quick_console(config, **options)` run headless at the stories' size, from its
    first status reading on; (app, pilot)."""
    app = quick_console(config, **options)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        yield app, pilot


async def ended(pilot, app: ReleaseConsoleApp, timeout: float = 30.0) -> None:
    """Wait until the console's release has ended (its outcome shown, nothing running)."""
    await wait_for(pilot, lambda: not app.release_running
                   and app.state.release.outcome is not None, timeout=timeout, what="the end")


def steering(config, release_id: str) -> list[dict]:
    """The ledger's steering records of `release_id`."""
    ledger = Ledger.for_config(config)
    try:
        return ledger.steering(release_id)
    finally:
        ledger.close()


async def open_form_and_start(pilot, app, strategy: str, tag: str, targets: str = "") -> None:
    """`n`, choose the strategy, type targets and tag, `enter`."""
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
    if targets:
        await pilot.click("#targets")
        await pilot.press(*targets)
    await pilot.click(f"#strategy-{strategy}")
    await pilot.click("#tag")
    await pilot.press(*tag)
    form = app.screen
    assert form.problem is None, form.problem
    await pilot.press("enter")


@story
async def test_canary_release_from_the_form_through_two_gates(console_fleet) -> None:
    config, fleet = console_fleet()
    async with console(config, operator="alice") as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        # The fleet file was rewritten into a temporary directory (as the demo does): the
        # default tag still comes from the checkout its manifests live in.
        await wait_for(pilot, lambda: str(app.screen.query_one("#tag").placeholder)
                       .startswith("default: "), what="the default tag")
        await pilot.click("#strategy-canary")
        await pilot.click("#tag")
        await pilot.press(*"v2")
        # The plan is on screen before anything starts: 4 clusters, 3 waves, 2 gates.
        plan = app.screen.query_one("#plan", DataTable)
        assert plan.row_count == 4
        assert [plan.get_row_at(i)[2] for i in range(4)] == ["1", "2", "3", "3"]
        await pilot.press("enter")

        for finished in ("staging", "prod-eu-10pct"):
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen)
                           and bool(app.screen.query("#gate-results"))
                           and app.screen.query_one("#gate-results", DataTable).row_count > 0,
                           what="a gate with the wave's results")
            results = app.screen.query_one("#gate-results", DataTable)
            assert results.get_row_at(results.row_count - 1)[0].startswith(finished)
            assert "✔ healthy" in str(results.get_row_at(results.row_count - 1)[1])
            # Every event before the gate arrived before the question: the finished
            # clusters' replicas read 2/2 here as in the grid (they read 0/2 when the
            # question overtook the engine's last batch of events).
            assert [results.get_row_at(i)[3] for i in range(results.row_count)] == \
                ["2/2"] * results.row_count
            await pilot.press("a")
        await wait_for(pilot, lambda: app.state.release.outcome is not None, what="the end")
        await repainted(pilot)

        assert app.state.release.outcome == "ok"
        for cid in config.ids:
            assert grid_cell(app, cid, "phase") == "✔ healthy"
            assert grid_cell(app, cid, "live").startswith("v2")
            assert live_tag(fleet, cid) == "v2"
        await wait_for(pilot, lambda: "4 healthy" in header_text(app), what="the header")
    # The ledger recorded the console's release, with the operator.
    ledger = Ledger.for_config(config)
    try:
        (release,) = ledger.releases()
        assert (release.version, release.strategy, release.outcome, release.operator) == \
            ("v2", "canary", "ok", "alice")
    finally:
        ledger.close()


@story
async def test_a_failing_cluster_turns_failed_then_rolled_back(console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu", "prod-us"], "v1")
    fleet.set_faults("prod-us", never_pull=["v2"])
    async with console(config) as (app, pilot):
        assert grid_cell(app, "prod-us", "live").startswith("v1")
        await open_form_and_start(pilot, app, "parallel", "v2")
        await wait_for(pilot, lambda: app.state.release is not None
                       and app.state.release.outcome is not None, what="the end", timeout=60)
        await repainted(pilot)

        kinds = [line.kind.value for line in app.state.timeline("prod-us")]
        assert kinds.index("cluster_failed") < kinds.index("cluster_rolled_back")
        assert grid_cell(app, "prod-us", "phase") == "↩ rolled back"
        assert grid_cell(app, "prod-us", "live").startswith("v1")
        assert grid_cell(app, "staging", "phase") == "✔ healthy"
        assert grid_cell(app, "prod-eu", "phase") == "✔ healthy"
        assert app.state.release.outcome == "failed"
    assert live_tag(fleet, "prod-us") == "v1"
    assert live_tag(fleet, "prod-eu") == "v2"


@story
async def test_one_key_rollback_never_goes_forward_to_a_failed_version(console_fleet) -> None:
    # prod-eu: v1, v2, then v3 failed there and was rolled back to v2 - kubectl's previous
    # revision is v3. prod-us got v0 past the ledger (the engine alone): no record.
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"], seed=14)
    seed(config, "v1", "staging,prod-eu")
    seed(config, "v2", "staging,prod-eu")
    fleet.set_faults("prod-eu", never_pull=["v3"])
    ledger = Ledger.for_config(config)
    try:
        engine = Engine(config, listeners=[EventLedger(ledger)], grace=0.5)
        failed = engine.run(ReleaseRequest(tag="v3", clusters="prod-eu", strategy="parallel"),
                            lambda _gate: GateAnswer(GateDecision.APPROVE))
        engine.close()
    finally:
        ledger.close()
    assert [c.outcome for c in failed.clusters] == ["rolled_back"]
    unrecorded = Engine(config)
    try:
        unrecorded.run(ReleaseRequest(tag="v0", clusters="prod-us", strategy="parallel"),
                       lambda _gate: GateAnswer(GateDecision.APPROVE))
    finally:
        unrecorded.close()
    assert live_tag(fleet, "prod-eu") == "v2"
    async with console(config) as (app, pilot):
        assert app.fleet.grid.go_to("prod-eu")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen), what="the confirm")
        versions = str(app.screen.query_one("#rollback-versions", Static).render())
        assert versions.split() == ["v2", "→", "v1"]         # before: v2 → v3 (the failed one)
        why = str(app.screen.query_one("#rollback-why", Static).render())
        assert "before v2 arrived" in why
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.clusters["prod-eu"].phase is Phase.ROLLED_BACK,
                       what="the rollback")
        assert live_tag(fleet, "prod-eu") == "v1"
        # No ledger record of what prod-us runs: refused, no dialog, nothing touched.
        assert app.fleet.grid.go_to("prod-us")
        await pilot.press("r")
        await wait_for(pilot, lambda: any("rollback refused" in str(n.message) and
                                          "no record" in str(n.message)
                                          for n in app._notifications), what="the refusal")
        assert not isinstance(app.screen, RollbackScreen)
    assert live_tag(fleet, "prod-us") == "v0"


@story
async def test_one_key_rollback_of_a_healthy_cluster(console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu"], "v1", "v2")
    async with console(config) as (app, pilot):
        assert app.fleet.grid.go_to("prod-eu")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen), what="the confirm")
        dialog = app.screen
        assert dialog.query_one("#rollback").border_title == "Roll back prod-eu?"
        versions = str(dialog.query_one("#rollback-versions", Static).render())
        assert "v2" in versions and "v1" in versions and versions.index("v2") < versions.index("v1")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.clusters["prod-eu"].phase is Phase.ROLLED_BACK,
                       what="the rollback")
        await repainted(pilot)
        assert grid_cell(app, "prod-eu", "phase") == "↩ rolled back"
        assert grid_cell(app, "prod-eu", "live").startswith("v1")
        assert grid_cell(app, "staging", "live").startswith("v2")
    assert live_tag(fleet, "prod-eu") == "v1"
    assert live_tag(fleet, "staging") == "v2"


@story
async def test_an_unreachable_cluster_shows_unreachable_while_the_others_work(console_fleet) -> None:
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    fleet.kill("prod-us")
    async with console(config) as (app, pilot):
        assert grid_cell(app, "prod-us", "phase") == "✖ unreachable"
        assert "connection refused" in grid_cell(app, "prod-us", "note")

        # Releasing to every cluster stops at pre-flight, which names the dead one.
        await open_form_and_start(pilot, app, "parallel", "v2")
        form = app.screen
        await wait_for(pilot, lambda: app.state.release is not None
                       and app.state.release.outcome is not None, what="pre-flight to fail")
        await wait_for(pilot, lambda: not form.started, what="the form to reopen")

        def failed_lines() -> list[str]:
            return [str(line.text) for line in form.query_one("#preflight").lines
                    if "prod-us" in str(line.text) and "✘" in str(line.text)]

        # The run call can end before its last event batch reaches the form: wait for it.
        await wait_for(pilot, lambda: bool(failed_lines()), what="prod-us's pre-flight line")
        assert len(failed_lines()) == 1   # one cause, one line (no "not checked" repeats)
        assert fleet.get("staging", "apps/deployments", "staging", "user-service") is None
        assert grid_cell(app, "prod-us", "phase") == "✖ unreachable"

        # Without it, the others roll out while its row keeps saying why it is out.
        await pilot.click("#targets")
        await pilot.press(*"!prod-us", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, type(form)), what="pre-flight")
        grid = app.fleet.grid
        grid.go_to("staging")
        await pilot.press("down")  # the console answers keys while a cluster is down
        assert grid.cursor_cluster == "prod-eu"
        assert grid_cell(app, "prod-us", "phase") == "✖ unreachable"
        await wait_for(pilot, lambda: app.state.release.outcome is not None, what="the end")
        await repainted(pilot)
        assert grid_cell(app, "staging", "phase") == "✔ healthy"
        assert grid_cell(app, "prod-eu", "phase") == "✔ healthy"
        assert grid_cell(app, "prod-us", "phase") == "✖ unreachable"
    assert live_tag(fleet, "staging") == "v2"


@story
async def test_help_lists_every_key_in_words(console_fleet) -> None:
    config, _fleet = console_fleet(["staging"])
    app = quick_console(config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = str(app.screen.query_one("#help-text", Static).render())
        for key, words in (("n", "new release"), ("r", "rollback"), ("p", "pause"),
                           ("/", "filter"), ("space", "mark"), ("enter", "details"),
                           ("h", "history"), (":", "jump"), ("?", "help"),
                           ("ctrl+p", "command palette"), ("q", "quit"),
                           ("a", "approve"), ("s", "stop here"), ("x", "abort + roll back"),
                           ("j", "down"), ("k", "up"), ("g", "first"), ("G", "last")):
            assert any(line.strip().startswith(key) and words in line
                       for line in text.splitlines()), f"{key} {words!r} not in help"
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@story
async def test_marks_filter_and_jump(console_fleet) -> None:
    config, _fleet = console_fleet()
    async with console(config) as (app, pilot):
        grid = app.fleet.grid
        # `/` filters by glob, group or id; `esc` clears.
        await pilot.press("slash", *"prod-eu*")
        await wait_for(pilot, lambda: grid.shown == ["prod-eu-10pct", "prod-eu"],
                       what="the filter")
        await pilot.press("enter", "space")  # back to the grid; mark the first shown
        await pilot.press("escape")
        assert grid.shown == list(config.ids)
        grid.go_to("prod-us")
        await pilot.press("space")
        assert app.state.marked() == ["prod-eu-10pct", "prod-us"]
        assert "✓" in grid.cell_text("prod-us", "cluster")
        # The marked clusters are the new release's targets.
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        form = app.screen
        assert form.query_one("#targets").value == "prod-eu-10pct, prod-us"
        assert "2 clusters (2 production" in str(form.query_one("#targets-preview").render())
        await pilot.press("escape")
        # `:` jumps to a cluster's detail (a unique prefix is enough).
        await pilot.press("colon", *"prod-u", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        assert app.screen.cluster_id == "prod-us"


@story
async def test_the_forms_back_and_start_buttons(console_fleet) -> None:
    config, fleet = console_fleet(["staging"])
    async with console(config) as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        await pilot.click("#back")
        await wait_for(pilot, lambda: not isinstance(app.screen, ReleaseFormScreen),
                       what="the form to close")
        assert app.state.release is None
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        await pilot.click("#tag")
        await pilot.press(*"v2")
        await pilot.click("#start")
        await wait_for(pilot, lambda: app.state.release is not None
                       and app.state.release.outcome is not None, what="the release to end")
        assert app.state.release.outcome == "ok"
    assert live_tag(fleet, "staging") == "v2"


@story
async def test_pause_resume_and_quit_while_a_release_runs(console_fleet) -> None:
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    fleet.set_faults("staging", readiness_delay=2.0)  # time to press `p` while it rolls
    async with console(config) as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        await pilot.click("#tag")
        await pilot.press(*"v2", "enter")  # serial: one cluster after the other
        await wait_for(pilot, lambda: app.state.clusters["staging"].phase is Phase.ROLLING,
                       what="the first cluster rolling")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.state.release.paused, what="the paused event")
        await wait_for(pilot, lambda: app.state.clusters["staging"].phase is Phase.HEALTHY,
                       what="the running cluster to finish")
        # The engine process says when it holds the next cluster back: from then on
        # nothing may start until the resume.
        await wait_for(pilot, lambda: app.control.holding.is_set(),
                       what="the engine holding the next cluster back")
        assert app.state.clusters["prod-eu"].phase is Phase.WAITING  # nothing new started
        await wait_for(pilot, lambda: "paused" in header_text(app), what="the header")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.state.clusters["prod-eu"].phase is not Phase.WAITING,
                       what="the release to resume")
        # `q` asks first while a release runs; `n` stays.
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        assert app.is_running
        # The engine's last event batch may land just after the run call returns.
        await ended(pilot, app)
        assert app.state.release.outcome == "ok"
        await pilot.press("q")
    assert app.return_code == 0
    assert live_tag(fleet, "prod-us") == "v2"


@story
async def test_detail_and_rollback_of_a_whole_release_from_history(console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu"], "v1", "v2")
    async with console(config) as (app, pilot):
        # Cluster detail: pods and revisions read from the cluster.
        app.fleet.grid.go_to("staging")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen)
                       and app.screen.detail is not None, what="the detail")
        assert app.screen.query_one("#pods", DataTable).row_count == 2
        revisions = app.screen.query_one("#revisions", DataTable)
        assert [revisions.get_row_at(i)[1] for i in range(revisions.row_count)] == ["v2", "v1"]
        await pilot.press("escape")
        # History: the newest release first; `r` rolls back every cluster it reached.
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen)
                       and len(app.screen.releases) == 2, what="the ledger")
        ledger = app.screen.query_one("#ledger", DataTable)
        assert ledger.get_row_at(0)[3] == "v2"
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: all(app.state.clusters[c].phase is Phase.ROLLED_BACK
                                          for c in ("staging", "prod-eu")), what="rollbacks")
    assert live_tag(fleet, "staging") == "v1"
    assert live_tag(fleet, "prod-eu") == "v1"


@story
async def test_abort_at_the_gate_rolls_back_what_the_release_reached(console_fleet) -> None:
    config, fleet = released(console_fleet, ["staging", "prod-eu"], "v1")
    async with console(config) as (app, pilot):
        await open_form_and_start(pilot, app, "canary", "v2")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="the gate")
        # Aborting rolls back: the console asks first, and `n` keeps the gate open.
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="the gate again")
        assert app.state.release.outcome is None and app.state.release.gate_waiting
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.release.outcome is not None, what="the end")
        await repainted(pilot)
        assert app.state.release.outcome == "aborted"
        assert grid_cell(app, "staging", "phase") == "↩ rolled back"
        assert grid_cell(app, "prod-eu", "phase") == "» skipped"
    assert live_tag(fleet, "staging") == "v1"
    assert live_tag(fleet, "prod-eu") == "v1"


@story
async def test_drift_is_marked_and_the_palette_finds_screens(console_fleet) -> None:
    config, _fleet = released(console_fleet, ["staging", "prod-eu"], "v1")
    # Someone changes prod-eu outside the console (no ledger record).
    engine = Engine(config)
    engine.run(ReleaseRequest(tag="v1-hotfix", clusters="prod-eu"),
               lambda _gate: GateAnswer(GateDecision.APPROVE))
    engine.close()
    async with console(config) as (app, pilot):
        assert grid_cell(app, "prod-eu", "live") == "v1-hotfix ≠"
        assert grid_cell(app, "staging", "live") == "v1"
        await pilot.press("ctrl+p")
        await pilot.press(*"History")
        await wait_for(pilot, lambda: app.screen.query("CommandList")
                       and app.screen.query_one("CommandList").option_count > 0,
                       what="the palette's matches")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history")

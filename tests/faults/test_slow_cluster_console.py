"""A slow cluster (3 s per request) during a release from the console: the other clusters
turn healthy on screen while it is still rolling out, and the console keeps answering keys."""

from __future__ import annotations

import asyncio
import time

from console.events import Kind
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.help import HelpScreen
from console.ui.screens.release_form import ReleaseFormScreen
from tests.ui.ui_helpers import wait_for


async def drive(w) -> dict:
    """Start a parallel release from the form, slow one cluster down once it runs, and
    time the screen's answers to keys meanwhile."""
    app = ReleaseConsoleApp(w.config, status_interval=0, operator="alice",
                            engine_options={"grace": 1.0, "status_timeout": 10.0})
    seen: dict = {"key_answers": []}
    async with app.run_test(size=(140, 40)) as pilot:
        async def until(predicate, what: str, timeout: float = 60.0) -> float:
            """Wait for `predicate` (the shared loop); the seconds it took."""
            start = time.monotonic()
            await wait_for(pilot, predicate, timeout, what=what)
            return time.monotonic() - start

        await until(app._engine_ready.is_set, "the engine")
        await app.workers.wait_for_complete()
        # Its pods take 8 s to be ready, so it is still rolling out when the latency comes:
        # with few round trips per rollout, a 0.5 s rollout could end before the UI has
        # shown its start (it failed that way on a quiet machine).
        w.fleet.set_faults("slow", readiness_delay=8.0)
        await pilot.press("n")
        await until(lambda: isinstance(app.screen, ReleaseFormScreen), "the form")
        await pilot.click("#strategy-parallel")
        await pilot.click("#tag")
        await pilot.press(*"v2")
        await pilot.press("enter")
        await until(lambda: any(line.kind is Kind.CLUSTER_STARTED
                                for line in app.state.timeline("slow")), "the slow one's start")
        w.fleet.set_faults("slow", latency=3.0)
        # While the slow cluster rolls out: the fast ones finish, keys are answered.
        await until(lambda: all(app.fleet.grid.cell_text(c, "phase") == "✔ healthy"
                                for c in ("a", "b")), "a and b healthy", timeout=30)
        seen["slow_phase_when_others_done"] = app.fleet.grid.cell_text("slow", "phase")
        for _ in range(3):
            await pilot.press("question_mark")
            seen["key_answers"].append(await until(
                lambda: isinstance(app.screen, HelpScreen), "the help screen", timeout=5))
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, HelpScreen), "help closed", 5)
        await until(lambda: app.state.release.outcome is not None, "the end", timeout=90)
        seen["outcome"] = app.state.release.outcome
    return seen


def test_slow_cluster_neither_slows_the_others_nor_freezes_the_console(world):
    w = world(["a", "b", "slow"], readiness_delay=0.5, jitter=0.0, replicas=1)
    try:
        seen = asyncio.run(drive(w))
    finally:
        w.fleet.set_faults("slow", latency=0.0)
    assert seen["outcome"] == "ok"
    assert seen["slow_phase_when_others_done"] != "✔ healthy"
    # Below the slow cluster's 3 s per request: a console waiting on it would miss this
    # bound; the margin over the usual ~0.1 s is for a loaded CI machine.
    assert max(seen["key_answers"]) < 2.5, seen["key_answers"]
    assert w.version("slow") == "v2"

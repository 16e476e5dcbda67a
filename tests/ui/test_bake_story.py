"""Issue 14's bake, as an operator in `release-console demo` lives it: the demo fleet
(the repository's clusters.yaml, served by the simulator as `demo` serves it) with
`bake: 20s` on its canary, the console (`App.run_test`) and the real engine.

While a wave bakes, the seconds left tick down in the header, in the grid (NOTE of each
baking cluster) and in the gate that waits for the bake - shown at once, its keys
refused until the engine asks, which is only once the bake is over. Then the 10% canary's
pods start crash-looping during its bake (the simulator's crash fault, set once the bake
began): it fails there, is rolled back, and the release ends without touching the rest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from console.config import load
from console.events import Kind
from console.sim import SimFleet
from console.sim.fleetfile import read_yaml
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.gate import GateScreen
from console.ui.state import Phase

from .test_stories import QUICK_ENGINE, SIZE, grid_cell, header_text, live_tag, \
    open_form_and_start, seed, started
from .ui_helpers import repainted, story, wait_for

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
BAKE = 20.0
LEFT = re.compile(r"(\d+):(\d\d) left")


def demo_fleet_file(directory: Path) -> Path:
    """The demo's clusters.yaml with `bake: 20s` on its canary; only the ledger moves
    into `directory` (and the manifests path becomes absolute for the copy)."""
    doc = read_yaml(ROOT / "clusters.yaml")
    doc["strategies"]["canary"]["bake"] = "20s"
    doc["app"]["manifests"] = str(ROOT / doc["app"]["manifests"])
    doc["app"]["history"]["path"] = str(directory / "history")
    path = directory / "clusters.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextmanager
def demo_console(directory: Path) -> Iterator[tuple[SimFleet, ReleaseConsoleApp]]:
    """The demo fleet of `demo_fleet_file(directory)` served, staging and prod-eu-10pct
    at v1, and a console (alice, quick engine) on it, not started yet; the fleet stops
    after."""
    source = demo_fleet_file(directory)
    fleet = SimFleet.from_config(source).start()
    try:
        config = load(fleet.write_kubeconfigs(directory / "kube", config_path=source))
        seed(config, "v1", clusters="staging,prod-eu-10pct")
        yield fleet, ReleaseConsoleApp(config, status_interval=0, operator="alice",
                                       engine_options=QUICK_ENGINE)
    finally:
        fleet.stop()


def seconds_left(text: str) -> int:
    """The countdown a text shows (`0:17 left` -> 17)."""
    found = LEFT.search(text)
    assert found, f"no countdown in {text!r}"
    return int(found[1]) * 60 + int(found[2])


def gate_text(app: ReleaseConsoleApp) -> str:
    """What the gate on screen says: its title and its bake line."""
    screen = app.screen
    assert isinstance(screen, GateScreen)
    box = screen.query_one("#gate")
    return f"{box.border_title} {screen.query_one('#gate-bake').content}"


def drawn_note(app: ReleaseConsoleApp, cluster: str) -> str:
    """The NOTE the grid draws for `cluster` now (its row as cached until repainted)."""
    return app.fleet.grid._cells_of(cluster)[-1].plain


def logged(app: ReleaseConsoleApp, kind: Kind) -> list[float]:
    """When the console saw each event of `kind` (engine timestamps)."""
    return [line.ts for line in app.state.log if line.kind is kind]


@story
async def test_the_demo_canary_counts_its_20s_bake_down_and_a_crash_loop_during_it_is_rolled_back(
        tmp_path) -> None:
    with demo_console(tmp_path) as (fleet, app):
        assert app.config.strategies["canary"].bake == BAKE
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            await open_form_and_start(pilot, app, "canary", "v2")

            # Wave 1 (staging) is healthy and bakes: its gate is on screen at once.
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), timeout=90,
                           what="the gate shown while staging bakes")
            release = app.state.release
            assert release is not None and release.bake_wave == 0
            until = release.bake_until
            assert until is not None and app.screen.request is None
            await repainted(pilot)
            first = (seconds_left(gate_text(app)), seconds_left(header_text(app)),
                     seconds_left(drawn_note(app, "staging")))
            assert all(0 < s <= BAKE for s in first), first
            assert "baking wave 1" in header_text(app)
            assert grid_cell(app, "staging", "phase") == "✔ healthy"
            # It ticks down, live, in the gate, the header and the grid.
            await wait_for(pilot, lambda: seconds_left(gate_text(app)) <= first[0] - 2,
                           what="the gate's countdown to tick")
            await wait_for(pilot, lambda: seconds_left(header_text(app)) <= first[1] - 2,
                           what="the header's countdown to tick")
            await wait_for(pilot, lambda: seconds_left(drawn_note(app, "staging"))
                           <= first[2] - 2, what="the grid's countdown to tick")

            # The gate cannot be approved before the bake is over: `a` is refused.
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, GateScreen) and app.screen.request is None
            assert time.time() < until and not logged(app, Kind.GATE_DECIDED)
            assert live_tag(fleet, "prod-eu-10pct") == "v1"

            # Once the bake is over the engine asks: the same gate opens for decisions.
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen)
                           and app.screen.request is not None, timeout=60,
                           what="the gate to open after the bake")
            opened = time.time()
            assert opened >= until and app.screen.request.baked == BAKE
            (baking,), (baked,) = logged(app, Kind.WAVE_BAKING), logged(app, Kind.WAVE_BAKED)
            (waiting,) = logged(app, Kind.GATE_WAITING)
            assert baked - baking >= BAKE and waiting >= baked   # 20 s of bake, then the gate
            assert "Baked 0:20: the gate is open." in gate_text(app)
            await pilot.press("a")

            # Wave 2 (prod-eu-10pct) bakes; its pods start crash-looping during the bake.
            await wait_for(pilot, lambda: app.state.release.bake_wave == 1, timeout=90,
                           what="prod-eu-10pct's bake")
            fleet.set_faults("prod-eu-10pct", crash=["v2"])
            await wait_for(pilot, lambda: app.state.release.outcome is not None, timeout=120,
                           what="the end of the release")
            await repainted(pilot)
            row = app.state.clusters["prod-eu-10pct"]
            assert row.phase is Phase.ROLLED_BACK
            assert "failed during the bake" in row.error
            assert grid_cell(app, "prod-eu-10pct", "phase") == "↩ rolled back"
            assert app.state.release.outcome == "failed"
            for cid in ("prod-eu", "prod-us", "prod-ap"):
                assert grid_cell(app, cid, "phase") == "» skipped"
            # The gate shown during that bake went away with the release; none is asked.
            await wait_for(pilot, lambda: not isinstance(app.screen, GateScreen),
                           what="the gate to go with the release")
            assert len(logged(app, Kind.GATE_WAITING)) == 1
        assert (live_tag(fleet, "staging"), live_tag(fleet, "prod-eu-10pct")) == ("v2", "v1")
        assert fleet.get("prod-eu", "apps/deployments", "prod-eu", "user-service") is None

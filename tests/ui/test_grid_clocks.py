"""The grid's clocks: each running row's TIME moves on that row's own second, and a frame
redraws the rows whose clock moved - not every running row at once (a thousand of them
redrawn together once a second made the keys pressed meanwhile wait)."""

from __future__ import annotations

from console.events import Event, Kind
from console.ui.app import ReleaseConsoleApp
from console.ui.widgets.fleet_grid import FleetGrid

from .ui_helpers import repainted, story, wait_for

IDS = ("a1", "a2", "a3", "b1", "b2", "b3")
T0 = 1764079331.0


def started(cid: str, ts: float) -> Event:
    return Event(Kind.CLUSTER_STARTED, "r-1", cluster=cid, message=f"deploying v2 to {cid}",
                 data={"to_version": "v2", "from_version": "v1", "wave": 0}, ts=ts)


def shown_time(grid: FleetGrid, cid: str) -> str:
    """The TIME the row shows on screen now (the line the grid last drew for it)."""
    y = grid.shown.index(cid) + 1 - grid.scroll_offset.y
    line = grid.render_line(y).text
    return line.split()[line.split().index("rolling") + 1]


async def more_repaints(pilot, app: ReleaseConsoleApp, count: int) -> None:
    """Let `count` more 10 Hz repaints run (counted, not timed: a loaded machine may run
    fewer than three in 0.3 s, and the assertions after them would then check nothing)."""
    goal = app._ticks + count
    await wait_for(pilot, lambda: app._ticks >= goal, what=f"{count} more repaints")


@story
async def test_each_row_clock_moves_on_its_own_second_and_only_those_rows_are_drawn(
        console_fleet, monkeypatch) -> None:
    config, _fleet = console_fleet(IDS)
    now = [T0]
    app = ReleaseConsoleApp(config, clock=lambda: now[0], status_interval=0,
                            operator="alice", engine_options={"status_timeout": 20.0})
    drawn: list[str] = []
    row_strip = FleetGrid._cells_of

    def spy(grid: FleetGrid, cid: str):
        if cid not in grid._cells:
            drawn.append(cid)
        return row_strip(grid, cid)

    monkeypatch.setattr(FleetGrid, "_cells_of", spy)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, app._engine_ready.is_set, what="the engine")
        await app.workers.wait_for_complete()
        app.bridge.extend([Event(Kind.RELEASE_PLANNED, "r-1", data={
            "targets": list(IDS), "waves": [{"clusters": list(IDS)}], "version": "v2",
            "strategy": "parallel", "operator": "alice"}, ts=T0)]
            + [started(c, T0) for c in IDS[:3]] + [started(c, T0 + 0.5) for c in IDS[3:]])
        await repainted(pilot)
        grid = app.fleet.grid
        assert [shown_time(grid, c) for c in IDS] == ["0:00"] * 6

        # The a-rows' second comes first: they alone are drawn again.
        drawn.clear()
        now[0] = T0 + 1.2
        await wait_for(pilot, lambda: set(drawn) >= set(IDS[:3]), what=lambda: f"drawn {drawn}")
        await more_repaints(pilot, app, 3)   # the b-rows' clocks still read 0:00
        assert sorted(drawn) == list(IDS[:3])
        assert [shown_time(grid, c) for c in IDS] == ["0:01"] * 3 + ["0:00"] * 3

        drawn.clear()
        now[0] = T0 + 1.6
        await wait_for(pilot, lambda: set(drawn) >= set(IDS[3:]), what=lambda: f"drawn {drawn}")
        await more_repaints(pilot, app, 3)
        assert sorted(drawn) == list(IDS[3:])
        assert [shown_time(grid, c) for c in IDS] == ["0:01"] * 6

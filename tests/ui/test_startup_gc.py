"""The garbage collector is off while the console starts, and on again after (issue 16:
the first frame < 1 s on a loaded 2-core machine, where every CPU millisecond before the
frame is wall time; the collector's passes over the objects the start makes were ~10% of
the first frame's CPU).
"""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import pytest

import console.ui.app
from console.ui.app import ReleaseConsoleApp

from .conftest import fleet_yaml
from .ui_helpers import story, wait_for

IDS = [f"prod-{i:03d}" for i in range(20)]
# A subclass's relative CSS_PATH is read beside its own module: the console's, by path.
CSS = str(Path(console.ui.app.__file__).with_name("app.tcss"))


class _Probe(ReleaseConsoleApp):
    """Notes whether the collector runs while the fleet screen mounts."""

    CSS_PATH = CSS
    gc_on_at_mount: bool | None = None

    def on_mount(self) -> None:
        type(self).gc_on_at_mount = gc.isenabled()


class _QuitsAtMount(ReleaseConsoleApp):
    """Ends before its first frame (before its screen is made)."""

    CSS_PATH = CSS

    def on_load(self) -> None:
        self.exit(0)


@story
async def test_the_collector_is_off_until_the_first_frame_then_on(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(fleet_yaml(IDS, tmp_path / "history"))
    assert gc.isenabled()
    app = _Probe(str(fleet), status_interval=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert _Probe.gc_on_at_mount is False
        await asyncio.wait_for(app.fleet_loaded.wait(), 30)
        # Back on once the whole fleet is shown (well before GC_OFF_AT_MOST).
        await wait_for(pilot, gc.isenabled, timeout=console.ui.app.GC_OFF_AT_MOST / 2,
                       what="the collector on again after the fleet was shown")


@story
async def test_the_collector_is_on_again_when_the_console_ends_before_its_first_frame(
        tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(fleet_yaml(IDS, tmp_path / "history"))
    app = _QuitsAtMount(str(fleet), status_interval=0)
    async with app.run_test(size=(120, 36)):
        pass
    enabled = gc.isenabled()
    gc.enable()   # for the tests after this one, whatever happened
    assert enabled


@story
async def test_the_collector_is_on_again_while_the_fleet_file_is_still_being_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that does not end (a named pipe nobody writes) keeps it off only so long."""
    monkeypatch.setattr(console.ui.app, "GC_OFF_AT_MOST", 0.5)
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    app = ReleaseConsoleApp(str(fifo), status_interval=0)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            await wait_for(pilot, gc.isenabled, what="the collector on again")
            assert not app.fleet_loaded.is_set()
    finally:
        # The reader thread blocked on the pipe ends with the fleet file written.
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        os.write(fd, fleet_yaml(IDS, tmp_path / "history").encode())
        os.close(fd)
